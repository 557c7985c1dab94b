"""The model RhythmGRPO trains, built from its arguments, and the reference policy of the KL penalty.

* A **Hugging Face model** (a hub name, a local folder, or ``None`` for the embedded default): a LoRA adapter on a
  4-bit NF4 base by default; the reference policy is the same model with its adapter disabled (no copy).
* **Any PyTorch causal LM** (a ``torch.nn.Module`` mapping ids ``[B, N]`` to logits ``[B, N, V]``, whose attention
  calls SDPA) with a tokenizer (``encode``, ``decode``, ``eos_token_id``): all its weights are trained by default; or
  a LoRA adapter (``finetune: lora``), over bitsandbytes 4-bit linear layers where ``quantization`` asks. With all
  weights trained and ``loss.beta > 0`` the reference policy is a frozen copy made before the first step, which
  costs the memory of a second set of weights.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..models import LoraSettings, add_lora, load_model, lost_update_fraction
from ..models.modules import add_module_lora, load_weights, module_name, quantize_linears
from ..rollout.dense import DenseRollout, resolve_backend
from .settings import RunSettings

Reference = Callable[[], contextlib.AbstractContextManager[torch.nn.Module]]
TOKENIZER_METHODS = ("encode", "decode")


@dataclass(frozen=True)
class Given:
    """The model, tokenizer and weights file RhythmGRPO was given, as given (see its arguments)."""

    model: Any
    tokenizer: Any
    weights: str | None = None


@dataclass(frozen=True)
class Policy:
    """What RhythmGRPO trains, and what it compares against.

    Attributes:
        model: the trained model (a peft model with an adapter, or the module itself).
        tokenizer: its tokenizer.
        reference: ``reference()`` is a context giving the reference policy of the KL penalty (``None``: none kept,
            because ``loss.beta`` is 0 and all weights are trained).
    """

    model: torch.nn.Module
    tokenizer: Any
    reference: Reference | None


def model_record(value: Any) -> Any:
    """How hyper-parameters and checkpoints record a model or tokenizer argument, as plain data: a name as it is, an
    object (or a config's ``{"class_path": ..., "init_args": ...}``) as ``{"class_path": "pkg.module.Class"}``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("class_path"), str):
        return {"class_path": _defined_at(value["class_path"])}
    return {"class_path": module_name(value)}


def _defined_at(path: str) -> str:
    """The class path where the class is defined (``pkg.Class`` re-exported from ``pkg.module`` is
    ``pkg.module.Class``), so two spellings of one class compare equal; the path as given if it does not import."""
    module_path, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_path), name)
    except (ImportError, AttributeError, ValueError):
        return path
    return f"{cls.__module__}.{cls.__qualname__}" if isinstance(cls, type) else path


def instantiate(value: Any, what: str) -> Any:
    """``value`` itself, or the object a ``{"class_path": ..., "init_args": {...}}`` dict describes (a user's config,
    as LightningCLI reads it; a checkpoint's record without ``init_args`` cannot be rebuilt).

    Raises:
        ValueError: a record without ``init_args``, or a class that cannot be imported or built.
    """
    if not isinstance(value, dict):
        return value
    if "init_args" not in value:
        raise ValueError(
            f"{what}={value!r} records the class only (a checkpoint's hyper-parameters): pass the {what} itself, "
            f"e.g. RhythmGRPO.load_from_checkpoint(path, {what}=...), or its class_path with init_args."
        )
    path = value["class_path"]
    module_path, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_path), name)
        return cls(**value["init_args"])
    except (ImportError, AttributeError, TypeError, ValueError) as err:
        raise ValueError(f"{what} class_path {path!r} cannot be built ({type(err).__name__}: {err}).") from None


def check_tokenizer(tokenizer: Any) -> None:
    """Refuse a tokenizer without what a rollout needs (a Hugging Face tokenizer has it all).

    Raises:
        ValueError: naming what is missing.
    """
    missing = [name for name in TOKENIZER_METHODS if not callable(getattr(tokenizer, name, None))]
    if getattr(tokenizer, "eos_token_id", None) is None:
        missing.append("eos_token_id")
    if missing:
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__} has no {', '.join(missing)}: a module's tokenizer needs "
            "encode(str) -> list[int], decode(list[int]) -> str and eos_token_id."
        )


@contextlib.contextmanager
def adapter_disabled(policy: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The reference policy of a LoRA policy: the same model with its adapter disabled (no copy)."""
    with policy.disable_adapter():
        yield policy


def frozen_copy(model: torch.nn.Module) -> Reference:
    """A reference policy that is a frozen copy of ``model`` as it is now (run in the policy's train/eval mode)."""
    reference = copy.deepcopy(model).requires_grad_(False)

    @contextlib.contextmanager
    def use() -> Iterator[torch.nn.Module]:
        reference.train(model.training)
        yield reference

    return use


def build_policy(given: Given, run: RunSettings, lora: LoraSettings, *, keep_reference: bool, device) -> Policy:
    """The policy, its tokenizer and its reference, on ``device`` (see the module's docstring for the rules).

    Args:
        given: RhythmGRPO's ``model`` (a name, ``None``, a module, or a module's class_path dict), ``tokenizer`` (a
            module's; a Hugging Face model brings its own) and ``weights`` (a state-dict file for a module).
        run: the resolved settings (``finetune``, ``quantization``...).
        lora: the adapter's settings (``finetune: lora``).
        keep_reference: the KL penalty needs a reference policy (``loss.beta > 0``).
        device: where the model goes.
    """
    model, tokenizer, weights = given.model, given.tokenizer, given.weights
    if not run.is_module:
        if tokenizer is not None or weights is not None:
            given = "tokenizer" if tokenizer is not None else "weights"
            raise ValueError(
                f"{given} is for a PyTorch module given as the model; the Hugging Face model {run.model!r} brings "
                f"its own: leave {given} out."
            )
        quantized = {"quantization": run.quantization, "double_quant": run.double_quant}
        base, tokenizer = load_model(run.model, device=device, **quantized)
        if run.finetune == "lora":
            policy = add_lora(base, lora, run.gradient_checkpointing)
            return Policy(policy, tokenizer, lambda: adapter_disabled(policy))
        return _all_weights(base, tokenizer, keep_reference)
    module, tokenizer = instantiate(model, "model"), instantiate(tokenizer, "tokenizer")
    if tokenizer is None:
        raise ValueError(f"model {module_name(module)} is a PyTorch module: give its tokenizer too (tokenizer=...).")
    check_tokenizer(tokenizer)
    if run.gradient_checkpointing:
        raise ValueError(
            "gradient_checkpointing is transformers' switch; a PyTorch module checkpoints its own activations "
            "(torch.utils.checkpoint in its blocks): leave gradient_checkpointing false."
        )
    if weights is not None:
        load_weights(module, weights)
    module = module.to(device)
    if run.quantization != "none":
        quantize_linears(module, run.quantization, run.double_quant, device)
    if run.finetune == "lora":
        policy = add_module_lora(module, lora)
        return Policy(policy, tokenizer, lambda: adapter_disabled(policy))
    return _all_weights(module, tokenizer, keep_reference)


def warn_if_updates_are_lost(policy: torch.nn.Module, lr: float) -> None:
    """Warn when more than 1% of the trainable weights cannot change by a step of ``lr`` (e.g. under
    ``precision="bf16-true"``, which casts the LoRA factors to bfloat16; see ``lost_update_fraction``)."""
    trainable = [p for p in policy.parameters() if p.requires_grad]
    lost = lost_update_fraction(trainable, lr)
    if lost > 0.01:
        dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in trainable})
        warnings.warn(
            f"{100 * lost:.0f}% of the trainable weights ({', '.join(dtypes)}) cannot change by a step of "
            f"optim.lr={lr:g}: it is under half their float spacing, so those updates are rounded "
            "away. Use trainer.precision 'bf16-mixed' (float32 adapter, bfloat16 compute) or a larger lr.",
            stacklevel=3,
        )


def dense_copy(policy: torch.nn.Module, backend: str, is_module: bool) -> DenseRollout | None:
    """The dense copy the rollouts sample from when ``backend`` asks for one (see ``resolve_backend``), else None.

    A module samples from itself (a dense copy is rebuilt from a transformers config).
    """
    if is_module or resolve_backend(backend, policy) != "dense":
        return None
    # trainer.validate runs in inference mode, and later syncs write into the copy: make it outside
    with torch.inference_mode(False), torch.no_grad():
        return DenseRollout(policy)


def _all_weights(model: torch.nn.Module, tokenizer: Any, keep_reference: bool) -> Policy:
    model.requires_grad_(True)
    return Policy(model, tokenizer, frozen_copy(model) if keep_reference else None)
