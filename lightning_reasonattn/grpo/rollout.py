"""Rollout: sample G completions per prompt, fast, from a policy that may be 4-bit quantized with LoRA.

bitsandbytes' 4-bit matmuls are slow for token-by-token decoding (on CPU they fall back to a path about 40x
slower than fp32). [`DenseRollout`][DenseRollout] keeps a plain copy of the policy in the compute dtype, with the
base weights dequantized once and the LoRA deltas merged in; [`DenseRollout.sync`][DenseRollout.sync] re-merges the
adapter after each optimizer step, so the rollout samples from exactly the current policy. It costs the
memory of an unquantized model; ``backend="policy"`` samples from the policy itself instead.

Sampling is keyed ([`KeyedSampling`][KeyedSampling]): each completion's random draws are a function of the run seed, the
step, the prompt's global index and the completion's index in its group, so they do not depend on the process
that samples it, on the rest of its batch, or on any RNG state. A run on N processes samples what a run on one
samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..functional.keyed import keyed_gumbel, mix

BACKENDS = ("auto", "policy", "dense")


@dataclass
class Completions:
    """A batch of sampled completions, right-padded.

    Attributes:
        ids: ``[B, T]`` token ids (padding after the end).
        mask: ``[B, T]`` bool, True up to and including the first EOS.
        truncated: ``[B]`` bool, no EOS within ``max_new_tokens``.
    """

    ids: torch.Tensor
    mask: torch.Tensor
    truncated: torch.Tensor


def completion_mask(ids: torch.Tensor, eos_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, truncated)``: tokens up to and including the first EOS; rows with no EOS are truncated.

    Args:
        ids: ``[B, T]`` generated ids.
        eos_ids: the ids that end a completion.
    """
    is_eos = torch.zeros_like(ids, dtype=torch.bool)
    for eos in eos_ids:
        is_eos |= ids == eos
    seen_before = (is_eos.long().cumsum(-1) - is_eos.long()) > 0  # an EOS strictly earlier in the row
    return ~seen_before, ~is_eos.any(-1)


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


class KeyedSampling:
    """A ``generate`` logits processor that makes greedy decoding an exact, keyed categorical sample.

    Each step it applies the temperature, top-k and top-p (transformers' own warpers, in the order ``generate``
    uses) and adds Gumbel noise keyed by ``(row key, decode position, token id)``
    ([`keyed_gumbel`][lightning_reasonattn.functional.keyed.keyed_gumbel]); ``generate(do_sample=False)`` then takes the
    argmax, which is a draw from the warped softmax (the Gumbel-max trick) that depends on the keys only.

    Args:
        keys: ``[B]`` int64 row keys, e.g. ``mix(seed, step, prompt_index, j)``.
        prompt_width: ``P``, the width of the (left-padded) prompt batch: decode position = ``len - P``.
        temperature: > 0.
        top_p: in ``(0, 1]``.
        top_k: ``None`` or ``0`` for no top-k.
    """

    def __init__(self, keys: torch.Tensor, prompt_width: int, temperature: float, top_p: float = 1.0,
                 top_k: int | None = None):  # fmt: skip
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        if not temperature > 0:
            raise ValueError(f"temperature={temperature!r}: keyed sampling needs a temperature > 0 (0 is greedy).")
        self.keys = keys
        self.prompt_width = prompt_width
        self.warpers = [TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
        if top_k:
            self.warpers.append(TopKLogitsWarper(top_k=top_k))
        if top_p is not None and top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p=top_p))
        self._tokens: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        if self._tokens is None or self._tokens.numel() != scores.shape[-1]:
            self._tokens = torch.arange(scores.shape[-1], device=scores.device)
        position = input_ids.shape[1] - self.prompt_width
        rows = mix(self.keys.to(scores.device), position)
        return scores + gumbel_noise(mix(rows[:, None], self._tokens[None, :]), scores.dtype)


def gumbel_noise(keys: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Keyed Gumbel noise computed in float64 (float32 where the device has no float64, e.g. MPS)."""
    wide = torch.float32 if keys.device.type == "mps" else torch.float64
    return keyed_gumbel(keys, wide).to(dtype)


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    eos_ids: list[int],
    pad_id: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    keys: torch.Tensor | None = None,
) -> Completions:
    """Sample one completion per (left-padded) prompt row with ``model.generate``.

    Args:
        prompt_ids: ``[B, P]`` left-padded prompts (repeat each prompt G times beforehand).
        prompt_mask: ``[B, P]``, 0 at padding.
        temperature: ``0`` decodes greedily (``top_p``, ``top_k`` and ``keys`` are then ignored).
        keys: ``[B]`` int64 row keys: sample with [`KeyedSampling`][KeyedSampling] (the draws depend on the keys only);
            ``None`` samples with ``generate``'s own ``do_sample`` from the process RNG.

    Returns:
        [`Completions`][Completions] of width ``<= max_new_tokens``.
    """
    was_training = model.training
    model.eval()
    try:
        greedy = dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        if temperature == 0:  # greedy, for evaluation
            how = greedy
        elif keys is not None:  # argmax of keyed-Gumbel-perturbed warped logits = a keyed sample
            from transformers import LogitsProcessorList

            keyed = KeyedSampling(keys, prompt_ids.shape[1], temperature, top_p, top_k)
            how = dict(greedy, logits_processor=LogitsProcessorList([keyed]))
        else:
            how = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k if top_k is not None else 0)
        out = model.generate(
            input_ids=prompt_ids,
            attention_mask=prompt_mask,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos_ids,
            pad_token_id=pad_id,
            **how,
        )
    finally:
        model.train(was_training)
    ids = out[:, prompt_ids.shape[1] :]
    mask, truncated = completion_mask(ids, eos_ids)
    return Completions(ids.masked_fill(~mask, pad_id), mask, truncated)


def _dense_weight(module: torch.nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """The dense ``[out, in]`` weight of a (possibly bitsandbytes-quantized) linear layer."""
    weight = module.weight
    if type(module).__name__ == "Linear4bit":
        import bitsandbytes.functional as bnbf

        if getattr(weight.quant_state, "packing_format_for_cpu", False):  # see models.exact_cpu_4bit
            from bitsandbytes.nn.modules import _convert_weight_packed_for_cpu_inverse

            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, weight.quant_state)
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

        from ..capture import unwrap_causal_lm

        base = unwrap_causal_lm(policy)
        device = next(policy.parameters()).device
        self.dtype = dtype or (torch.float32 if device.type == "cpu" else torch.bfloat16)
        config = base.config.__class__.from_dict(base.config.to_dict())
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        with torch.random.fork_rng(devices=[]):  # random init (overwritten below) must not shift the RNG stream
            self.model = AutoModelForCausalLM.from_config(
                config, dtype=self.dtype, attn_implementation=base.config._attn_implementation
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
