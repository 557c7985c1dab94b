"""Tests written against the surviving mutants of ``rewards/protocol.py``: the dtype of the scores whatever torch's
default, and the prompt an error names."""

import pytest
import torch

from lightning_reasonattn.rewards.protocol import RewardError, score_completions


def _half(prompts, completions, **kwargs):
    return [0.5] * len(completions)


@pytest.fixture
def float64_default():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def test_per_function_rewards_are_float32_whatever_the_default_dtype(float64_default):
    """Each function's rewards are float32 as documented, even when a user made float64 torch's default."""
    _, parts = score_completions([_half], None, ["p", "q"], ["a", "b"])
    assert parts["_half"].dtype == torch.float32
    assert parts["_half"].tolist() == [0.5, 0.5]


def test_the_total_is_float32_whatever_the_default_dtype(float64_default):
    """Bug fixed: the weights followed torch's default dtype, so the total turned float64 under a float64 default
    (documented float32)."""
    total, _ = score_completions([_half], [3.0], ["p", "q"], ["a", "b"])
    assert total.dtype == torch.float32
    assert total.tolist() == [1.5, 1.5]


def test_an_error_names_a_none_prompt_by_its_repr():
    """A prompt that is not text (``None``) is shown as its repr in the error, not read as an empty completion."""

    def fails(prompts, completions, **kwargs):
        raise KeyError("boom")

    with pytest.raises(RewardError, match=r"at prompt index 0 \(prompt 'None'\)"):
        score_completions([fails], None, [None], ["a"])
