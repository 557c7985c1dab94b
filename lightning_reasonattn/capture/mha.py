"""``torch.nn.MultiheadAttention`` (and ``nn.TransformerEncoderLayer``, which holds one) seen as one SDPA call.

``nn.MultiheadAttention.forward`` hands its inputs to ``torch.nn.functional.multi_head_attention_forward``, which
projects queries and keys and then calls ``scaled_dot_product_attention`` (or, with ``need_weights=True``, a matmul
and a softmax). A ``TorchFunctionMode`` sees the outer function as one call and runs it with the mode switched off,
so the SDPA call inside is never seen. [`mha_as_sdpa`][mha_as_sdpa] turns the outer call's arguments into the SDPA
call it stands for:

* ``query [B, H, N, D]`` and ``key [B, H, S, D]``: the input projections ``x W_q^T + b_q`` and ``x W_k^T + b_k``
  (the packed ``in_proj_weight``, or ``q_proj_weight`` / ``k_proj_weight``), split into ``num_heads`` heads;
* ``attn_mask``: the call's ``attn_mask`` and ``key_padding_mask`` as one additive mask ``[B or 1, H or 1, N, S]``
  in SDPA's convention (``nn.MultiheadAttention``'s bool masks say True = *blocked*; SDPA's say True = attend), or
  ``None`` with ``is_causal=True`` where the function itself drops the mask for ``is_causal`` (no padding mask,
  ``need_weights=False``);
* ``scale``: ``None`` (``1 / sqrt(D)``, as the function uses).

The function's own output is computed unchanged by the original call. Sequence-first tensors (``batch_first=False``,
the function's layout) and unbatched ones are handled; ``bias_k``, ``add_zero_attn`` and ``static_k`` (an extra
key that is no token) are refused.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

MHA = F.multi_head_attention_forward
_SIGNATURE = inspect.signature(MHA)


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An ``nn.MultiheadAttention`` mask (bool: True = blocked; float: added) as an additive float mask."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


def mha_as_sdpa(args: tuple, kwargs: dict, where: str) -> dict:
    """The SDPA call that a ``multi_head_attention_forward(*args, **kwargs)`` call stands for (see the module).

    Args:
        args: the call's positional arguments.
        kwargs: its keyword arguments.
        where: the attention module, for messages.

    Returns:
        ``{"query", "key", "attn_mask", "is_causal", "scale"}`` as an SDPA call would hold them.

    Raises:
        ValueError: ``bias_k``, ``add_zero_attn`` or ``static_k``: a key that is no token of the sequence.
    """
    call = _SIGNATURE.bind(*args, **kwargs)
    call.apply_defaults()
    a = call.arguments
    if a["bias_k"] is not None or a["add_zero_attn"] or a["static_k"] is not None:
        raise ValueError(
            f"{where} is an nn.MultiheadAttention with add_bias_kv, add_zero_attn or a static key: it attends to a "
            "key that is no token of the sequence, which the rhythm's definitions do not cover. Capture the layers "
            "without it (layers=... or attention_modules=...)."
        )
    query, key = a["query"], a["key"]
    padding = a["key_padding_mask"]
    if query.dim() == 2:  # unbatched: [N, E]
        query, key = query.unsqueeze(1), key.unsqueeze(1)
        padding = padding.unsqueeze(0) if padding is not None else None
    n, b, e = query.shape
    s, h = key.shape[0], a["num_heads"]
    if a["use_separate_proj_weight"]:
        w_q, w_k = a["q_proj_weight"], a["k_proj_weight"]
    else:
        w_q, w_k, _ = a["in_proj_weight"].chunk(3)
    b_q, b_k = a["in_proj_bias"].chunk(3)[:2] if a["in_proj_bias"] is not None else (None, None)
    q = F.linear(query, w_q, b_q).view(n, b, h, e // h).permute(1, 2, 0, 3)  # [B, H, N, D]
    k = F.linear(key, w_k, b_k).view(s, b, h, e // h).permute(1, 2, 0, 3)  # [B, H, S, D]

    attn_mask, is_causal = a["attn_mask"], a["is_causal"]
    if is_causal and padding is None and not a["need_weights"]:  # the function then ignores attn_mask
        return {"query": q, "key": k, "attn_mask": None, "is_causal": True, "scale": None}
    mask = None
    if attn_mask is not None:
        mask = _additive(attn_mask, q.dtype)
        mask = mask.view(1, 1, n, s) if mask.dim() == 2 else mask.view(b, h, n, s)
    if padding is not None:
        pad = _additive(padding, q.dtype).view(b, 1, 1, s)
        mask = pad if mask is None else mask + pad
    return {"query": q, "key": k, "attn_mask": mask, "is_causal": mask is None and is_causal, "scale": None}
