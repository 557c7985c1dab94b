"""TRL's reward protocol end to end: `reasonattn fit` for 2 steps on the tiny 4-bit model, with conversational files.

One run uses a reward module written to the working directory (named in TRL's dotted form) that checks what it
receives; one uses TRL's own ``accuracy_reward`` and ``think_format_reward`` (skipped without trl).
"""

import csv
import json
import math
import re
import sys
import textwrap

import pytest
import yaml
from conftest import tiny_checkpoint
from test_grpo_module import write_config

from lightning_reasonattn import cli

# Lightning warns that the held-out loader is empty: every task here is read from a file, which has no held-out split
pytestmark = pytest.mark.filterwarnings("ignore:Total length of `HeldOut` across ranks is zero:UserWarning")

pytest.importorskip("bitsandbytes")

USER = {"role": "user", "content": "What is 2 + 2?"}
PREFIX = {"role": "assistant", "content": "<think>"}

SPY = '''
import json
from pathlib import Path

SEEN = Path(__file__).with_name("seen.jsonl")


def spy(prompts, completions, completion_ids, trainer_state, log_metric, log_extra, answer, kind, **kwargs):
    """Checks TRL's protocol; None for the rows of kind 'skip'; writes what it saw to seen.jsonl."""
    assert all(isinstance(p, list) and p[-1]["role"] == "user" for p in prompts), prompts  # prefixes moved out
    assert all(isinstance(c, list) and len(c) == 1 and c[0]["role"] == "assistant" for c in completions)
    assert len(completion_ids) == len(completions) and all(type(i) is int for ids in completion_ids for i in ids)
    assert (trainer_state.max_steps, trainer_state.epoch) == (2, 0.0)
    rewards = [None if k == "skip" else float(len(c[0]["content"]) % 2) for k, c in zip(kind, completions)]
    row = dict(step=trainer_state.global_step, completions=completions, ids=completion_ids, kind=kind, rewards=rewards)
    with SEEN.open("a") as fh:
        fh.write(json.dumps(row) + "\\n")
    log_metric("spy/calls", 1.0)
    log_extra("kind", list(kind))
    return rewards
'''


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-policy")
    return path, tiny_checkpoint(path, hidden_size=64, intermediate_size=128)


def jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def fit_config(tmp_path, model_path, data, functions, **overrides):
    config = yaml.safe_load(write_config(tmp_path, model_path, "uniform", steps=2).read_text())
    config["model"] |= {
        "task": {"name": data},
        "rewards": {"functions": functions},
        "log_completions_every_n_steps": 1,
        **overrides,
    }
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def logged(tmp_path):
    run = sorted(tmp_path.glob("lightning_logs/version_*"))[-1]
    with open(run / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("loss")]
    completions = [json.loads(line) for line in (run / "completions.jsonl").read_text().splitlines()]
    return rows, completions


def test_fit_with_a_conversational_file_and_a_reward_in_the_working_directory(tmp_path, checkpoint, monkeypatch):
    model_path, tokenizer = checkpoint
    (tmp_path / "my_protocol_rewards.py").write_text(textwrap.dedent(SPY))
    records = [
        {"prompt": [USER], "answer": "4", "kind": "score"},
        {"prompt": [USER, PREFIX], "answer": "4", "kind": "prefix"},
        {"prompt": [USER], "answer": "4", "kind": "skip"},
    ]
    data = jsonl(tmp_path / "chat.jsonl", records)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # fit puts the working directory first, as `trl grpo` does
    assert str(tmp_path) not in sys.path
    config = fit_config(tmp_path, model_path, data, ["my_protocol_rewards.spy"], prompts_per_step=3)
    try:
        assert cli.main(["fit", "--config", config]) == 0
    finally:
        sys.modules.pop("my_protocol_rewards", None)

    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert [s["step"] for s in seen] == [0, 1]  # trainer_state.global_step before each update
    rows, written = logged(tmp_path)
    assert len(rows) == 2
    for call, row in zip(seen, rows, strict=True):
        assert len(call["completions"]) == 9  # 3 prompts x group_size 3
        for kind, (message,), ids in zip(call["kind"], call["completions"], call["ids"], strict=True):
            text = tokenizer.decode(ids, skip_special_tokens=True)  # completion_ids are the completion's tokens
            assert message["content"] == ("<think>" + text if kind == "prefix" else text)
        scored = [r for r in call["rewards"] if r is not None]  # the None rows stay out of every mean
        assert len(scored) == 6
        assert float(row["rewards/spy/mean"]) == pytest.approx(sum(scored) / 6)
        assert float(row["reward"]) == pytest.approx(sum(scored) / 6)
        assert float(row["spy/calls"]) == 1.0  # log_metric
    assert len(written) == 6  # the first completion of each prompt, each step
    assert sorted(w["kind"] for w in written[:3]) == ["prefix", "score", "skip"]  # log_extra
    assert all((w["reward"] is None) == (w["kind"] == "skip") for w in written)  # no reward: null


def test_fit_with_trl_reward_functions(tmp_path, checkpoint):
    pytest.importorskip("trl")
    pytest.importorskip("math_verify")
    from trl.rewards import accuracy_reward, think_format_reward

    # the protocol first, on completions whose rewards are known: TRL's functions read completion[0]["content"]
    from lightning_reasonattn.rewards import conversational_completions, score_completions

    prompts, completions = conversational_completions(
        [[USER, PREFIX], [USER], [USER]], ["2 + 2 = 4</think> so \\boxed{4}", "\\boxed{5}", "\\boxed{4}"]
    )
    total, parts = score_completions(
        [accuracy_reward, think_format_reward], None, prompts, completions, {"solution": ["4", "4", "\\undefined{"]}
    )
    assert parts["think_format_reward"].tolist() == [1.0, 0.0, 0.0]
    assert parts["accuracy_reward"][:2].tolist() == [1.0, 0.0] and math.isnan(parts["accuracy_reward"][2])
    assert total.tolist() == [2.0, 0.0, 0.0]  # row 2: accuracy does not apply, think_format gives 0

    model_path, _ = checkpoint
    records = [{"prompt": [USER, PREFIX], "solution": "4"}, {"prompt": [USER], "solution": "\\frac{1}{2}"}]
    data = jsonl(tmp_path / "math.jsonl", records)
    functions = ["trl.rewards.accuracy_reward", "trl.rewards:think_format_reward"]
    assert cli.main(["fit", "--config", fit_config(tmp_path, model_path, data, functions)]) == 0
    rows, written = logged(tmp_path)
    assert len(rows) == 2
    for row in rows:
        assert 0.0 <= float(row["rewards/accuracy_reward/mean"]) <= 1.0
        assert 0.0 <= float(row["rewards/think_format_reward/mean"]) <= 1.0
    assert {"solution", "gold_parsed", "answer_parsed"} <= set(written[0])  # accuracy_reward's log_extra columns


def test_fit_refuses_a_file_without_the_answer_column_before_training(tmp_path, checkpoint, capsys):
    model_path, _ = checkpoint
    records = [{"prompt": [USER], "answer": "4"}, {"prompt": [USER], "answer": "4"}, {"prompt": [USER]}]
    config = fit_config(tmp_path, model_path, jsonl(tmp_path / "gap.jsonl", records), ["numeric"])
    assert cli.main(["fit", "--config", config]) == 2  # one line, exit 2, before the model loads
    expected = r"reasonattn fit: error: .*gap.jsonl, line 3 \(record 2\) has no column 'answer'"
    assert re.search(expected, capsys.readouterr().err)
    assert not list(tmp_path.glob("ckpt/*.ckpt"))  # refused before the first step
