"""Last survivors of functional/logprobs.py and metrics.py: where chunked_logprobs' outputs live, and the dtype of
the coupling states before any batch. A default device other than the data's (``meta``) stands in for a GPU: a
tensor made without ``device=`` lands there and the next operation, or the result, shows it."""

import pytest
import torch
from test_metrics_states import coupled_trace

from lightning_reasonattn.functional.logprobs import chunked_logprobs
from lightning_reasonattn.metrics import RhythmCoupling


def test_chunked_logprobs_outputs_live_on_the_hidden_device():
    """Guards ``logp`` (and the ``entropy``/``lse`` buffers made like it) on the default device instead of
    hidden's: on a GPU the in-place log-softmax then mixes devices and raises."""
    torch.manual_seed(0)
    hidden, weight, targets = torch.randn(5, 4), torch.randn(7, 4), torch.randint(7, (5,))
    with torch.device("meta"):
        logp, entropy = chunked_logprobs(hidden, weight, targets, chunk=2)
    dense = torch.log_softmax(hidden @ weight.T, -1)
    assert logp.device.type == entropy.device.type == "cpu"
    torch.testing.assert_close(logp, dense.gather(-1, targets[:, None]).squeeze(-1))
    torch.testing.assert_close(entropy, -(dense.exp() * dense).sum(-1))


def test_coupling_states_are_float64_before_any_batch():
    """Guards float32 initial states: DDP gathers each state from every rank, which needs one dtype on all of them,
    also on a rank that saw no batch (or no entropy) yet; the counts are float64 (exact past 2**24)."""
    m = RhythmCoupling()
    dtypes = [{value.dtype for value in m.metric_state.values()}]
    m.update(coupled_trace())  # no entropy: the entropy states stay as built
    dtypes.append({value.dtype for value in m.metric_state.values()})
    m.reset()
    dtypes.append({value.dtype for value in m.metric_state.values()})
    assert dtypes == [{torch.float64}] * 3


@pytest.mark.parametrize("shape", [(5,), (1, 2, 5)])
def test_credit_gamma_refuses_a_mask_that_is_not_a_batch(shape):
    """``response_mask`` is ``[B, N]``: a 1-D mask (one response, unbatched) was taken, and the per-response sums
    then ran over whatever axis -1 was; now it is refused with the fix."""
    from lightning_reasonattn.functional import credit_gamma

    with pytest.raises(ValueError, match=r"^response_mask has shape \(.*\): expected \[B, N\].*unsqueeze\(0\)"):
        credit_gamma(None, "uniform", response_mask=torch.ones(shape, dtype=torch.bool))
    one = credit_gamma(None, "uniform", response_mask=torch.ones(1, 5, dtype=torch.bool), normalize=True)
    assert torch.equal(one, torch.ones(1, 5))
