"""Counter-based random numbers: a value is a function of integer keys only, never of a generator's state.

``keyed_uniform(mix(seed, step, prompt, j, position, token))`` is the same number on any device, in any batch
and on any rank, so a sample keyed by the prompt's global index does not depend on which process drew it, how
the batch was padded, or what else was drawn before (see ``grpo.rollout.KeyedSampling``).

The mixing function is Chris Wellons' ``lowbias32`` integer hash (2-round xorshift-multiply), computed on
32-bit values held in int64 tensors; the products are split into 16-bit halves so that no int64 operation
overflows, which makes the results identical on every backend.
"""

from __future__ import annotations

import torch

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9  # 2^32 / golden ratio: decorrelates consecutive integers before hashing


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2^32`` for ``x`` in ``[0, 2^32)``, with every intermediate below ``2^49``."""
    low = x * (c & 0xFFFF)
    high = ((x * (c >> 16)) & 0xFFFF) << 16
    return (low + high) & _M32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """``lowbias32`` of int64 values in ``[0, 2^32)``: a bijection of 32-bit integers with good avalanche.

    Args:
        x: int64 tensor of any shape (values taken mod ``2^32``).

    Returns:
        int64 tensor of the same shape, values in ``[0, 2^32)``.
    """
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x21F0AAAD)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x735A2D97)
    return x ^ (x >> 15)


def mix(*keys: torch.Tensor | int) -> torch.Tensor:
    """One 32-bit key from several integer keys (broadcast together): ``h = hash32(h ^ hash32(k + golden))``.

    The order matters (``mix(a, b) != mix(b, a)``), so positional keys such as (seed, step, prompt, sample,
    position) never collide by permutation.

    Returns:
        int64 tensor of the broadcast shape, values in ``[0, 2^32)``.
    """
    h: torch.Tensor | None = None
    for key in keys:
        k = torch.as_tensor(key, dtype=torch.int64, device=h.device if h is not None else None)
        code = hash32((k & _M32) + _GOLDEN)
        h = hash32(code if h is None else h ^ code)
    if h is None:
        raise ValueError("mix() needs at least one key.")
    return h


def keyed_uniform(keys: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(hash32(keys) + 0.5) / 2^32``: one uniform number in the open interval ``(0, 1)`` per key.

    Args:
        keys: int64 keys (e.g. from [`mix`][mix]), any shape.
        dtype: float64 by default, so that ``u`` never rounds to 0 or 1 (Gumbel noise stays finite).
    """
    return (hash32(keys).to(dtype) + 0.5) / 2.0**32


def keyed_gumbel(keys: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log(u))`` of [`keyed_uniform`][keyed_uniform].

    ``argmax(logits + gumbel)`` is an exact sample of ``softmax(logits)`` (the Gumbel-max trick).
    """
    return -torch.log(-torch.log(keyed_uniform(keys, dtype)))
