"""Two CPU processes under Lightning's own DDP (gloo) against one process: RhythmGRPO and the callbacks.

The two-process runs are scripts (``ddp_grpo.py``, ``ddp_callbacks.py``) that Lightning's ``strategy="ddp"``
re-runs once per rank; each runs in its own process group under a timeout, so a hang fails the test instead of
blocking the suite. The one-process runs are the same functions, called in this process.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import ddp_callbacks
import ddp_grpo
import pytest
import torch
from conftest import communicate_or_fail
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, SingleDeviceStrategy
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_reasonattn.testing import tiny_checkpoint

pytest.importorskip("bitsandbytes")

TESTS = Path(__file__).resolve().parent
TIMEOUT_S = 420  # generous for a loaded 2-core machine; a hang (the old RhythmReport) never ends by itself


def start_two_processes(script: str, *args: str) -> subprocess.Popen:
    """Start ``tests/<script> ARGS 2`` (Lightning launches the second rank) in its own process group."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    env.pop("LOCAL_RANK", None)  # a leftover would make Lightning think the ranks are launched already
    return subprocess.Popen(
        [sys.executable, str(TESTS / script), *args, "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, script: str) -> None:
    """Wait for a :func:`start_two_processes` run; on timeout kill its whole group (both ranks) and fail."""
    out, _ = communicate_or_fail(proc, TIMEOUT_S, f"{script} on 2 processes")
    assert proc.returncode == 0, out[-5000:]


def metrics(folder: Path) -> list[dict[str, float]]:
    """The logged rows of a run (step rows and validation rows), as floats."""
    with open(folder / "metrics.csv") as fh:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(fh)]


def adapter(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def grpo_runs(tmp_path_factory):
    """``(one, two)``: the folders of the runs of ``ddp_grpo.py`` on one and on two processes."""
    root = tmp_path_factory.mktemp("ddp-grpo")
    model = str(tiny_checkpoint(root / "model"))
    two = start_two_processes("ddp_grpo.py", str(root / "two"), model)
    one = root / "one"
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # meanwhile, the same runs on this one process
        ddp_grpo.run(one, model, 1, "uniform", 2, "uniform")
        ddp_grpo.run(one, model, 1, "coupled", 3, "coupled")
        finish(two, "ddp_grpo.py")
        # the two-process run's step-2 checkpoint, resumed on one process
        ckpt = root / "two" / "coupled" / "ckpt" / "epoch=0-step=2.ckpt"
        ddp_grpo.run(one, model, 1, "resumed_from_two", 3, "coupled", ckpt_path=str(ckpt))
    finally:
        if two.poll() is None:
            os.killpg(two.pid, signal.SIGKILL)
        torch.set_num_threads(torch_threads)
    return one, root / "two"


# Lightning's ModelCheckpoint warns that the resumed run writes to another folder: this test resumes into a new one
@pytest.mark.filterwarnings("ignore:The dirpath has changed from:UserWarning")
@pytest.mark.parametrize("strategy", ["uniform", "coupled"])
def test_two_processes_sample_what_one_samples(grpo_runs, strategy):
    one, two = grpo_runs
    # every rank's completions, gathered and written by rank 0: the same prompts, texts and rewards, in order
    written = [(folder / strategy / "completions.jsonl").read_text().splitlines() for folder in (one, two)]
    assert len(written[0]) == 4 * (2 if strategy == "uniform" else 3)  # first completion of each of 4 prompts
    assert written[0] == written[1]


@pytest.mark.parametrize("strategy", ["uniform", "coupled"])
def test_two_processes_log_the_values_of_one(grpo_runs, strategy):
    one, two = (metrics(folder / strategy) for folder in grpo_runs)
    assert len(one) == len(two) == (2 if strategy == "uniform" else 4)  # coupled: 3 steps + a validation row
    for a, b in zip(one, two, strict=True):
        assert a.keys() == b.keys()
        for name in a:
            if name.startswith("tokens_per_sec/"):  # measured time: summed over ranks, not comparable
                assert b[name] > 0
                continue
            assert b[name] == pytest.approx(a[name], rel=1e-5, abs=1e-6), name
    names = set().union(*one)
    assert {"reward", "reward_std", "entropy", "kl", "loss", "clip_ratio/region_mean", "credit/mean_gamma"} <= names
    if strategy == "coupled":
        assert {"val/reward", "credit/preplan_rate", "credit/anchor_rate", "partial_seen"} <= names
        steps = [row for row in one if "reward" in row]
        assert all(row["reward"] == row["reward"] for row in steps)  # finite: NaN rewards left out of the mean
        assert any(row.get("credit/amplified_frac", 0) > 0 for row in one)


@pytest.mark.parametrize(("strategy", "steps"), [("uniform", 2), ("coupled", 3)])
def test_two_processes_train_the_adapter_of_one(grpo_runs, strategy, steps):
    one, two = grpo_runs
    for step in range(1, steps + 1):
        name = f"epoch=0-step={step}.ckpt"
        a, b = adapter(one / strategy / "ckpt" / name), adapter(two / strategy / "ckpt" / name)
        assert a.keys() == b.keys() and a and all("lora_" in k for k in a)
        worst = max((a[k] - b[k]).abs().max().item() for k in a)
        print(f"{strategy} step {step}: max |LoRA(1 process) - LoRA(2 processes)| = {worst:.2e}")
        assert worst <= 1e-5, (strategy, step, worst)
    first = adapter(one / strategy / "ckpt" / "epoch=0-step=1.ckpt")
    assert any(not torch.equal(first[k], a[k]) for k in a)  # it learns: the comparison is not of two zeros


def test_resume_on_two_processes_continues_the_run(grpo_runs):
    _, two = grpo_runs
    uninterrupted, resumed = metrics(two / "coupled")[-1], metrics(two / "resumed")[-1]
    assert uninterrupted.keys() == resumed.keys()
    for name, value in uninterrupted.items():
        if not name.startswith("tokens_per_sec/"):
            assert resumed[name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    third = (two / "coupled" / "completions.jsonl").read_text().splitlines()[-4:]  # step 3's prompts and texts
    assert (two / "resumed" / "completions.jsonl").read_text().splitlines() == third
    a, b = (
        adapter(two / "coupled" / "ckpt" / "epoch=0-step=3.ckpt"),
        adapter(two / "resumed" / "ckpt" / "epoch=0-step=3.ckpt"),
    )
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)
    saved = torch.load(two / "coupled" / "ckpt" / "epoch=0-step=2.ckpt", map_location="cpu", weights_only=False)
    assert len(saved["rng_states"]) == 2 and saved["sampling_seed"] == ddp_grpo.SEED  # one RNG state per rank


def test_resume_on_another_world_size_continues_the_run(grpo_runs):
    one, two = grpo_runs
    uninterrupted, resumed = metrics(two / "coupled")[-1], metrics(one / "resumed_from_two")[-1]
    for name, value in uninterrupted.items():
        if not name.startswith("tokens_per_sec/"):
            assert resumed[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_each_rank_restores_its_own_rng_state():
    from lightning_reasonattn.grpo.distributed import rng_states

    module = small_module()
    with torch.random.fork_rng(devices=[]):  # leave the suite's RNG as it was
        states = []
        for seed in (11, 12):
            torch.manual_seed(seed)
            states.append(rng_states())
        module._trainer = types.SimpleNamespace(global_rank=1)
        torch.manual_seed(0)
        module._restore_rng_states({"rng_states": states, "sampling_seed": 5})
        assert torch.equal(torch.get_rng_state(), states[1]["torch"]) and module._seed == 5
        module._trainer = types.SimpleNamespace(global_rank=2)  # resumed on more processes than were saved
        with pytest.warns(UserWarning, match="RNG states of 2 process"):
            module._restore_rng_states({"rng_states": states})


def small_module(**kwargs):
    """A RhythmGRPO not yet set up (no model loaded)."""
    from lightning_reasonattn.grpo import RhythmGRPO
    from lightning_reasonattn.grpo.settings import RewardSettings, TaskSettings

    return RhythmGRPO(rewards=RewardSettings(["numeric"]), task=TaskSettings(name="arithmetic"), **kwargs)


def fake_trainer(strategy, world_size: int):
    return types.SimpleNamespace(strategy=strategy, world_size=world_size, global_rank=0)


def test_a_step_that_does_not_split_is_refused():
    module = small_module(prompts_per_step=3)
    module._trainer = fake_trainer(DDPStrategy(), 2)
    with pytest.raises(MisconfigurationException, match=r"prompts_per_step=3 .* over 2 processes.*e\.g\. 2 or 4"):
        module.setup("fit")
    module.setup("validate")  # validation does not split the training prompts
    module._trainer = fake_trainer(DDPStrategy(), 3)
    module.setup("fit")  # 3 prompts over 3 processes: one each
    module._trainer = fake_trainer(SingleDeviceStrategy("cpu"), 1)
    module.setup("fit")


def test_unsupported_strategies_are_refused():
    module = small_module()
    module._trainer = fake_trainer(FSDPStrategy(), 2)
    with pytest.raises(MisconfigurationException, match=r"trainer.strategy=FSDPStrategy.*--trainer.strategy ddp"):
        module.setup("fit")


def test_ranks_share_each_step_and_the_held_out_split():
    from lightning_reasonattn.grpo.data import HeldOut, PromptStream

    records = [{"prompt": str(i)} for i in range(10)]
    one = PromptStream(records, 4, seed=1)
    shares = [PromptStream(records, 4, seed=1, rank=r, world_size=2) for r in range(2)]
    for step in (0, 1, 2, 7):  # 4 prompts a step over 10 records: steps 2 and 7 cross a pass boundary
        assert shares[0].share(step) + shares[1].share(step) == one.batch(step)
        assert len(shares[0].share(step)) == 2
    with pytest.raises(ValueError, match="batch_size=3 does not split over 2"):
        PromptStream(records, 3, rank=0, world_size=2)
    held = [HeldOut(records[:5], 2, rank=r, world_size=2) for r in range(2)]
    assert [len(h) for h in held] == [1, 2]  # 2 and 3 problems in batches of 2
    assert [r for h in held for batch in h for r in batch] == records[:5]  # each exactly once, none repeated


def test_held_out_split_smaller_than_the_world_is_refused():
    from lightning_reasonattn.grpo.distributed import check_held_out

    with pytest.raises(MisconfigurationException, match=r"1 held-out problem\(s\) for 2 processes.*n_test >= 2"):
        check_held_out(1, 2)
    check_held_out(0, 2)  # no validation at all
    check_held_out(2, 2)


@pytest.mark.parametrize("kind", ["hf", "gpt"], ids=["transformers Llama", "nanoGPT-style (SDPA route)"])
def test_monitor_and_report_under_ddp(tmp_path, kind):
    """2 processes: the report is drawn (the old code hung or lost its connection at trainer.log_dir), the
    monitor's values are those of one process over all 4 sequences, and nothing warns about sync_dist."""
    two = start_two_processes("ddp_callbacks.py", str(tmp_path / "two"), kind)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = ddp_callbacks.validate(tmp_path / "one", devices=1, report=False, kind=kind)  # meanwhile, here
    finally:
        torch.set_num_threads(threads)
        finish(two, "ddp_callbacks.py")
    result = json.loads((tmp_path / "two" / "result.json").read_text())
    assert result["reports"] == ["step_1", "val_step_1"]
    assert not [w for w in result["warnings"] if "sync_dist" in w and "rhythm/" in w], result["warnings"]
    assert set(one) == set(result["val"]) and {"rhythm/val/waad_profile/01", "rhythm_short/val/waad"} <= set(one)
    for name, value in one.items():
        assert result["val"][name] == pytest.approx(value, rel=1e-5, nan_ok=True), name
