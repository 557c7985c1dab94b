"""The trainable LoRA adapter on a frozen (possibly 4-bit) base: its settings, its wrapping, its numerics."""

from __future__ import annotations

import contextlib
import inspect
import warnings
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..functional._checks import check_choice, check_number

# LoRA targets per model family: every linear layer of attention and MLP (QLoRA's choice), lm_head excluded.
_LLAMA_LIKE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_TARGETS = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
}


LoraDtype = Literal["float32", "bfloat16"]


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapter settings (peft ``LoraConfig``).

    ``dtype: bfloat16`` is what TRL does for quantized models: half the adapter memory, but AdamW steps below
    half a weight's float spacing are lost (every step at lr 1e-6, for instance; RhythmGRPO warns then).

    Attributes:
        r: rank of the adapter (>= 1).
        alpha: scaling numerator: the update is multiplied by alpha / r (> 0).
        dropout: dropout on the adapter input, in [0, 1).
        target_modules: module names to adapt (None: every linear layer of attention and MLP for known families).
        dtype: dtype of the LoRA factors, their gradients and optimizer state: 'float32' or 'bfloat16'.
    """

    # metadata "fixed": the resume rule of RhythmGRPO's checkpoints (grpo/settings.py, FIXED_FOR_MODEL)
    r: int = field(default=16, metadata={"fixed": "model", "why": "the adapter's shape is fixed"})
    alpha: int = field(default=32, metadata={"fixed": "model", "why": "it scales every adapter update"})
    dropout: float = 0.0
    target_modules: list[str] | str | None = field(
        default=None, metadata={"fixed": "model", "why": "the adapter's layers are fixed"}
    )
    dtype: LoraDtype = field(
        default="float32", metadata={"fixed": "model", "why": "the optimizer state is kept in that dtype"}
    )

    def __post_init__(self):
        check_number("lora.r", self.r, low=1, integer=True)
        check_number("lora.alpha", self.alpha, low=0, low_open=True)
        check_number("lora.dropout", self.dropout, low=0, high=1, high_open=True)
        check_choice("lora.dtype", self.dtype, LoraDtype)


def lost_update_fraction(params, lr: float) -> float:
    """Fraction of the nonzero trainable weights that an optimizer step of size ``lr`` cannot move.

    A step ``d`` changes a weight ``w`` only if ``|d| >= ulp(w) / 2`` in the weight's dtype. AdamW's steps are
    about ``lr`` in size, so a bfloat16 LoRA factor of magnitude 0.03 (ulp 1.2e-4) ignores every step at
    ``lr=1e-6``; in float32 (ulp 1.9e-9) none is lost.
    """
    lost = total = 0
    for p in params:
        w = p.detach().abs()
        w = w[w > 0]
        if w.numel() == 0:
            continue
        ulp = torch.nextafter(w, torch.full_like(w, float("inf"))) - w
        lost += int((ulp.float() / 2 > lr).sum())
        total += w.numel()
    return lost / total if total else 0.0


@contextlib.contextmanager
def lean_lora_casts(model: torch.nn.Module):
    """Under autocast, let LoRA layers take their input as it comes instead of casting it to float32.

    peft's plain LoRA layers cast their input to the factors' dtype (float32) and autograd keeps that copy
    for the backward, once per adapted layer; under a bf16 autocast (Lightning's ``bf16-mixed``) the matmul
    casts the factors anyway, so the copy only costs memory (tested). peft's bitsandbytes LoRA layers skip
    the cast under CUDA autocast only, so on a CPU they copy too. Outside autocast this does nothing, since
    dtypes must then match.
    """
    from peft.helpers import disable_input_dtype_casting

    device_type = next(model.parameters()).device.type
    with disable_input_dtype_casting(model, active=torch.is_autocast_enabled(device_type)):
        yield


def enable_activation_checkpointing(model, kwargs: dict) -> None:
    """Turn on transformers' activation (gradient) checkpointing: ``activation_checkpointing_enable`` where it
    exists, else its older name ``gradient_checkpointing_enable`` (deprecated, with a FutureWarning, since)."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def add_lora(model: torch.nn.Module, settings: LoraSettings | None = None, gradient_checkpointing: bool = False):
    """Wrap ``model`` with a trainable LoRA adapter (base weights frozen), k-bit aware.

    The base model is frozen and keeps its dtypes: with a bfloat16 (or float32) compute dtype the norms,
    embeddings and output head stay as loaded. peft's ``prepare_model_for_kbit_training`` would cast them all
    to float32, which turns the whole residual stream and the ``[B, T, vocab]`` logits float32 and, measured
    on an H200 with a Qwen3-0.6B shape, made the update's activations several times TRL's (TRL does not call
    it either). Only a float16 model gets that upcast, for the overflow it guards against. The LoRA factors
    are float32 (peft's default), so small learning rates are not rounded away. Gradient checkpointing uses
    the non-reentrant variant, with input gradients enabled so it works through frozen 4-bit layers. The
    adapter-disabled model (``with model.disable_adapter():``) is the reference policy: no second copy of the
    model is ever made.

    Returns:
        the ``peft.PeftModel``.
    """
    import peft

    settings = settings or LoraSettings()
    targets = settings.target_modules or LORA_TARGETS.get(model.config.model_type, "all-linear")
    ckpt_kwargs = {"use_reentrant": False}
    quantized = getattr(model, "is_quantized", False) or getattr(model, "is_loaded_in_4bit", False)
    fp16 = any(p.dtype == torch.float16 for p in model.parameters() if type(p).__name__ != "Params4bit")
    if quantized and fp16:
        # peft 0.22 renamed gradient_checkpointing_kwargs (the old name warns, and goes in 1.2); 0.18-0.21 know only it.
        params = inspect.signature(peft.prepare_model_for_kbit_training).parameters
        name = next(k for k in ("activation_checkpointing_kwargs", "gradient_checkpointing_kwargs") if k in params)
        model = peft.prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing, **{name: ckpt_kwargs}
        )
    else:
        model.requires_grad_(False)
        if gradient_checkpointing:
            enable_activation_checkpointing(model, ckpt_kwargs)
            model.enable_input_require_grads()
    config = peft.LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # peft reads transformers' deprecated is_gradient_checkpointing: not the user's
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        policy = peft.get_peft_model(model, config)
    return cast_adapter(policy, settings.dtype)


def cast_adapter(policy: torch.nn.Module, dtype: str) -> torch.nn.Module:
    """The adapter's trainable factors in ``dtype`` (``"bfloat16"``; ``"float32"``, peft's own, leaves them)."""
    if dtype == "bfloat16":
        for param in policy.parameters():
            if param.requires_grad:
                param.data = param.data.to(torch.bfloat16)
    return policy
