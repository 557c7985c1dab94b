"""The capture's fallback for a model whose attention does not go through transformers' ``AttentionInterface``:
per-head statistics from the ``[B, H, N, N]`` weights each selected attention module returns when asked.

Slower (a second forward pass and one ``N x N`` map per selected layer, alive one at a time); the dense functional
math reduces each map at once.
"""

from __future__ import annotations

import torch

from ..functional.attention import fai, head_backward_distance, waad
from .hf_attention import unwrap_causal_lm


def _attention_modules(base, layers: list[int]) -> list[torch.nn.Module]:
    """The self-attention module of each selected decoder layer."""
    n_layers = base.config.get_text_config().num_hidden_layers
    stacks = [m for m in base.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers]
    if not stacks:
        raise RuntimeError(f"cannot find the {n_layers} decoder layers of {type(base).__name__}.")
    found = []
    for layer in layers:
        attn = [m for name, m in stacks[0][layer].named_modules() if name and "attention" in type(m).__name__.lower()]
        if not attn:
            raise RuntimeError(f"decoder layer {layer} of {type(base).__name__} has no attention module.")
        found.append(attn[0])
    return found


def eager_layer_stats(model, inputs: dict, response_mask, *, layers, window, horizon):
    """Fallback: per-head statistics from the attention weights the selected modules return when asked.

    Each selected attention module is called with ``output_attentions=True`` and its ``[B, H, N, N]`` map is
    reduced at once by the dense functional math, then dropped, so only one map is alive at a time.

    Args:
        model: a Hugging Face causal LM.
        inputs: the forward's ``input_ids``, ``attention_mask`` and ``position_ids`` (each ``[B, N]``).
        response_mask: ``[B, N]`` bool, the rows measured.
        layers: the selected layer indices; window, horizon: as in the spec.

    Returns:
        ``(head_distance [B, L, H], head_waad [B, L, H, N], head_fai [B, L, H, N])``, for
        [`trace_from_head_stats`][lightning_reasonattn.functional.trace.trace_from_head_stats].
    """
    modules = _attention_modules(unwrap_causal_lm(model), layers)
    stats: dict[int, tuple[torch.Tensor, ...]] = {}

    def ask_for_weights(module, args, kwargs):
        return args, {**kwargs, "output_attentions": True}

    def reduce(i):
        def hook(module, args, output):
            maps = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if not isinstance(maps, torch.Tensor) or maps.ndim != 4:
                raise RuntimeError(
                    f"the attention module of layer {layers[i]} ({type(module).__name__}) returns no attention "
                    "weights; load the model with attn_implementation='eager' or 'sdpa' to capture its rhythm."
                )
            stats[i] = (
                head_backward_distance(maps, response_mask),
                waad(maps, response_mask, window),
                fai(maps, response_mask, horizon),
            )
            return (output[0], None, *output[2:])

        return hook

    handles = []
    try:
        for i, module in enumerate(modules):
            handles.append(module.register_forward_pre_hook(ask_for_weights, with_kwargs=True))
            handles.append(module.register_forward_hook(reduce(i)))
        model(**inputs, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return tuple(torch.stack([stats[i][j] for i in range(len(layers))], 1) for j in range(3))
