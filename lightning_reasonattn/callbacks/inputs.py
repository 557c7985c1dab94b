"""What the callbacks read from a Trainer: the model inside the LightningModule, the batch's tokens and masks,
and which steps are due."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from ..capture import unwrap_causal_lm
from ..capture.modules import find_stack
from ..capture.route import route_for
from ..deprecation import translate_keywords
from ..settings import RHYTHM_FIELDS, RhythmSettings
from ..settings.rhythm import RENAMED as RHYTHM_RENAMED

IGNORE_INDEX = -100


def find_causal_lm(pl_module: torch.nn.Module, attribute: str | None = None) -> torch.nn.Module:
    """The transformers causal LM held by ``pl_module``: ``attribute`` (dotted path) or the first one found.

    Raises:
        MisconfigurationException: none found, or ``attribute`` does not name one.
    """
    if attribute is not None:
        obj = _attribute(pl_module, attribute)
        try:
            unwrap_causal_lm(obj)
        except TypeError as err:
            raise MisconfigurationException(f"model_attr={attribute!r}: {err}") from None
        return obj
    for _, module in pl_module.named_modules():
        if module is pl_module:
            continue
        try:
            unwrap_causal_lm(module)
        except TypeError:
            continue
        return module
    raise MisconfigurationException(
        f"{type(pl_module).__name__} holds no transformers causal LM (an AutoModelForCausalLM, possibly "
        "peft-wrapped) as a submodule; assign it as an attribute of the LightningModule (self.model = ...) or "
        "pass model_attr='path.to.model'."
    )


def find_model(
    pl_module: torch.nn.Module, attribute: str | None = None, capture_kwargs: Mapping[str, Any] | None = None
) -> torch.nn.Module:
    """The model the callbacks measure: ``attribute`` (dotted path), else the first transformers causal LM of
    ``pl_module``, else the model around its one stack of attention blocks (a plain GPT).

    A plain model is the outermost submodule of ``pl_module`` holding the stack (``self.model = GPT(...)``), or
    ``pl_module`` itself when the stack is its own (then it is called as ``pl_module(input_ids)``). Its attention
    is captured through its ``scaled_dot_product_attention`` calls, in the modules named by
    ``capture_kwargs["attention_modules"]`` (relative to that model) or its blocks.

    Raises:
        MisconfigurationException: none found, ``attribute`` names nothing, or its attention modules cannot be
            found; the message says the fix.
    """
    kwargs = dict(capture_kwargs or {})
    route_args = {"attention_modules": kwargs.get("attention_modules"), "forward": kwargs.get("forward")}
    if attribute is not None:
        obj = _attribute(pl_module, attribute)
        try:
            route_for(obj, **route_args)
        except (TypeError, ValueError) as err:
            raise MisconfigurationException(f"model_attr={attribute!r}: {err}") from None
        return obj
    try:
        found = find_causal_lm(pl_module)
    except MisconfigurationException as missing:
        found = _plain_model(pl_module)
        if found is None:
            raise MisconfigurationException(
                f"{missing} Or, for a model whose attention calls scaled_dot_product_attention (nanoGPT-style, "
                "LitGPT), hold it as a submodule with one stack of blocks (an nn.ModuleList), or pass model_attr and "
                "attention_modules."
            ) from None
    try:
        route_for(found, **route_args)
    except (TypeError, ValueError) as err:
        raise MisconfigurationException(str(err)) from None
    return found


def _attribute(pl_module: torch.nn.Module, attribute: str) -> Any:
    obj: Any = pl_module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise MisconfigurationException(
                f"model_attr={attribute!r}: {type(obj).__name__} has no attribute {part!r}; name the attribute "
                "of your LightningModule that holds the model, e.g. model_attr='model'."
            )
        obj = getattr(obj, part)
    return obj


def _plain_model(pl_module: torch.nn.Module) -> torch.nn.Module | None:
    """The outermost non-container submodule around ``pl_module``'s one stack of blocks, else ``pl_module``
    itself if it has its own forward; ``None`` when it holds no unambiguous stack."""
    try:
        stack = find_stack(pl_module)
    except TypeError:
        return None
    parts = stack.split(".")
    for end in range(1, len(parts)):
        module = pl_module.get_submodule(".".join(parts[:end]))
        if not isinstance(module, (torch.nn.ModuleList, torch.nn.ModuleDict, torch.nn.Sequential)):
            return module
    overrides = type(pl_module).forward is not getattr(pl.LightningModule, "forward", None)
    return pl_module if overrides else None


def due(step: int, last_step: int, every_n_steps: int) -> bool:
    """Whether optimizer step ``step`` (1, n + 1, 2n + 1, ...) is measured and was not already (accumulation)."""
    return step != last_step and (step - 1) % every_n_steps == 0


@dataclass
class BatchInputs:
    """Reads ``input_ids``, ``attention_mask`` and ``response_mask`` out of a user's batch.

    Attributes:
        input_ids_key, attention_mask_key, labels_key: batch keys; response tokens are ``labels != -100``.
        response_mask_key: a bool response-mask key, used instead of labels when given.
        batch_to_inputs: ``fn(batch) -> {"input_ids", "response_mask", "attention_mask"?}``; replaces the keys.
        max_sequences: keep at most this many sequences.
    """

    input_ids_key: str = "input_ids"
    attention_mask_key: str = "attention_mask"
    labels_key: str = "labels"
    response_mask_key: str | None = None
    batch_to_inputs: Callable[[Any], Mapping[str, torch.Tensor]] | None = None
    max_sequences: int | None = None

    def __call__(self, batch: Any) -> dict[str, torch.Tensor]:
        if self.batch_to_inputs is not None:
            found = dict(self.batch_to_inputs(batch))
            if "input_ids" not in found or "response_mask" not in found:
                raise KeyError(
                    f"batch_to_inputs returned keys {sorted(found)}; it must return 'input_ids' and "
                    "'response_mask' (and optionally 'attention_mask')."
                )
        else:
            ids_key, mask_key, labels_key, resp_key = (
                self.input_ids_key,
                self.attention_mask_key,
                self.labels_key,
                self.response_mask_key,
            )
            if not isinstance(batch, Mapping):
                raise KeyError(
                    f"the batch is a {type(batch).__name__}, not a mapping with {ids_key!r}; pass "
                    "batch_to_inputs=fn(batch) -> {'input_ids': ..., 'response_mask': ...}."
                )
            need = [ids_key, resp_key or labels_key]
            missing = [key for key in need if key not in batch]
            if missing:
                raise KeyError(
                    f"the batch has keys {sorted(batch)} but not {missing}; set input_ids_key / labels_key / "
                    "response_mask_key to your batch's keys, or pass batch_to_inputs."
                )
            found = {"input_ids": batch[ids_key]}
            if mask_key in batch:
                found["attention_mask"] = batch[mask_key]
            found["response_mask"] = batch[resp_key].bool() if resp_key else batch[labels_key] != IGNORE_INDEX
        if "attention_mask" in found:
            found["response_mask"] = found["response_mask"] & found["attention_mask"].bool()
        if self.max_sequences is not None:
            found = {key: value[: self.max_sequences] for key, value in found.items()}
        return found


ROUTE_OPTIONS = ("attention_modules", "forward")
"""The capture's keywords besides the rhythm's knobs that a callback passes on (see ``capture_rhythm``)."""


def split_capture_kwargs(
    rhythm: RhythmSettings | None, capture_kwargs: dict[str, Any]
) -> tuple[RhythmSettings, dict[str, Any]]:
    """A callback's rhythm settings and the rest of its capture keywords, checked when the callback is built.

    The rhythm's knobs come from ``rhythm`` or from the keywords of the same names (``layers``, ``window``,
    ``horizon``, ``head_fraction``, ``q``, ``look_back``, ``block_size``), not both; every other keyword goes to
    ``capture_rhythm`` as it is.

    Raises:
        MisconfigurationException: a bad value (named, with the fix), or the knobs given twice.
    """
    translate_keywords(capture_kwargs, RHYTHM_RENAMED, "the callback", stacklevel=5)  # k= -> look_back=, until 0.3
    unknown = [key for key in capture_kwargs if key not in RHYTHM_FIELDS and key not in ROUTE_OPTIONS]
    if unknown:  # a misspelt knob would otherwise reach capture_rhythm only at the first measured step
        known = [*RHYTHM_FIELDS, *ROUTE_OPTIONS]
        close = difflib.get_close_matches(unknown[0], known, n=1)
        raise MisconfigurationException(
            f"unknown setting {unknown[0]}={capture_kwargs[unknown[0]]!r}"
            + (f": did you mean {close[0]}?" if close else "")
            + f" The settings are {', '.join(known)}."
        )
    knobs = {key: value for key, value in capture_kwargs.items() if key in RHYTHM_FIELDS}
    others = {key: value for key, value in capture_kwargs.items() if key not in RHYTHM_FIELDS}
    if rhythm is not None and knobs:
        raise MisconfigurationException(
            f"{', '.join(sorted(knobs))} given beside rhythm=: pass the rhythm's settings one way, e.g. "
            "rhythm=RhythmSettings(horizon=(4, 40)) or horizon=(4, 40)."
        )
    if rhythm is not None and not isinstance(rhythm, RhythmSettings):
        raise MisconfigurationException(
            f"rhythm={rhythm!r}: pass a lightning_reasonattn.RhythmSettings, e.g. RhythmSettings(horizon=(4, 40))."
        )
    try:
        return rhythm if rhythm is not None else RhythmSettings(**knobs), others
    except ValueError as err:
        raise MisconfigurationException(str(err)) from None
