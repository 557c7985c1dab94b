"""grpo/loss.py: what the aggregate and the statistics are made of, beyond their values (dtype, device)."""

import torch

from lightning_reasonattn.grpo.loss import aggregate, policy_loss


def test_aggregate_keeps_the_loss_dtype_whatever_the_mask_dtype():
    """Guards a mask used as given: a float64 mask would promote the loss (and its backward) to float64."""
    per_token = torch.tensor([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    for loss_type, value in (("token-mean", 11 / 3), ("seq-mean-token-mean", (1.5 + 8) / 2), ("dr-grpo", 11 / 6)):
        got = aggregate(per_token, mask, loss_type)
        assert got.dtype == torch.float32 and abs(got.item() - value) < 1e-6


def test_statistics_live_on_the_data_device_not_the_default_device():
    """Guards a statistic created on torch's default device instead of the data's (on a GPU run: a CPU tensor
    among GPU ones). A default device other than the data's (``meta`` here) shows it on a CPU."""
    logp, mask = torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool)
    advantages = torch.tensor([[1.0], [-1.0]])
    with torch.device("meta"):
        loss, stats = policy_loss(logp, logp, advantages, mask)
    assert loss.device.type == "cpu" and loss.item() == 0.0  # ratio 1: -(A) averaged over +1 and -1
    assert {name: value.device.type for name, value in stats.items()} == dict.fromkeys(stats, "cpu")
    assert stats["kl"].item() == 0.0  # no reference policy
