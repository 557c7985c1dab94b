"""A dense copy of a 4-bit LoRA policy to sample from, and the rule that decides when to use it.

bitsandbytes' 4-bit matmuls are slow for token-by-token decoding (on CPU they fall back to a path about 40x
slower than fp32). [`DenseRollout`][DenseRollout] keeps a plain copy of the policy in the compute dtype, with the
base weights dequantized once and the LoRA deltas merged in; [`DenseRollout.sync`][DenseRollout.sync] re-merges the
adapter after each optimizer step, so the rollout samples from exactly the current policy. It costs the
memory of an unquantized model; ``backend="policy"`` samples from the policy itself instead.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from ..capture import unwrap_causal_lm
from ..compat import attn_implementation, unpack_cpu_4bit

Backend = Literal["auto", "policy", "dense"]
BACKENDS = get_args(Backend)


# On CUDA, ``auto`` takes the dense copy while it needs at most this share of the free GPU memory.
DENSE_SHARE_OF_FREE_CUDA = 0.25


def dense_bytes(model: torch.nn.Module, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes of a dense copy of ``model``'s weights in ``dtype``: quantized weights counted at their unpacked
    shape, LoRA factors left out (they are merged), tied weights counted once."""
    seen, total = set(), 0
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if ".lora_" in name or list(module.children()) or not isinstance(weight, torch.Tensor):
            continue
        if weight.data_ptr() in seen:
            continue
        seen.add(weight.data_ptr())
        state = getattr(weight, "quant_state", None)
        total += (torch.Size(state.shape).numel() if state is not None else weight.numel()) * dtype.itemsize
    return total


def choose_backend(quantized: bool, device_type: str, copy_bytes: int, free_bytes: int | None) -> str:
    """The ``auto`` rule, as plain numbers: see [`resolve_backend`][resolve_backend]."""
    if not quantized:
        return "policy"
    if device_type != "cuda":
        return "dense"
    return "dense" if free_bytes is not None and copy_bytes <= DENSE_SHARE_OF_FREE_CUDA * free_bytes else "policy"


def resolve_backend(backend: str, model: torch.nn.Module) -> str:
    """Which model the rollout samples from: ``policy`` (itself) or ``dense`` (a [`DenseRollout`][DenseRollout] copy).

    ``auto`` picks ``dense`` for a bitsandbytes-quantized policy when the copy is affordable, ``policy``
    otherwise (an unquantized policy is already dense). Measured (docs/performance.md): on CPU the dense copy
    decodes ~40x faster than bitsandbytes' 4-bit path; on an H200, 2.4x faster for a Qwen3-0.6B shape, at
    2 bytes per parameter. So on CPU it is always taken; on CUDA while the bf16 copy needs at most
    ``DENSE_SHARE_OF_FREE_CUDA`` of the free GPU memory (e.g. a 0.6B model on a 24 GB card, not a 4B one).
    """
    if backend not in BACKENDS:
        raise ValueError(f"rollout backend={backend!r} is unknown: use one of {', '.join(BACKENDS)}.")
    if backend != "auto":
        return backend
    device = next(model.parameters()).device
    quantized = is_quantized(model)
    free = torch.cuda.mem_get_info(device)[0] if quantized and device.type == "cuda" else None
    return choose_backend(quantized, device.type, dense_bytes(model) if free is not None else 0, free)


def is_quantized(model: torch.nn.Module) -> bool:
    return any(type(m).__name__ in ("Linear4bit", "Linear8bitLt") for m in model.modules())


def _dense_weight(module: torch.nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """The dense ``[out, in]`` weight of a (possibly bitsandbytes-quantized) linear layer."""
    weight = module.weight
    if type(module).__name__ == "Linear4bit":
        import bitsandbytes.functional as bnbf

        unpack_cpu_4bit(weight)  # see models.exact_cpu_4bit
        return bnbf.dequantize_4bit(weight.data, weight.quant_state).to(dtype)
    if type(module).__name__ == "Linear8bitLt":
        import bitsandbytes.functional as bnbf

        return bnbf.int8_vectorwise_dequant(weight.data, weight.SCB).to(dtype)
    return weight.data.to(dtype)


class DenseRollout:
    """A dense copy of a (quantized, LoRA-adapted) policy for fast sampling, kept in sync with it.

    Args:
        policy: a peft ``PeftModel`` (or a plain transformers causal LM).
        dtype: compute dtype of the copy (default: float32 on CPU, bfloat16 on CUDA).
    """

    def __init__(self, policy: torch.nn.Module, dtype: torch.dtype | None = None):
        from transformers import AutoModelForCausalLM

        base = unwrap_causal_lm(policy)
        device = next(policy.parameters()).device
        self.dtype = dtype or (torch.float32 if device.type == "cpu" else torch.bfloat16)
        config = base.config.__class__.from_dict(base.config.to_dict())
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        with torch.random.fork_rng(devices=[]):  # random init (overwritten below) must not shift the RNG stream
            self.model = AutoModelForCausalLM.from_config(
                config, dtype=self.dtype, attn_implementation=attn_implementation(base.config)
            ).to(device)
        self.model.eval().requires_grad_(False)
        self.policy = policy
        self.pairs = self._pair_modules(base)
        self.sync(all_weights=True)

    def _pair_modules(self, base: torch.nn.Module) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
        """(policy module, dense module) for every leaf that holds weights, matched by name."""
        dense = dict(self.model.named_modules())
        pairs = []
        for name, module in base.named_modules():
            # peft wraps a target as <name>.base_layer inside a LoRA layer; the dense copy has <name>.
            if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
                pairs.append((module, dense[name]))
            elif name.endswith(".base_layer") or ".lora_" in name or name in ("", None):
                continue
            elif isinstance(getattr(module, "weight", None), torch.Tensor) and not list(module.children()):
                if name in dense:
                    pairs.append((module, dense[name]))
        return pairs

    @torch.no_grad()
    def sync(self, all_weights: bool = False) -> None:
        """Copy the current policy into the dense model: LoRA layers always, the rest when ``all_weights``."""
        for src, dst in self.pairs:
            if hasattr(src, "get_delta_weight"):
                base_layer = src.get_base_layer()
                weight = _dense_weight(base_layer, self.dtype)
                if not getattr(src, "disable_adapters", False):
                    for adapter in src.active_adapters:
                        if adapter in src.lora_A:
                            weight += src.get_delta_weight(adapter).to(self.dtype)
                dst.weight.copy_(weight)
                if getattr(base_layer, "bias", None) is not None:
                    dst.bias.copy_(base_layer.bias.to(self.dtype))
            elif all_weights:
                dst.weight.copy_(_dense_weight(src, self.dtype))
                if getattr(src, "bias", None) is not None and getattr(dst, "bias", None) is not None:
                    dst.bias.copy_(src.bias.to(self.dtype))
