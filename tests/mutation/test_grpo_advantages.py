"""grpo/advantages.py: the default eps, the group-size check and the positive-only credit, by hand."""

import math

import pytest
import torch

from lightning_reasonattn.grpo.advantages import group_advantages, token_advantages


def test_default_eps_is_1e_4():
    a = group_advantages(torch.tensor([0.0, 1.0, 3.0, 3.0]), 2)
    std = math.sqrt(0.5)  # unbiased std of (0, 1)
    assert a.tolist() == pytest.approx([-0.5 / (std + 1e-4), 0.5 / (std + 1e-4), 0.0, 0.0], rel=1e-6)


@pytest.mark.parametrize("group_size", [0, -2, True, 2.0, "2"])
def test_group_size_must_be_a_positive_integer(group_size):
    with pytest.raises(ValueError, match=f"group_size={group_size!r} is invalid"):
        group_advantages(torch.zeros(4), group_size)


def test_positive_mode_scales_every_positive_advantage():
    gamma = torch.tensor([[2.0, 1.5]])
    for a in (0.5, 1.0, 3.0):  # below, at and above 1: all positive
        assert token_advantages(torch.tensor([a]), gamma, "positive").tolist() == [[2.0 * a, 1.5 * a]]
    assert token_advantages(torch.tensor([-0.5]), gamma, "positive").tolist() == [[-0.5, -0.5]]
