"""The attention modules of a plain PyTorch model (nanoGPT-style, LitGPT's ``GPT``), and how to call the model.

A capture of a model that is not a transformers causal LM measures the
``torch.nn.functional.scaled_dot_product_attention`` calls made inside a list of modules, the *attention
modules* (see [`lightning_reasonattn.capture.sdpa`][lightning_reasonattn.capture.sdpa]). They are named with
``attention_modules=``:

* a list of modules of the model (``[block.attn for block in model.transformer.h]``);
* a name pattern matched against ``model.named_modules()``, where ``*`` stands for one part of a dotted name
  (``"transformer.h.*.attn"`` matches ``transformer.h.0.attn``, not ``transformer.h.0.mlp.attn``);
* ``None``: found from the model's structure, where that is unambiguous: the model holds exactly one outermost
  stack of blocks (an ``nn.ModuleList`` whose items are all of one class, not inside another such list), or one
  such stack in each of its stages (``stages[i]["blocks"][j]``: a list of ``nn.ModuleDict`` s or lists is a list of
  stages, never of blocks), and its blocks are the attention modules. Each must call SDPA exactly once per forward
  (``nn.MultiheadAttention`` counts as one call), which the capture checks.

Layer ``i`` is the ``i``-th attention module the forward runs (as a transformers ``layer_idx``), so ``layers``
selects among ``L`` = the number of attention modules, in forward order.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

ForwardFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], Any]
"""``forward(model, input_ids, attention_mask) -> outputs``: how a capture calls a model, when the default
(see [`model_call`][lightning_reasonattn.capture.modules.model_call]) does not fit."""

_CONTAINERS = (torch.nn.ModuleList, torch.nn.ModuleDict, torch.nn.Sequential)


def _pattern(pattern: str) -> re.Pattern:
    """``*`` = one part of a dotted module name (no dot); everything else literal."""
    return re.compile("".join("[^.]+" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern)))


def _stacks(model: torch.nn.Module) -> list[str]:
    """Names of the outermost ``nn.ModuleList`` s of ``model`` whose items are all of one class that is not itself a
    container (a list of ``nn.ModuleDict`` s or lists holds stages, not blocks: the search goes on inside them)."""
    found: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.ModuleList) or len(module) == 0:
            continue
        kinds = {type(item) for item in module}
        if len(kinds) != 1 or issubclass(kinds.pop(), (torch.nn.ModuleList, torch.nn.ModuleDict)):
            continue
        if any(name.startswith(outer + ".") for outer in found):  # inside a stack already found (experts...)
            continue
        found.append(name)
    return found


def _stages(model: torch.nn.Module, stacks: list[str]) -> str | None:
    """The container of stages that holds ``stacks`` one per stage at the same place (``stages.0.blocks``,
    ``stages.1.blocks``: ``"stages"``), or ``None`` when the stacks are not laid out that way."""
    outer = {name.rsplit(".", 2)[0] if name.count(".") >= 2 else None for name in stacks}
    inner = {name.rsplit(".", 1)[-1] for name in stacks}
    if len(outer) != 1 or len(inner) != 1 or None in outer:
        return None
    parent, leaf = outer.pop(), inner.pop()
    container = model.get_submodule(parent)
    if not isinstance(container, (torch.nn.ModuleList, torch.nn.ModuleDict)):
        return None
    expected = [f"{parent}.{key}.{leaf}" for key, _ in container.named_children()]
    return parent if expected == stacks else None


def _names(model: torch.nn.Module, few: int = 4) -> str:
    names = [name for name, _ in model.named_modules() if name]
    return ", ".join(repr(n) for n in names[:few]) + (", ..." if len(names) > few else "")


def block_stacks(model: torch.nn.Module) -> list[str]:
    """The names of the stack(s) of blocks of ``model``, in order: its one outermost stack (``["transformer.h"]`` in
    nanoGPT and LitGPT), or the stack of each of its stages when the blocks are nested in stages
    (``["stages.0.blocks", "stages.1.blocks"]`` for ``stages[i]["blocks"][j]``).

    Raises:
        TypeError: no stack, or several that are not one per stage; the message names them and the fix
            (``attention_modules=``).
    """
    stacks = _stacks(model)
    fix = "name its attention modules with attention_modules=[...] or a pattern such as 'transformer.h.*.attn'"
    if not stacks:
        raise TypeError(
            "capture needs a transformers causal language model, or a PyTorch model whose attention calls "
            "scaled_dot_product_attention inside a stack of blocks (an nn.ModuleList of one class); got "
            f"{type(model).__name__}, which holds no such stack: {fix}."
        )
    if len(stacks) > 1 and _stages(model, stacks) is None:
        raise TypeError(
            f"{type(model).__name__} holds {len(stacks)} stacks of blocks ({', '.join(map(repr, stacks))}), so "
            f"which attention to measure is ambiguous: {fix}."
        )
    return stacks


def find_stack(model: torch.nn.Module) -> str:
    """The name of the one outermost stack of blocks of ``model`` (``"transformer.h"`` in nanoGPT and LitGPT), or of
    the container of its stages when each stage holds a stack (``"stages"``); see
    [`block_stacks`][lightning_reasonattn.capture.modules.block_stacks].

    Raises:
        TypeError: no stack or an ambiguous one; the message names them and the fix (``attention_modules=``).
    """
    stacks = block_stacks(model)
    return stacks[0] if len(stacks) == 1 else _stages(model, stacks)


def attention_modules_of(
    model: torch.nn.Module, attention_modules: str | Sequence[torch.nn.Module] | None = None
) -> list[tuple[str, torch.nn.Module]]:
    """``(name, module)`` of every attention module of ``model`` in the model's own order.

    Args:
        model: any ``nn.Module``.
        attention_modules: a list of its modules, a name pattern (``*`` = one name part), or ``None`` for the
            blocks of its stack(s) (see [`block_stacks`][lightning_reasonattn.capture.modules.block_stacks]).

    Raises:
        ValueError: a pattern that matches no module, a module that is not in ``model``, a module named twice,
            or two named modules one inside the other.
        TypeError: ``None`` and no unambiguous stack of blocks.
    """
    named = list(model.named_modules())
    if attention_modules is None:
        stacks = [(stack, model.get_submodule(stack)) for stack in block_stacks(model)]
        return [(f"{stack}.{i}", block) for stack, blocks in stacks for i, block in enumerate(blocks)]
    if isinstance(attention_modules, str):
        regex = _pattern(attention_modules)
        chosen = [(name, module) for name, module in named if regex.fullmatch(name)]
        if not chosen:
            raise ValueError(
                f"attention_modules={attention_modules!r} matches no module of {type(model).__name__}, whose "
                f"modules are named like {_names(model)}: pass a pattern of those names ('*' = one part)."
            )
    else:
        modules = list(attention_modules) if not isinstance(attention_modules, torch.nn.Module) else None
        if not modules:
            raise ValueError(
                f"attention_modules={attention_modules!r}: pass a non-empty list of modules of the model, a name "
                "pattern such as 'transformer.h.*.attn', or None to find them."
            )
        where = {id(module): name for name, module in named}
        chosen = []
        for i, module in enumerate(modules):
            if id(module) not in where:
                raise ValueError(
                    f"attention_modules[{i}] (a {type(module).__name__}) is not a submodule of "
                    f"{type(model).__name__}: pass modules of the model the capture runs."
                )
            chosen.append((where[id(module)], module))
        if len({id(m) for _, m in chosen}) != len(chosen):
            raise ValueError("attention_modules names one module twice: name each attention module once.")
        rank = {id(module): i for i, (_, module) in enumerate(named)}
        chosen.sort(key=lambda item: rank[id(item[1])])
    for outer, _ in chosen:
        inner = [name for name, _ in chosen if outer and name.startswith(outer + ".")]
        if inner or (not outer and len(chosen) > 1):
            raise ValueError(
                f"attention_modules names {outer or type(model).__name__!r} and {inner[0] if inner else 'others'!r}"
                ", one inside the other: name only the modules that each call scaled_dot_product_attention once."
            )
    return chosen


def model_call(model: torch.nn.Module, forward: ForwardFn | None = None) -> Callable[..., Any]:
    """``call(input_ids, attention_mask, position_ids) -> outputs`` for a plain model.

    ``forward(model, input_ids, attention_mask)`` when given; otherwise ``model(input_ids, ...)`` with the
    keywords its ``forward`` names among ``attention_mask`` and ``position_ids`` (nanoGPT and LitGPT take
    neither: ``model(input_ids)``).
    """
    if forward is not None:
        if not callable(forward):
            raise TypeError(
                f"forward={forward!r} is not callable: pass fn(model, input_ids, attention_mask) -> outputs."
            )
        return lambda input_ids, attention_mask, position_ids: forward(model, input_ids, attention_mask)
    wanted = takes_keywords(model)

    def call(input_ids, attention_mask, position_ids):
        given = {"attention_mask": attention_mask, "position_ids": position_ids}
        return model(input_ids, **{name: given[name] for name in wanted})

    return call


def takes_keywords(model: torch.nn.Module) -> list[str]:
    """Which of ``attention_mask`` and ``position_ids`` the model's ``forward`` names as parameters."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # a builtin or C forward: say nothing, pass nothing
        return []
    return [name for name in ("attention_mask", "position_ids") if name in params]


def logits_of(outputs: Any) -> torch.Tensor | None:
    """The logits in a model's outputs: ``outputs.logits``, a tensor, or the first tensor of a tuple (nanoGPT's
    ``(logits, loss)``); ``None`` when there is none."""
    logits = getattr(outputs, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    return None
