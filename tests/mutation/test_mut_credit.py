"""grpo/credit.py: the gamma of a step's rows does not depend on torch's default device."""

import torch
from test_grpo_credit import hand_trace, rollouts

from lightning_reasonattn.grpo.credit import rows_gamma
from lightning_reasonattn.grpo.settings import CreditSettings


def test_entropy_gamma_is_built_on_the_data_device():
    """Guards a buffer created on torch's default device instead of the rollouts' (on a GPU run the entropy
    strategy would mix a CPU buffer with GPU masks). A default device other than the data's (``meta`` here)
    shows it on a CPU."""
    r = rollouts([4, 3])
    entropy = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.8, 0.2, 0.3, 9.0]])  # row 1's last column is padding
    settings = CreditSettings(strategy="entropy", q=0.25, gamma_amp=2.0)
    with torch.device("meta"):
        got = rows_gamma(settings, r, slice(0, 2), None, entropy)
    # q = 0.25: ceil(1.0) = 1 of 4 tokens (0.9), ceil(0.75) = 1 of 3 (0.8); padding keeps gamma 1
    assert got.device.type == "cpu"
    assert got.tolist() == [[1.0, 2.0, 1.0, 1.0], [2.0, 1.0, 1.0, 1.0]]


def test_a_trace_keeps_its_own_token_sets():
    """Guards the settings' ``q`` applied to a trace: the tokens a trace marks (selected with its own ``q`` when it
    was captured) are the ones amplified; ``q`` only picks tokens for strategies without a trace."""
    r = rollouts([4])
    trace = hand_trace(r.response_mask, {"anchor": [(0, 4), (0, 6)]})  # its signals are NaN: nothing to re-select
    settings = CreditSettings(strategy="global_anchor", q=trace.q / 2)
    assert rows_gamma(settings, r, slice(0, 1), trace, torch.zeros(1, 4)).tolist() == [[1.0, 1.5, 1.0, 1.5]]
