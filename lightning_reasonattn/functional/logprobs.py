"""Token log-probabilities and entropies straight from hidden states, without the ``[N, V]`` logits.

For a vocabulary of 150k, the logits of a GRPO update batch (8 completions x 64 tokens) take 300 MB in
float32, and autograd keeps them (and a float32 copy) for the backward: more than all the decoder layers of
a 0.6B model. [`chunked_logprobs`][chunked_logprobs] computes, for ``N`` rows of hidden states ``h`` and output weights
``W`` (``[V, D]``)::

    z = (h @ W^T) / temperature                        # [N, V], never stored whole
    logp[i] = z[i, y_i] - logsumexp(z[i])
    H[i]    = logsumexp(z[i]) - sum_v softmax(z[i])_v z[i, v]

``chunk`` rows at a time, and recomputes each chunk's logits in the backward, where::

    d logp[i] / d z[i] = onehot(y_i) - softmax(z[i]),   d z / d h = W / temperature

so the peak extra memory is a few ``[chunk, V]`` float32 blocks instead of ``[N, V]`` ones. The entropy
carries no gradient (it is logged and used for entropy credit only).
"""

from __future__ import annotations

import torch

from ._checks import check_positive_int


def _chunk_logits(hidden: torch.Tensor, weight: torch.Tensor, temperature: float) -> torch.Tensor:
    """``[c, V]`` float32 logits of ``c`` rows, computed in the weight's dtype as the model's head would."""
    return (hidden.to(weight.dtype) @ weight.t()).float() / temperature


class _ChunkedLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature, chunk):
        n = hidden.shape[0]
        logp = torch.empty(n, device=hidden.device, dtype=torch.float32)
        entropy = torch.empty_like(logp)
        lse = torch.empty_like(logp)
        with torch.autocast(hidden.device.type, enabled=False):  # dtypes are explicit here
            for c0 in range(0, n, chunk):
                rows = slice(c0, c0 + chunk)
                z = _chunk_logits(hidden[rows], weight, temperature)
                lse[rows] = torch.logsumexp(z, dim=-1)
                z.sub_(lse[rows, None])  # log-softmax in place: two [chunk, V] blocks at most
                logp[rows] = z.gather(-1, targets[rows, None]).squeeze(-1)
                entropy[rows] = -z.exp().mul_(z).sum(-1)
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.temperature, ctx.chunk = temperature, chunk
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, _grad_entropy):
        hidden, weight, targets, lse = ctx.saved_tensors
        t, chunk = ctx.temperature, ctx.chunk
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        with torch.autocast(hidden.device.type, enabled=False):
            for c0 in range(0, hidden.shape[0], chunk):
                rows = slice(c0, c0 + chunk)
                z = _chunk_logits(hidden[rows], weight, t)
                g = torch.exp(z - lse[rows, None]).mul_(-grad_logp[rows, None])  # -softmax * dL/dlogp
                g.scatter_add_(-1, targets[rows, None], grad_logp[rows, None])  # + onehot * dL/dlogp
                g.div_(t)  # dL/d(h W^T)
                if grad_hidden is not None:
                    grad_hidden[rows] = g.to(weight.dtype) @ weight  # the assignment casts to hidden's dtype
                if grad_weight is not None:
                    grad_weight += g.t() @ hidden[rows].float()
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None


def chunked_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0, chunk: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logp, entropy)`` of ``targets`` under ``softmax(hidden @ weight.T / temperature)``, ``chunk`` rows at a time.

    Args:
        hidden: ``[..., D]`` final hidden states (after the model's last norm).
        weight: ``[V, D]`` output embedding (the LM head's weight, no bias).
        targets: ``[...]`` token ids in ``[0, V)``.
        temperature: divides the logits (> 0).
        chunk: rows per block; the extra memory is a few ``chunk x V`` float32 blocks.

    Returns:
        ``logp`` ``[...]`` float32 with gradient to ``hidden`` (and ``weight`` if it requires one), and
        ``entropy`` ``[...]`` float32 without gradient.
    """
    chunk = check_positive_int(chunk, "chunk")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} is invalid: it must be > 0.")
    if weight.ndim != 2 or hidden.shape[:-1] != targets.shape or hidden.shape[-1] != weight.shape[-1]:
        raise ValueError(
            f"hidden {tuple(hidden.shape)}, weight {tuple(weight.shape)} and targets {tuple(targets.shape)} do "
            "not fit: expected hidden [..., D], weight [V, D], targets [...]."
        )
    lead = targets.shape
    logp, entropy = _ChunkedLogProbs.apply(
        hidden.reshape(-1, hidden.shape[-1]), weight, targets.reshape(-1), float(temperature), chunk
    )
    return logp.view(lead), entropy.view(lead)
