"""functional/logprobs.py: survivors of the mutation run (issue 26): chunking, dtypes, devices, work in the backward.

References are dense float64 computations of ``log_softmax(h W^T / t)`` and its analytic gradient.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import lightning_reasonattn.functional.logprobs as logprobs
from lightning_reasonattn.functional.logprobs import chunked_logprobs

V, D, N = 7, 3, 10


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=g), torch.randn(V, D, generator=g), torch.randint(V, (N,), generator=g)


def test_chunk_error_names_chunk():
    """Bug class: the error for a bad ``chunk`` names another parameter."""
    hidden, weight, targets = data()
    with pytest.raises(ValueError, match=r"^chunk=0 is invalid"):
        chunked_logprobs(hidden, weight, targets, chunk=0)


def test_weight_that_is_not_a_matrix_is_refused():
    """Bug class: a 1-D weight (``[D]``, e.g. a bias passed by mistake) passes the shape check and fails deep inside
    with a broadcast error instead of the one-line message."""
    hidden, weight, targets = data()
    with pytest.raises(ValueError, match=r"weight \[V, D\]"):
        chunked_logprobs(hidden, weight[0], targets)


def test_forward_runs_one_block_per_chunk(monkeypatch):
    """Bug class: the chunk loop steps by 1, recomputing ``chunk`` rows of ``[chunk, V]`` logits per token."""
    calls = []
    real = logprobs._chunk_logits

    def counting(hidden, weight, temperature):
        calls.append(hidden.shape[0])
        return real(hidden, weight, temperature)

    monkeypatch.setattr(logprobs, "_chunk_logits", counting)
    hidden, weight, targets = data()
    logp, _ = chunked_logprobs(hidden, weight, targets, chunk=4)
    assert calls == [4, 4, 2]
    dense = torch.log_softmax(hidden.double() @ weight.double().t(), -1).gather(-1, targets[:, None]).squeeze(-1)
    torch.testing.assert_close(logp.double(), dense, rtol=1e-5, atol=1e-5)


def test_outputs_are_float32_under_a_float64_default_dtype():
    """Bug class: the outputs allocated with the default dtype, so ``torch.set_default_dtype(torch.float64)`` changes
    the documented float32 ``logp``."""
    hidden, weight, targets = data()
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        logp, entropy = chunked_logprobs(hidden, weight, targets, chunk=4)
    finally:
        torch.set_default_dtype(before)
    assert logp.dtype == entropy.dtype == torch.float32


class ShapesMade(TorchDispatchMode):
    """Records the shape of every tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


def backward_shapes(hidden_grad: bool, weight_grad: bool) -> list[tuple[int, ...]]:
    hidden, weight, targets = data()
    hidden.requires_grad_(hidden_grad)
    weight.requires_grad_(weight_grad)
    logp, _ = chunked_logprobs(hidden, weight, targets, chunk=4)
    loss = logp.sum()
    with ShapesMade() as mode:
        loss.backward()
    return mode.shapes


def test_frozen_weight_gets_no_gradient_buffer():
    """Bug class: a ``[V, D]`` float32 gradient of the LM head built in every backward although the head is frozen
    (LoRA): hundreds of MB for a 150k vocabulary, the memory this module exists to save."""
    assert (V, D) not in backward_shapes(hidden_grad=True, weight_grad=False)


def test_hidden_without_grad_gets_no_gradient_buffer():
    """Bug class: a gradient of the hidden states built although nothing asks for it (work and ``[N, D]`` memory)."""
    assert (N, D) not in backward_shapes(hidden_grad=False, weight_grad=True)


def test_bf16_weight_gradient_is_accumulated_in_float32():
    """Bug class: the weight gradient accumulated in the weight's dtype (bf16) over the chunks, so every chunk adds a
    rounding error; in float32 the only error is the final rounding to bf16 (at most one bf16 ulp of the dense
    float64 gradient of the same bf16 logits)."""
    g = torch.Generator().manual_seed(1)
    n, v, d = 256, 5, 4
    hidden = torch.randn(n, d, generator=g)
    weight = torch.randn(v, d, generator=g).bfloat16().requires_grad_()
    targets = torch.randint(v, (n,), generator=g)
    logp, _ = chunked_logprobs(hidden, weight, targets, chunk=1)
    logp.sum().backward()
    z = (hidden.bfloat16() @ weight.detach().t()).double()  # the logits as the head computes them in bf16
    grad_z = torch.nn.functional.one_hot(targets, v).double() - torch.softmax(z, -1)
    dense = grad_z.t() @ hidden.double()
    ulp = torch.finfo(torch.bfloat16).eps * dense.abs().clamp_min(1.0)
    assert weight.grad.dtype == torch.bfloat16
    assert ((weight.grad.double() - dense).abs() <= ulp).all()
