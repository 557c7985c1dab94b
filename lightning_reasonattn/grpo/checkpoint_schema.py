"""What a RhythmGRPO checkpoint holds, checked by type and shape before anything is built from it.

[`load_checkpoint`][lightning_reasonattn.grpo.checkpoint.load_checkpoint] reads a file safely (``weights_only``); a
file with the right keys can still hold the wrong values (hyper-parameters that are a string, a LoRA rank that is
text, a state dict of strings, an optimizer state that is a list), which failed as an ``AttributeError`` deep in the
resume rule, in Lightning or in ``export``, sometimes after the base model had loaded.
[`check_contents`][check_contents] checks every entry this package and Lightning read, before any model is built,
and names the first bad one in one ``CheckpointError``, e.g. ``checkpoint 'x.ckpt': state_dict['...lora_A...weight']
is str 'x', not a tensor``.

What is checked (each entry's type; shapes where the checkpoint alone decides them):

- ``global_step``, ``epoch``: integers >= 0; ``sampling_seed``: an integer or ``None``;
- ``hyper_parameters``: a dict whose settings sections (``lora``, ``task``, ...) are dicts that build their
  dataclass, and whose module arguments have their types (``model`` a string or ``None``, ``group_size`` an integer);
- ``state_dict``: a non-empty dict of finite floating-point tensors named by strings; each LoRA factor 2-D, with
  ``lora_A`` ``[r, in]`` and ``lora_B`` ``[out, r]`` in pairs, ``r`` the checkpoint's own ``lora.r``;
- ``optimizer_states`` and ``lr_schedulers``: lists of dicts (an optimizer state with its ``state`` and
  ``param_groups``); ``loops`` and ``callbacks``: dicts;
- ``rng_states``: each process's states restore into a fresh generator (torch and Python), so the global ones are
  never touched by a bad file;
- ``reasonattn_base`` and ``reasonattn_settings``: dicts, the base's fields with their types.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import torch

from ..models import QUANTIZATIONS
from .settings import RunSettings, settings_sections


class _Bad(Exception):
    """One bad entry: ``(entry, what was found, what was expected)``."""


def _kind(value: Any) -> str:
    text = repr(value) if not isinstance(value, (torch.Tensor, dict, list)) else ""
    text = text if len(text) <= 40 else text[:37] + "..."
    return type(value).__name__ + (f" {text}" if text else "")


def _expect(ok: bool, entry: str, value: Any, expected: str, found: str | None = None) -> None:
    """Raise ``_Bad`` unless ``ok``; ``found`` describes the value when its type and repr would not."""
    if not ok:
        raise _Bad(entry, found or _kind(value), expected)


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _hyper_parameters(hparams: Any) -> dict:
    _expect(isinstance(hparams, dict), "hyper_parameters", hparams, "a dict of settings")
    sections = settings_sections()
    for name, cls in sections.items():
        if name not in hparams:
            continue
        section = hparams[name]
        _expect(isinstance(section, dict), f"hyper_parameters[{name!r}]", section, "a dict")
        known = {key: item for key, item in section.items() if key in cls.__dataclass_fields__}
        try:
            cls(**known)
        except (ValueError, TypeError) as err:
            raise _Bad(f"hyper_parameters[{name!r}]", str(err).rstrip("."), "") from None
    for f in fields(RunSettings):  # the module's own arguments, checked by the dataclass that checks them
        if f.name in hparams:
            value = hparams[f.name]
            try:
                RunSettings(**{f.name: value})
            except (ValueError, TypeError):
                low = f.metadata.get("low")
                expected = f"an integer >= {low}" if low is not None else f.metadata["expect"]
                raise _Bad(f"hyper_parameters[{f.name!r}]", _kind(value), expected) from None
    return hparams


def _state_dict(state: Any, rank: Any) -> None:
    _expect(isinstance(state, dict), "state_dict", state, "a dict of the adapter's tensors")
    _expect(bool(state), "state_dict", state, "the adapter's weights", found="empty")
    for key, tensor in state.items():
        _expect(isinstance(key, str), "a state_dict key", key, "a string")
        entry = f"state_dict[{key!r}]"
        _expect(isinstance(tensor, torch.Tensor), entry, tensor, "a tensor")
        _expect(tensor.is_floating_point(), entry, None, "a floating-point tensor", found=f"a {tensor.dtype} tensor")
        _expect(bool(torch.isfinite(tensor).all()), entry, None, "finite", found="a tensor with NaN or infinite values")
        if "lora_A" in key or "lora_B" in key:
            shape = list(tensor.shape)
            _expect(tensor.dim() == 2, entry, None, "a 2-D LoRA factor", found=f"a tensor of shape {shape}")
            r = shape[0] if "lora_A" in key else shape[1]
            if _is_int(rank, 1):
                _expect(r == rank, entry, None, f"of rank {rank} (lora.r)", found=f"a factor of shape {shape}")
            partner = key.replace("lora_A", "lora_B") if "lora_A" in key else key.replace("lora_B", "lora_A")
            _expect(partner in state, entry, None, f"paired with {partner!r}", found="a LoRA factor alone")


def _list_of_dicts(value: Any, entry: str, keys: dict[str, type] | None = None) -> None:
    _expect(isinstance(value, list), entry, value, "a list of dicts")
    for i, item in enumerate(value):
        _expect(isinstance(item, dict), f"{entry}[{i}]", item, "a dict")
        for key, kind in (keys or {}).items():
            _expect(isinstance(item.get(key), kind), f"{entry}[{i}][{key!r}]", item.get(key), kind.__name__)


def _rng_states(states: Any) -> None:
    states = [states] if isinstance(states, dict) else states  # one dict: a checkpoint of an older version
    _expect(isinstance(states, list), "rng_states", states, "a list of each process's RNG states")
    for i, state in enumerate(states):
        entry = f"rng_states[{i}]"
        _expect(isinstance(state, dict), entry, state, "a dict with 'torch', 'cuda' and 'python'")
        try:
            torch.Generator().set_state(state["torch"])  # a fresh generator: the global state is never touched
            random.Random().setstate(tuple(state["python"]))
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise _Bad(entry, f"states that do not restore ({type(err).__name__}: {err})", "") from None
        cuda = state.get("cuda", [])
        ok = isinstance(cuda, list) and all(isinstance(t, torch.Tensor) for t in cuda)
        _expect(ok, f"{entry}['cuda']", cuda, "a list of tensors")


def _base(base: Any) -> None:
    _expect(isinstance(base, dict), "reasonattn_base", base, "a dict")
    fields: dict[str, Callable[[Any], bool]] = {
        "model": lambda v: isinstance(v, str) or (isinstance(v, dict) and isinstance(v.get("class_path"), str)),
        "finetune": lambda v: v in ("lora", "full"),
        "quantization": lambda v: v in QUANTIZATIONS,
        "double_quant": lambda v: isinstance(v, bool),
        "compute_dtype": lambda v: v is None or isinstance(v, str),
        "lora_dtype": lambda v: isinstance(v, str),
    }
    for key, ok in fields.items():
        if key in base:
            _expect(ok(base[key]), f"reasonattn_base[{key!r}]", base[key], "a value of its type")


def check_contents(ckpt: dict) -> None:
    """Check every entry of a RhythmGRPO checkpoint by type (and the adapter by shape).

    Args:
        ckpt: what ``torch.load`` returned, already known to be a dict with RhythmGRPO's keys.

    Raises:
        ValueError: ``"<entry> is <what it is>, not <what it must be>"`` for the first bad entry (the caller adds
            the file).
    """
    try:
        _expect(_is_int(ckpt["global_step"]), "global_step", ckpt["global_step"], "an integer >= 0")
        _expect(_is_int(ckpt.get("epoch", 0)), "epoch", ckpt.get("epoch"), "an integer >= 0")
        seed = ckpt.get("sampling_seed")
        _expect(seed is None or _is_int(seed), "sampling_seed", seed, "an integer or null")
        hparams = _hyper_parameters(ckpt["hyper_parameters"])
        lora = hparams.get("lora") or {}
        _state_dict(ckpt["state_dict"], lora.get("r", 16))
        _list_of_dicts(ckpt.get("optimizer_states", []), "optimizer_states", {"state": dict, "param_groups": list})
        for i, state in enumerate(ckpt.get("optimizer_states", [])):
            _list_of_dicts(state["param_groups"], f"optimizer_states[{i}]['param_groups']")
        _list_of_dicts(ckpt.get("lr_schedulers", []), "lr_schedulers")
        for key in ("loops", "callbacks", "reasonattn_settings"):
            _expect(isinstance(ckpt.get(key, {}), dict), key, ckpt.get(key), "a dict")
        _rng_states(ckpt.get("rng_states", []))
        if "reasonattn_base" in ckpt:
            _base(ckpt["reasonattn_base"])
    except _Bad as bad:
        entry, found, expected = bad.args
        raise ValueError(f"{entry} is {found}, not {expected}" if expected else f"{entry}: {found}") from None
