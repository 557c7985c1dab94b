"""GRPO advantages, credit application and loss against hand-computed numbers."""

import math

import pytest
import torch

from lightning_reasonattn.grpo.advantages import group_advantages, token_advantages
from lightning_reasonattn.grpo.loss import aggregate, k3_kl, policy_loss


def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])  # two groups of 4
    a = group_advantages(r, 4, eps=0.0 + 1e-12)
    std = math.sqrt(1 / 3)  # unbiased std of (1, 0, 0, 1): sum of squares 1, / (4 - 1)
    assert a[:4].tolist() == pytest.approx([0.5 / std, -0.5 / std, -0.5 / std, 0.5 / std])
    assert a[4:].tolist() == [0.0, 0.0, 0.0, 0.0]  # all-equal group: zero, no NaN


def test_group_advantages_scales():
    r = torch.tensor([3.0, 1.0, 5.0, 5.0])
    assert group_advantages(r, 2, scale="none").tolist() == [1.0, -1.0, 0.0, 0.0]
    batch_std = r.std().item()
    assert group_advantages(r, 2, scale="batch", eps=0).tolist() == pytest.approx([1 / batch_std, -1 / batch_std, 0, 0])
    assert torch.isfinite(group_advantages(torch.ones(3), 1)).all()
    with pytest.raises(ValueError, match="scale='mean'"):
        group_advantages(r, 2, scale="mean")
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(r, 3)


def test_token_advantages_sign_modes():
    adv = torch.tensor([2.0, -1.0])
    gamma = torch.tensor([[1.5, 1.0], [1.5, 1.25]])
    assert token_advantages(adv, gamma).tolist() == [[3.0, 2.0], [-1.5, -1.25]]
    assert token_advantages(adv, gamma, "positive").tolist() == [[3.0, 2.0], [-1.0, -1.0]]
    assert token_advantages(adv).tolist() == [[2.0], [-1.0]]
    with pytest.raises(ValueError, match="sign_mode='neg'"):
        token_advantages(adv, gamma, "neg")


def test_k3_kl_by_hand():
    logp, ref = torch.tensor([0.0, -1.0]), torch.tensor([0.0, -2.0])
    # delta = ref - logp = (0, -1): exp(-1) + 1 - 1
    assert k3_kl(logp, ref).tolist() == pytest.approx([0.0, math.exp(-1)])


def test_aggregations_by_hand():
    per_token = torch.tensor([[1.0, 3.0, 9.0], [2.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert aggregate(per_token, mask, "token-mean").item() == pytest.approx(6 / 3)
    assert aggregate(per_token, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 2) / 2)
    assert aggregate(per_token, mask, "dr-grpo", max_len=4).item() == pytest.approx(6 / (2 * 4))
    with pytest.raises(ValueError, match="loss_type='mean'"):
        aggregate(per_token, mask, "mean")


def test_clipping_at_both_bounds():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.5, 0.5]])).requires_grad_()
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    loss, stats = policy_loss(
        logp, old, adv, torch.ones(1, 4), epsilon_low=0.2, epsilon_high=0.28, loss_type="token-mean"
    )
    # per token: A>0 r=1.5 -> min(1.5, 1.28) = 1.28; A>0 r=.5 -> .5; A<0 r=1.5 -> min(-1.5, -1.28) = -1.5;
    # A<0 r=.5 -> min(-.5, -.8) = -.8. loss = -(1.28 + .5 - 1.5 - .8) / 4
    assert loss.item() == pytest.approx(-(1.28 + 0.5 - 1.5 - 0.8) / 4)
    assert stats["clip_ratio/high_mean"].item() == pytest.approx(0.25)  # token 0
    assert stats["clip_ratio/low_mean"].item() == pytest.approx(0.25)  # token 3
    assert stats["clip_ratio/region_mean"].item() == pytest.approx(0.5)
    loss.backward()
    # clipped tokens give no gradient; the others d(-r A)/dlogp = -r A
    assert logp.grad.tolist()[0] == pytest.approx([0.0, -0.5 / 4, 1.5 / 4, 0.0])


def test_kl_penalty_and_its_guard():
    logp = torch.zeros(1, 2)
    ref = torch.tensor([[0.0, -1.0]])
    loss, stats = policy_loss(logp, logp, torch.zeros(1, 1), torch.ones(1, 2), ref_logp=ref, beta=0.1)
    assert loss.item() == pytest.approx(0.1 * math.exp(-1) / 2)
    assert stats["kl"].item() == pytest.approx(math.exp(-1) / 2)
    with pytest.raises(ValueError, match="beta=0.1 needs ref_logp"):
        policy_loss(logp, logp, torch.zeros(1, 1), torch.ones(1, 2), beta=0.1)


@pytest.mark.parametrize("loss_type", ["token-mean", "seq-mean-token-mean", "dr-grpo"])
@pytest.mark.parametrize("size", [1, 2, 3, None])
def test_minibatch_shares_reproduce_the_whole_batch(loss_type, size):
    from lightning_reasonattn.grpo.loss import minibatches

    torch.manual_seed(0)
    per_token = torch.rand(5, 7)
    mask = torch.rand(5, 7) > 0.3
    whole = aggregate(per_token, mask, loss_type, max_len=8)
    parts = sum(
        aggregate(per_token[rows], mask[rows], loss_type, max_len=8) * w
        for rows, w in minibatches(mask, size, loss_type)
    )
    assert parts.item() == pytest.approx(whole.item(), rel=1e-6)


@pytest.mark.parametrize("loss_type", ["token-mean", "seq-mean-token-mean", "dr-grpo"])
@pytest.mark.parametrize(("world", "size"), [(2, 2), (3, None), (3, 1)])
def test_minibatch_shares_under_ddp_average_to_the_whole_batch(loss_type, world, size):
    """Each of ``world`` ranks weighs its own rows; DDP averages over ranks: that average is the whole loss."""
    from lightning_reasonattn.grpo.loss import minibatches

    torch.manual_seed(1)
    per_token = torch.rand(6 * world, 7)
    mask = torch.rand(6 * world, 7) > 0.4
    mask[0] = False  # a row without tokens, on rank 0 only: the ranks' token counts differ
    whole = aggregate(per_token, mask, loss_type, max_len=8)
    ranks = []
    for r in range(world):
        rows = slice(6 * r, 6 * (r + 1))
        batches = minibatches(mask[rows], size, loss_type, world_size=world, global_tokens=mask.sum())
        ranks.append(sum(aggregate(per_token[rows][b], mask[rows][b], loss_type, max_len=8) * w for b, w in batches))
    assert (sum(ranks) / world).item() == pytest.approx(whole.item(), rel=1e-6)
