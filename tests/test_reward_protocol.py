"""TRL's reward protocol: conversational completions, None rewards, the trainer's keywords, reward names, files."""

import functools
import json
import math
import sys

import pytest
import torch

from lightning_reasonattn.grpo.advantages import group_advantages
from lightning_reasonattn.grpo.data import BUILTIN_REWARDS, reward_functions, task_records
from lightning_reasonattn.grpo.settings import RewardSettings, TaskSettings
from lightning_reasonattn.rewards import (
    RewardLog,
    combine_rewards,
    conversational_completions,
    countdown_reward,
    format_reward,
    numeric_answer_reward,
    required_columns,
    score_completions,
)
from lightning_reasonattn.rewards.protocol import nanstd, reward_metrics
from lightning_reasonattn.rollout.prompts import prompt_text
from lightning_reasonattn.tasks import load_prompts
from lightning_reasonattn.testing import tiny_tokenizer

NAN = math.nan
USER = {"role": "user", "content": "2+2?"}


def same(a, b):
    """Lists equal, NaN equal to NaN."""
    return len(a) == len(b) and all((x != x and y != y) or x == y for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------------- completions


def test_conversational_completions_follow_trl():
    prefix = {"role": "assistant", "content": "<think>"}
    prompts = ["plain", [USER], [USER, prefix]]
    before = json.dumps(prompts)
    got_prompts, completions = conversational_completions(prompts, ["a", "b", "c</think>4"])
    assert completions == [
        "a",  # a string prompt keeps a string completion
        [{"role": "assistant", "content": "b"}],
        [{"role": "assistant", "content": "<think>c</think>4"}],  # the continued prefix joins the completion
    ]
    assert got_prompts == ["plain", [USER], [USER]]  # and leaves the prompt, as in TRL
    assert json.dumps(prompts) == before  # the records are not modified
    with pytest.raises(ValueError, match="2 prompts for 1 completions"):
        conversational_completions(["a", "b"], ["x"])


def test_a_prompt_ending_with_an_assistant_message_is_continued():
    tokenizer = tiny_tokenizer()
    opened, _ = prompt_text(tokenizer, [USER])
    continued, _ = prompt_text(tokenizer, [USER, {"role": "assistant", "content": "<think>"}])
    assert opened.endswith("<|im_start|>assistant\n")
    assert continued == opened + "<think>"  # no end-of-turn after the prefix, no second assistant header


# ---------------------------------------------------------------------------------- None rewards


def test_none_rewards_combine_as_trl():
    def half(prompts, completions, **kwargs):  # applies to even rows only
        return [float(len(c)) if i % 2 == 0 else None for i, c in enumerate(completions)]

    def odd(prompts, completions, **kwargs):  # applies to rows 1 and 2
        return [None, 10.0, 20.0, None]

    total, parts = score_completions([half, odd], [1.0, 0.5], ["p"] * 4, ["a", "bb", "ccc", "dddd"])
    # by hand: row 0: 1*1 = 1; row 1: 0.5*10 = 5; row 2: 1*3 + 0.5*20 = 13; row 3: none applies -> NaN
    assert same(total.tolist(), [1.0, 5.0, 13.0, NAN])
    assert same(parts["half"].tolist(), [1.0, NAN, 3.0, NAN])
    assert same(parts["odd"].tolist(), [NAN, 10.0, 20.0, NAN])


def test_combine_rewards_returns_none_where_nothing_applies_and_forwards_logs():
    def maybe(prompts, completions, log_metric, log_extra, **kwargs):
        log_metric("maybe/seen", float(len(completions)))
        log_extra("length", [len(c) for c in completions])
        return [1.0 if c else None for c in completions]

    reward = combine_rewards([maybe, format_reward], [1.0, 0.0])
    assert reward(prompts=["p", "q"], completions=["x", ""]) == [1.0, 0.0]  # format_reward applies: 0.0
    only = combine_rewards([maybe])
    metrics, extra = [], []
    got = only(
        prompts=["p", "q"], completions=["x", ""], trainer_state=None, completion_ids=[[1], []],
        log_metric=lambda name, value: metrics.append((name, value)),
        log_extra=lambda column, values: extra.append((column, values)),
    )  # fmt: skip
    assert got == [1.0, None]  # TRL turns the None into NaN itself
    assert metrics == [("maybe/seen", 2.0)] and extra == [("length", [1, 0])]


def test_group_advantages_leave_unscored_completions_out():
    r = torch.tensor([1.0, NAN, 0.0, 2.0, NAN, NAN, 5.0, 5.0])  # groups of 4: [1, -, 0, 2], [-, -, 5, 5]
    a = group_advantages(r, 4, eps=0.0)
    # group 0 over {1, 0, 2}: mean 1, unbiased std 1 -> (0, 0, -1, 1); the NaN row gets 0; group 1: equal -> 0
    assert a.tolist() == pytest.approx([0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    batch = group_advantages(r, 4, scale="batch", eps=0.0)
    valid = torch.tensor([1.0, 0.0, 2.0, 5.0, 5.0])
    assert batch[3].item() == pytest.approx(1.0 / valid.std().item())  # batch std over the scored rewards only
    assert group_advantages(r, 4, scale="none").tolist() == [0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert group_advantages(torch.full((4,), NAN), 2).tolist() == [0.0] * 4  # nothing scored: no signal


def test_reward_metrics_are_nan_aware():
    total = torch.tensor([1.0, NAN, 0.0, 1.0])
    per_function = {"f": torch.tensor([1.0, NAN, 0.0, 1.0]), "g": torch.tensor([NAN, NAN, 4.0, 2.0])}
    log = RewardLog()
    log.log_metric("g/parsed", 1.0)
    log.log_metric("g/parsed", 0.0)
    out = {k: v.item() for k, v in reward_metrics(total, per_function, 2, log).items()}
    assert out["reward"] == pytest.approx(2 / 3)  # over the 3 scored completions
    assert out["reward_std"] == pytest.approx(math.sqrt(1 / 3))  # unbiased std of (1, 0, 1)
    assert out["frac_reward_zero_std"] == 0.5  # group [1, -] has one value, no spread; [0, 1] has one
    assert out["rewards/f/mean"] == pytest.approx(2 / 3)
    assert out["rewards/g/mean"] == 3.0 and out["rewards/g/std"] == pytest.approx(math.sqrt(2))
    assert out["g/parsed"] == 0.5
    assert nanstd(torch.tensor([NAN, 2.0])).item() == 0.0


# ------------------------------------------------------------------------------- trainer keywords


def test_required_columns():
    assert required_columns(countdown_reward) == ["numbers", "target"]
    assert required_columns(numeric_answer_reward) == ["answer"]
    assert required_columns(format_reward) == []
    assert required_columns(functools.partial(countdown_reward, target=[1])) == ["numbers"]

    def trl_style(completions, solution, log_extra=None, **kwargs): ...

    def uses_ids(prompts, completions, completion_ids, trainer_state, **kwargs): ...

    assert required_columns(trl_style) == ["solution"]
    assert required_columns(uses_ids) == []  # the trainer passes those
    assert required_columns(print) == []  # a builtin without a readable signature


# ---------------------------------------------------------------------------------- reward names


@pytest.fixture
def reward_module(tmp_path, monkeypatch):
    """``pkg_for_rewards/scoring.py`` in tmp_path, importable; removed from sys.modules afterwards."""
    package = tmp_path / "pkg_for_rewards"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "scoring.py").write_text(
        "def exact(prompts, completions, **kwargs):\n    return [1.0] * len(completions)\n\n"
        "class Holder:\n    @staticmethod\n    def inner(prompts, completions, **kwargs):\n"
        "        return [0.5] * len(completions)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "pkg_for_rewards.scoring"
    for name in ("pkg_for_rewards.scoring", "pkg_for_rewards"):
        sys.modules.pop(name, None)


def test_reward_paths_in_both_forms(reward_module):
    settings = RewardSettings([f"{reward_module}.exact", f"{reward_module}:exact", f"{reward_module}:Holder.inner"])
    funcs, _ = reward_functions(settings, TaskSettings())
    assert funcs[0] is funcs[1] and funcs[0].__name__ == "exact"
    assert funcs[2](prompts=["p"], completions=["c"]) == [0.5]
    funcs, _ = reward_functions(RewardSettings(["numeric", "format", "countdown"]), TaskSettings())
    assert funcs == [BUILTIN_REWARDS["numeric"], BUILTIN_REWARDS["format"], BUILTIN_REWARDS["countdown"]]
    with pytest.raises(ValueError, match=r"'package.module:function' or 'package.module.function'"):
        reward_functions(RewardSettings([f"{reward_module}.missing"]), TaskSettings())


# ------------------------------------------------------------------------------------------ files


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_record_without_the_answer_column_is_refused_when_read(tmp_path):
    records = [{"prompt": [USER], "answer": "4"}] * 3 + [{"prompt": [USER]}]
    path = write_jsonl(tmp_path / "train.jsonl", records)
    with pytest.raises(ValueError, match=r"train.jsonl, line 4 \(record 3\) has no column 'answer' that record 0 has"):
        load_prompts(path)
    # the same columns everywhere, but not the one the reward reads: refused with the fix
    path = write_jsonl(tmp_path / "solutions.jsonl", [{"prompt": "2+2?", "solution": "4"}])
    funcs, _ = reward_functions(RewardSettings(["numeric"]), TaskSettings())
    with pytest.raises(
        ValueError, match=r"'numeric_answer_reward' needs column 'answer'.*\['solution'\].*answer_column"
    ):
        task_records(TaskSettings(name=str(path)), chat=False, reward_funcs=funcs)
    train, test = task_records(TaskSettings(name=str(path), answer_column="solution"), False, funcs)
    assert train == [{"prompt": "2+2?", "answer": "4"}] and test == []
    # generated tasks are checked too: countdown records have no 'answer'
    with pytest.raises(ValueError, match="needs column 'answer'"):
        task_records(TaskSettings(name="countdown", n_train=4, n_test=2), False, funcs)
