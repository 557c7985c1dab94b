"""grpo/loss.py against a reference written token by token in plain Python (float64), from the docstring's formula
``-min(r A, clip(r, 1 - eps_low, 1 + eps_high) A) + beta KL`` and TRL's clip statistics."""

import math
import random

import pytest
import torch

from lightning_reasonattn.grpo.loss import policy_loss


def reference(logp, old, adv, mask, eps_low, eps_high, loss_type, ref=None, beta=0.0, max_len=None):
    """(loss, stats) from nested lists, one token at a time."""
    rows, width = len(logp), len(logp[0])
    per_token = [[0.0] * width for _ in range(rows)]
    low = high = kl_sum = 0.0
    for i in range(rows):
        for t in range(width):
            r = math.exp(logp[i][t] - old[i][t])
            a = adv[i][t if len(adv[i]) > 1 else 0]
            clipped = min(max(r, 1 - eps_low), 1 + eps_high)
            loss = -min(r * a, clipped * a)
            kl = 0.0
            if ref is not None:
                d = ref[i][t] - logp[i][t]
                kl = math.exp(d) - d - 1
            per_token[i][t] = loss + beta * kl
            if mask[i][t]:
                low += r < 1 - eps_low and a < 0
                high += r > 1 + eps_high and a > 0
                kl_sum += kl
    counted = [[per_token[i][t] for t in range(width) if mask[i][t]] for i in range(rows)]
    n = sum(len(c) for c in counted)
    if loss_type == "token-mean":
        total = sum(map(sum, counted)) / max(n, 1)
    elif loss_type == "seq-mean-token-mean":
        total = sum(sum(c) / max(len(c), 1) for c in counted) / rows
    else:
        total = sum(map(sum, counted)) / (rows * (max_len if max_len is not None else width))
    stats = {
        "clip_ratio/low_mean": low / max(n, 1),
        "clip_ratio/high_mean": high / max(n, 1),
        "clip_ratio/region_mean": (low + high) / max(n, 1),
        "kl": kl_sum / max(n, 1),
    }
    return total, stats


def random_batch(seed, rows=4, width=6, per_token_adv=True):
    rng = random.Random(seed)
    old = [[rng.uniform(-3.0, -0.1) for _ in range(width)] for _ in range(rows)]
    logp = [[o + rng.uniform(-0.6, 0.6) for o in row] for row in old]  # ratios from 0.55 to 1.8: both bounds cut
    ref = [[o + rng.uniform(-1.0, 1.0) for o in row] for row in old]
    adv = [[rng.uniform(-2.0, 2.0) for _ in range(width if per_token_adv else 1)] for _ in range(rows)]
    mask = [[rng.random() < 0.7 for _ in range(width)] for _ in range(rows)]
    mask[0] = [True] + [False] * (width - 1)  # a row with one token
    return logp, old, adv, mask, ref


@pytest.mark.parametrize("loss_type", ["token-mean", "seq-mean-token-mean", "dr-grpo"])
@pytest.mark.parametrize("per_token_adv", [True, False])
@pytest.mark.parametrize(("eps_low", "eps_high", "beta", "max_len"), [(0.2, 0.28, 0.0, None), (0.1, 0.3, 0.05, 9)])
def test_policy_loss_matches_the_token_by_token_reference(loss_type, per_token_adv, eps_low, eps_high, beta, max_len):
    logp, old, adv, mask, ref = random_batch(3, per_token_adv=per_token_adv)
    expected, expected_stats = reference(logp, old, adv, mask, eps_low, eps_high, loss_type, ref, beta, max_len)
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    loss, stats = policy_loss(
        t(logp), t(old), t(adv), torch.tensor(mask), eps_low, eps_high, loss_type, t(ref), beta, max_len
    )
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    for name, value in expected_stats.items():
        assert stats[name].item() == pytest.approx(value, rel=1e-6, abs=1e-12), name  # shares in float32


def test_the_default_clip_range_is_0_2_on_both_sides():
    logp, old, adv, mask, _ = random_batch(5)
    expected, expected_stats = reference(logp, old, adv, mask, 0.2, 0.2, "token-mean")
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    loss, stats = policy_loss(t(logp), t(old), t(adv), torch.tensor(mask))
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert stats["clip_ratio/region_mean"].item() == pytest.approx(expected_stats["clip_ratio/region_mean"])
    assert stats["kl"].item() == 0.0  # no reference policy: no KL


def test_clip_statistics_at_the_bounds_and_at_zero_advantage():
    """A ratio exactly at a bound is not clipped (TRL: ``r < 1 - eps_low``, ``r > 1 + eps_high``); an advantage of 0
    is clipped on neither side; a positive advantage only at the upper bound, a negative one only at the lower."""
    logp = torch.zeros(1, 6)
    old = torch.tensor([[0.0, 0.0, 1.0, -1.0, 1.0, -1.0]])  # ratios 1, 1, e^-1, e, e^-1, e
    adv = torch.tensor([[-1.0, 1.0, 0.0, 0.0, 0.5, -0.5]])
    _, stats = policy_loss(logp, old, adv, torch.ones(1, 6), epsilon_low=0.0, epsilon_high=0.0)
    assert stats["clip_ratio/low_mean"].item() == 0.0  # ratio 1 = 1 - 0 with A < 0; e^-1 only with A >= 0
    assert stats["clip_ratio/high_mean"].item() == 0.0  # ratio 1 = 1 + 0 with A > 0; e only with A <= 0
    adv = torch.tensor([[-1.0, 1.0, -0.5, 0.5, -0.5, 0.5]])
    _, stats = policy_loss(logp, old, adv, torch.ones(1, 6), epsilon_low=0.0, epsilon_high=0.0)
    assert stats["clip_ratio/low_mean"].item() == pytest.approx(2 / 6)  # tokens 2, 4: e^-1 < 1 with A < 0
    assert stats["clip_ratio/high_mean"].item() == pytest.approx(2 / 6)  # tokens 3, 5: e > 1 with A > 0


def test_statistics_of_a_batch_of_one_token():
    logp, old = torch.zeros(2, 3), torch.full((2, 3), 1.0)  # every ratio e^-1
    mask = torch.zeros(2, 3, dtype=torch.bool)
    mask[1, 2] = True
    _, stats = policy_loss(logp, old, -torch.ones(2, 1), mask)
    assert stats["clip_ratio/low_mean"].item() == 1.0  # 1 of 1 counted token
    _, stats = policy_loss(logp, old, -torch.ones(2, 1), torch.zeros(2, 3, dtype=torch.bool))
    assert stats["clip_ratio/low_mean"].item() == 0.0  # no token: 0, not NaN


def test_minibatch_weights_of_a_batch_of_one_token():
    from lightning_reasonattn.grpo.loss import minibatches

    mask = torch.tensor([[True, False], [False, False]])
    assert [(rows, w.item()) for rows, w in minibatches(mask, 1, "token-mean")] == [
        (slice(0, 1), 1.0),
        (slice(1, 2), 0.0),
    ]
    # under DDP, 2 processes, 1 token over both: this process's token weighs W * 1 / 1
    assert minibatches(mask, None, "token-mean", world_size=2, global_tokens=torch.tensor(1))[0][1].item() == 2.0
