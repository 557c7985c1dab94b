"""What the callbacks read from a Trainer: the model inside the LightningModule, the batch's tokens and masks, and
the capture's settings."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from ..capture import unwrap_causal_lm
from ..capture.modules import find_stack
from ..capture.route import route_for
from ..deprecation import translate_keywords
from ..functional._checks import check_mask_dtype
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


@dataclass(frozen=True, repr=False)
class BatchKeys:
    """Where a batch that is a mapping (a dict, a transformers ``BatchEncoding``) holds what the capture reads.

    Called on a batch, it returns ``{"input_ids", "response_mask", "attention_mask"?}``: the response is
    ``batch[labels] != -100``, or ``batch[response_mask]`` when that key is set; the padding mask is read when the
    batch has it. For a batch of another shape (a tuple, your own class), give the callbacks a function instead.

    Attributes:
        input_ids: key of the token ids, ``[B, N]``.
        attention_mask: key of the padding mask, ``[B, N]`` (1 = token); optional in the batch.
        labels: key of the labels, ``[B, N]``; the response tokens are those with ``labels != -100``.
        response_mask: key of a response mask, ``[B, N]`` (True = response token), read instead of the labels when set.

    Example:
        >>> import torch
        >>> keys = BatchKeys(labels="targets")
        >>> keys
        BatchKeys(labels='targets')
        >>> keys({"input_ids": torch.tensor([[5, 6, 7]]), "targets": torch.tensor([[-100, 6, 7]])})["response_mask"]
        tensor([[False,  True,  True]])
    """

    input_ids: str = "input_ids"
    attention_mask: str = "attention_mask"
    labels: str = "labels"
    response_mask: str | None = None

    def __repr__(self) -> str:  # the keys that differ from the defaults: what a user would write
        changed = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if getattr(self, f.name) != f.default]
        return f"BatchKeys({', '.join(changed)})"

    def __call__(self, batch: Any) -> dict[str, torch.Tensor]:
        if not isinstance(batch, Mapping):
            raise KeyError(
                f"the batch is a {type(batch).__name__}, not a mapping with {self.input_ids!r}; pass "
                "inputs=fn(batch) -> {'input_ids': ..., 'response_mask': ...}."
            )
        response = self.response_mask or self.labels
        missing = [key for key in (self.input_ids, response) if key not in batch]
        if missing:
            raise KeyError(
                f"the batch has keys {sorted(batch)} but not {missing}; name your batch's keys with "
                f"inputs=BatchKeys(input_ids=..., labels=... or response_mask=...), or pass inputs=fn(batch)."
            )
        found = {"input_ids": batch[self.input_ids]}
        if self.attention_mask in batch:
            found["attention_mask"] = batch[self.attention_mask]
        found["response_mask"] = batch[response].bool() if self.response_mask else batch[response] != IGNORE_INDEX
        return found


Inputs = BatchKeys | Callable[[Any], Mapping[str, torch.Tensor]]
"""How a batch becomes the capture's inputs: the keys of a mapping, or ``fn(batch) -> {"input_ids",
"response_mask", "attention_mask"?}``."""

OLD_KEYWORDS = {
    "input_ids_key": "input_ids",
    "attention_mask_key": "attention_mask",
    "labels_key": "labels",
    "response_mask_key": "response_mask",
}
"""The callbacks' earlier keywords for the batch's keys, and the ``BatchKeys`` field of each (deprecated)."""


def inputs_argument(inputs: Inputs | None, keywords: dict[str, Any], owner: str) -> Inputs:
    """A callback's ``inputs``, checked; for one release also built from the old keywords, which are taken out of
    ``keywords`` (``input_ids_key=``, ..., ``batch_to_inputs=``) with a ``DeprecationWarning`` giving the new spelling.

    Raises:
        MisconfigurationException: ``inputs`` is neither a ``BatchKeys`` nor callable, or it is given beside the
            old keywords.
    """
    old = {name: keywords.pop(name) for name in [*OLD_KEYWORDS, "batch_to_inputs"] if name in keywords}
    if old:
        given = ", ".join(f"{name}=..." for name in old)
        if inputs is not None:
            raise MisconfigurationException(f"{given} given beside inputs=: pass inputs= alone.")
        function = old.pop("batch_to_inputs", None)
        inputs = function if function is not None else BatchKeys(**{OLD_KEYWORDS[k]: v for k, v in old.items()})
        spelled = "inputs=<your batch_to_inputs function>" if function is not None else f"inputs={inputs!r}"
        warnings.warn(
            f"{owner}({given}) is deprecated and goes in the next release: pass {spelled} "
            "(BatchKeys is in lightning_reasonattn).",
            DeprecationWarning,
            stacklevel=4,  # the user's line: this function < RhythmCallback.__init__ < the callback's __init__
        )
    if inputs is None:
        return BatchKeys()
    if not callable(inputs):  # a BatchKeys is callable
        raise MisconfigurationException(
            f"inputs={inputs!r}: pass BatchKeys(...) naming your batch's keys, e.g. BatchKeys(labels='targets'), or "
            "a function batch -> {'input_ids': ..., 'response_mask': ..., 'attention_mask': ... (optional)}."
        )
    return inputs


def read_inputs(inputs: Inputs, batch: Any, max_sequences: int | None = None) -> dict[str, torch.Tensor]:
    """``{"input_ids", "response_mask", "attention_mask"?}`` of ``batch``, each ``[B, N]`` (``B`` cut to
    ``max_sequences``); the response mask is bool and holds no padding position.

    Raises:
        KeyError: the batch lacks the keys, or the function returns something else than such a mapping.
        TypeError: the function returns a value that is not a tensor, or a float response mask.
    """
    found = inputs(batch)
    if not isinstance(inputs, BatchKeys):
        name = getattr(inputs, "__name__", type(inputs).__name__)
        keys = sorted(found) if isinstance(found, Mapping) else f"a {type(found).__name__}"
        if not isinstance(found, Mapping) or "input_ids" not in found or "response_mask" not in found:
            raise KeyError(
                f"inputs={name} returned {keys}; it must return a "
                "mapping with 'input_ids' and 'response_mask' (and optionally 'attention_mask')."
            )
        found = {key: found[key] for key in ("input_ids", "attention_mask", "response_mask") if key in found}
        bad = next((key for key, value in found.items() if not isinstance(value, torch.Tensor)), None)
        if bad is not None:
            raise TypeError(
                f"inputs={name} returned {bad!r} as a "
                f"{type(found[bad]).__name__}; return [B, N] tensors (torch.stack a list of sequences)."
            )
        check_mask_dtype(found["response_mask"], "inputs(batch)['response_mask']", "True at the response tokens")
    if "attention_mask" in found:
        found["response_mask"] = found["response_mask"].bool() & found["attention_mask"].bool()
    if max_sequences is not None:
        found = {key: value[:max_sequences] for key, value in found.items()}
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
    translate_keywords(capture_kwargs, RHYTHM_RENAMED, "the callback", stacklevel=6)  # k= -> look_back=, until 0.3
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
