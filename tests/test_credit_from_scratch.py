"""benchmarks/credit_from_scratch.py's start model: the held-out problems are the RL task's test split and are never
pretrained on, and a saved start model is reused (or refused for other settings)."""

import json

import pytest
import torch
from conftest import load_script

from lightning_reasonattn.tasks import word_problem_splits

TINY = dict(seed=0, task_seed=3, difficulty=3, n_test=40, n_eval=20, n_val=6, n_pretrain=200, n_layer=1, n_head=2,
            n_embd=16, batch_size=4, lr=2e-3, max_steps=2, eval_every=1, stop_at=1.0, max_new_tokens=8)  # fmt: skip


@pytest.fixture(scope="module")
def script():
    return load_script("benchmarks/credit_from_scratch.py")


def test_held_out_problems_are_the_task_test_split_and_never_pretrained_on(script):
    pretrain, val, held_out = script.problems(TINY)
    # the reference: the split RhythmGRPO's task {word_problems, difficulty 3, plain, seed 3, n_test 20} evaluates on
    rl_train, rl_test = word_problem_splits(50, 20, 3, difficulty=3, style="plain", chat=False)
    assert [r["question"] for r in held_out] == [r["question"] for r in rl_test]
    excluded = {r["question"] for r in word_problem_splits(0, TINY["n_test"], 3, difficulty=3, style="plain")[1]}
    pretrained = {r["question"] for r in pretrain}
    assert len(pretrained) == TINY["n_pretrain"] and not pretrained & (excluded | {r["question"] for r in val})
    tokenizer = script.build_tokenizer(pretrain)
    for record in held_out + rl_train:  # every problem of the task encodes
        assert tokenizer.decode(tokenizer.encode(record["prompt"])) == record["prompt"]


def test_start_model_is_saved_whole_then_reused(script, tmp_path):
    torch.set_num_threads(1)
    logs = []
    model, tokenizer, record = script.start_model(dict(TINY), tmp_path, log=logs.append)
    folder = tmp_path / "start"
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "tokenizer.json", "start.json"}
    saved = json.loads((folder / "start.json").read_text())
    assert saved["task"] == {"name": "word_problems", "difficulty": 3, "style": "plain", "chat": False, "seed": 3,
                             "n_test_at_most": 40}  # fmt: skip
    assert saved["held_out"]["n"] == 20 and [c["step"] for c in saved["curve"]] == [0, 1, 2]
    again, _, reused = script.start_model(dict(TINY), tmp_path, log=logs.append)
    assert logs[-1].startswith(f"reusing the start model in {folder}") and reused == saved
    ids = torch.tensor([tokenizer.encode("Question: Tom has 3 apples.")])
    assert torch.equal(again(ids), model(ids))
    with pytest.raises(SystemExit, match="other settings \\(n_embd: 16 here, 32 asked\\)"):
        script.start_model({**TINY, "n_embd": 32}, tmp_path)


def test_pretraining_is_deterministic_from_its_seed(script):
    torch.set_num_threads(1)
    settings = {**TINY, "max_steps": 3, "eval_every": 3}
    first, _, info = script.pretrain(settings, log=lambda line: None)
    second, _, _ = script.pretrain(settings, log=lambda line: None)
    other, _, _ = script.pretrain({**settings, "seed": 1}, log=lambda line: None)
    assert info["steps"] == 3
    pairs = zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not torch.equal(first.lm_head.weight, other.lm_head.weight)
