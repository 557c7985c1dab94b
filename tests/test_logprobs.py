"""chunked_logprobs against the dense reference: log_softmax(h W^T / t) gathered, its entropy, and gradients."""

from __future__ import annotations

import pytest
import torch
from conftest import LargestTensor

from lightning_reasonattn.functional.logprobs import chunked_logprobs


def dense_reference(hidden, weight, targets, temperature):
    logits = hidden.double() @ weight.double().t() / temperature
    logp_all = logits.log_softmax(-1)
    logp = logp_all.gather(-1, targets[..., None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_values_and_gradients_match_dense(chunk, temperature):
    torch.manual_seed(0)
    hidden = torch.randn(3, 11, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (3, 11))
    upstream = torch.randn(3, 11, dtype=torch.float64)

    logp, entropy = chunked_logprobs(hidden, weight, targets, temperature, chunk)
    (logp.double() * upstream).sum().backward()
    got = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    ref_logp, ref_entropy = dense_reference(hidden, weight, targets, temperature)
    (ref_logp * upstream).sum().backward()

    torch.testing.assert_close(logp.double(), ref_logp.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy.double(), ref_entropy.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[0], hidden.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], weight.grad, atol=1e-5, rtol=1e-5)
    assert not entropy.requires_grad


def test_hand_worked_two_token_vocabulary():
    # z = h W^T = [2, 0] for h = [1, 0], W = [[2, 0], [0, 1]]: p = [e^2, 1] / (e^2 + 1).
    hidden = torch.tensor([[1.0, 0.0]], requires_grad=True)
    weight = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    logp, entropy = chunked_logprobs(hidden, weight, torch.tensor([1]))
    p0 = torch.e**2 / (torch.e**2 + 1)
    assert logp.item() == pytest.approx(-torch.log(torch.tensor(torch.e**2 + 1)).item(), rel=1e-6)
    assert entropy.item() == pytest.approx(
        -(p0 * torch.log(torch.tensor(p0)) + (1 - p0) * torch.log(torch.tensor(1 - p0))).item(), rel=1e-5
    )
    logp.sum().backward()  # d logp / dz = onehot(1) - p = [-p0, p0]; dz/dh = W
    torch.testing.assert_close(hidden.grad, torch.tensor([[-2 * p0, p0]]), atol=1e-6, rtol=1e-6)


def test_bfloat16_hidden_and_weight_get_bfloat16_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(4, 8, dtype=torch.bfloat16, requires_grad=True)
    weight = torch.randn(30, 8, dtype=torch.bfloat16)
    targets = torch.randint(0, 30, (4,))
    logp, _ = chunked_logprobs(hidden, weight, targets, chunk=3)
    logp.sum().backward()
    assert logp.dtype == torch.float32 and hidden.grad.dtype == torch.bfloat16
    ref, _ = dense_reference(hidden.detach().float(), weight.float(), targets, 1.0)
    torch.testing.assert_close(logp.double(), ref, atol=2e-2, rtol=2e-2)


def test_never_makes_the_full_logits():
    n, vocab, chunk = 64, 5000, 32  # chunk x vocab above the weight's 16 x vocab, below n x vocab
    hidden = torch.randn(n, 16, requires_grad=True)
    weight = torch.randn(vocab, 16)
    with LargestTensor() as mode:
        logp, _ = chunked_logprobs(hidden, weight, torch.randint(0, vocab, (n,)), chunk=chunk)
        logp.sum().backward()
    assert mode.largest <= chunk * vocab < n * vocab


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [({"temperature": 0.0}, "temperature=0.0"), ({"chunk": 0}, "chunk"), ({"targets": torch.zeros(2, 4)}, "targets")],
)
def test_bad_input_is_named(kwargs, pattern):
    args = {
        "hidden": torch.randn(2, 3, 8),
        "weight": torch.randn(10, 8),
        "targets": torch.zeros(2, 3, dtype=torch.long),
    }
    with pytest.raises(ValueError, match=pattern):
        chunked_logprobs(**{**args, **kwargs})
