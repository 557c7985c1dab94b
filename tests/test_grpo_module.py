"""RhythmGRPO end to end on a tiny random 4-bit LoRA model, through `reasonattn fit` (LightningCLI)."""

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_checkpoint

from lightning_reasonattn import cli
from lightning_reasonattn.functional import STRATEGIES

pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-policy")
    tiny_checkpoint(path, hidden_size=64, intermediate_size=128)
    return path


def write_config(tmp_path, model_path, strategy="coupled", steps=2, **model_overrides):
    config = {
        "seed_everything": 3,
        "trainer": {
            "max_steps": steps,
            "accelerator": "cpu",
            "devices": 1,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path)}},
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(tmp_path / "ckpt"), "every_n_train_steps": 1, "save_top_k": -1},
                }
            ],
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
            "num_sanity_val_steps": 0,  # validation has its own tests; here it would only call the rewards early
        },
        "model": {
            "model": str(model_path),
            "quantization": "nf4",
            "lora": {"r": 4, "alpha": 8},
            "task": {"name": "countdown", "n_train": 20},
            "rewards": {"functions": ["conftest:alternating_reward", "countdown"], "weights": [1.0, 1.0]},
            "prompts_per_step": 2,
            "group_size": 3,
            "sampling": {"max_new_tokens": 10},
            "credit": {"strategy": strategy, "horizon": [2, 8], "q": 0.4},
            "optim": {"lr": 0.01},
            **model_overrides,
        },
    }
    path = tmp_path / f"{strategy}.yaml"
    tmp_path.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def metrics(tmp_path):
    files = sorted(tmp_path.glob("lightning_logs/version_*/metrics.csv"))
    with open(files[-1]) as fh:
        return [row for row in csv.DictReader(fh) if row.get("loss")]


def adapter_and_base(ckpt_path):
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)["state_dict"]
    return state


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fit_each_strategy(tmp_path, checkpoint, strategy):
    assert cli.main(["fit", "--config", str(write_config(tmp_path, checkpoint, strategy))]) == 0
    rows = metrics(tmp_path)
    assert len(rows) == 2 and all(math.isfinite(float(r["loss"])) for r in rows)
    amplified = float(rows[-1]["credit/amplified_frac"])
    assert (amplified == 0) == (strategy == "uniform")
    first, last = (adapter_and_base(p) for p in sorted((tmp_path / "ckpt").glob("*.ckpt")))
    assert first.keys() == last.keys() and all("lora_" in k for k in first)  # checkpoints hold the adapter
    assert any(not torch.equal(first[k], last[k]) for k in first)  # and it learns


def test_base_weights_stay_frozen(tmp_path, checkpoint):
    from lightning_reasonattn.grpo.module import RhythmGRPO

    config = yaml.safe_load(write_config(tmp_path, checkpoint).read_text())
    import lightning.pytorch as pl

    from lightning_reasonattn.grpo.settings import CreditSettings, RewardSettings, SamplingSettings, TaskSettings
    from lightning_reasonattn.models import LoraSettings

    module = RhythmGRPO(
        model=str(checkpoint),
        lora=LoraSettings(r=4, alpha=8),
        task=TaskSettings(n_train=20),
        rewards=RewardSettings(["conftest:alternating_reward"]),
        prompts_per_step=2,
        group_size=3,
        sampling=SamplingSettings(max_new_tokens=10),
        credit=CreditSettings(horizon=(2, 8)),
    )
    module.configure_model()
    before = {k: v.clone() for k, v in module.policy.state_dict().items()}
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module)
    after = module.policy.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora_" in k for k in changed), sorted(changed)[:5]
    assert config["model"]["quantization"] == "nf4"


# Lightning's ModelCheckpoint warns that the resumed run writes to another folder: this test resumes into a new one
@pytest.mark.filterwarnings("ignore:The dirpath has changed from:UserWarning")
def test_resume_reproduces_the_next_step(tmp_path, checkpoint):
    full = tmp_path / "full"
    assert cli.main(["fit", "--config", str(write_config(full, checkpoint, steps=3))]) == 0
    part = tmp_path / "part"
    assert cli.main(["fit", "--config", str(write_config(part, checkpoint, steps=2))]) == 0
    ckpt = sorted((part / "ckpt").glob("*step=2*.ckpt"))[-1]
    resumed = tmp_path / "resumed"
    cfg = write_config(resumed, checkpoint, steps=3)
    assert cli.main(["fit", "--config", str(cfg), "--ckpt_path", str(ckpt)]) == 0
    third = metrics(full)[2]
    again = metrics(resumed)[-1]
    for key in ("loss", "reward", "completions/mean_length", "credit/mean_gamma"):
        assert float(again[key]) == pytest.approx(float(third[key]), rel=1e-5, abs=1e-7), key


def test_export_writes_a_peft_adapter(tmp_path, checkpoint):
    peft = pytest.importorskip("peft")
    assert cli.main(["fit", "--config", str(write_config(tmp_path, checkpoint, steps=1))]) == 0
    ckpt = sorted((tmp_path / "ckpt").glob("*.ckpt"))[-1]
    out = tmp_path / "adapter"
    assert cli.main(["export", str(ckpt), str(out)]) == 0
    assert (out / "adapter_config.json").exists()
    from lightning_reasonattn.models import load_model

    base, _ = load_model(str(checkpoint), quantization="nf4", device="cpu")
    loaded = peft.PeftModel.from_pretrained(base, out)
    trained = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    weights = {k: v for k, v in loaded.state_dict().items() if "lora_" in k}
    assert len(weights) == len(trained)
    for key, value in trained.items():
        name = key.removeprefix("policy.").replace(".default.", ".")
        match = [v for k, v in weights.items() if k.replace(".default.", ".") == name]
        assert match and torch.equal(match[0], value), key


def test_fit_without_a_config_says_what_to_do(capsys):
    assert cli.main(["fit"]) == 2
    assert "examples/grpo_cpu_smollm2.yaml" in capsys.readouterr().err


def test_fit_without_max_steps_is_refused(tmp_path, checkpoint, capsys):
    assert cli.main(["fit", "--config", str(write_config(tmp_path, checkpoint)), "--trainer.max_steps", "-1"]) == 2
    assert "set trainer.max_steps" in capsys.readouterr().err


def test_kl_iterations_and_minibatches(tmp_path, checkpoint):
    loss = {"beta": 0.1, "num_iterations": 2, "mini_batch_size": 2, "loss_type": "dr-grpo"}
    # max_steps counts optimizer steps: 2 iterations per batch of rollouts -> 2 training steps
    assert cli.main(["fit", "--config", str(write_config(tmp_path, checkpoint, steps=4, loss=loss))]) == 0
    rows = metrics(tmp_path)
    assert len(rows) == 2 and all(math.isfinite(float(r["loss"])) for r in rows)
    assert all(float(r["kl"]) > 0.0 for r in rows)  # the adapter starts at zero, then moves from the reference


def test_masked_truncation_leaves_nothing_to_learn_when_all_are_cut(tmp_path, checkpoint):
    # 2 new tokens: a random model almost never stops that early, so steps have every completion truncated.
    loss, sampling = {"mask_truncated": True}, {"max_new_tokens": 2}
    config = write_config(tmp_path, checkpoint, steps=3, loss=loss, sampling=sampling)
    assert cli.main(["fit", "--config", str(config)]) == 0
    rows = metrics(tmp_path)
    all_cut = [r for r in rows if float(r["completions/clipped_ratio"]) == 1.0]
    assert all_cut, "expected at least one step with every completion truncated"
    assert all(float(r["loss"]) == 0.0 for r in all_cut)  # nothing left in the loss


def test_failing_reward_stops_and_keeps_the_checkpoint(tmp_path, checkpoint):
    import conftest

    from lightning_reasonattn.rewards import RewardError

    conftest._CALLS["exploding_reward"] = 0
    rewards = {"functions": ["conftest:exploding_reward"]}
    with pytest.raises(RewardError, match="exploding_reward"):
        cli.main(["fit", "--config", str(write_config(tmp_path, checkpoint, steps=3, rewards=rewards))])
    saved = sorted((tmp_path / "ckpt").glob("*.ckpt"))
    assert [p.name for p in saved] == ["epoch=0-step=1.ckpt"]
    state = torch.load(saved[0], map_location="cpu", weights_only=False)
    assert state["global_step"] == 1 and all("lora_" in k for k in state["state_dict"])


def test_bf16_true_with_a_tiny_lr_warns_that_updates_are_lost(tmp_path, checkpoint):
    # precision bf16-true casts the LoRA factors to bfloat16, where a 1e-6 AdamW step rounds away.
    config = yaml.safe_load(write_config(tmp_path, checkpoint, "uniform", steps=1, optim={"lr": 1e-6}).read_text())
    config["trainer"]["precision"] = "bf16-true"
    path = tmp_path / "bf16.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.warns(UserWarning, match=r"optim.lr=1e-06.*bf16-mixed"):
        assert cli.main(["fit", "--config", str(path)]) == 0


@pytest.mark.parametrize("sanity_steps", [0, 1])  # 1: the dense rollout copy is made inside validation first
def test_validation_logs_held_out_greedy_reward(tmp_path, checkpoint, sanity_steps):
    # 6 held-out prompts in batches of 4 and 2, one completion each; alternating_reward gives 1, 0, 1, 0 | 1, 0
    # and countdown 0 on a random model: the weighted held-out reward is exactly 0.5.
    config = yaml.safe_load(write_config(tmp_path, checkpoint, "uniform", steps=2).read_text())
    config["model"]["task"]["n_test"] = 6
    config["model"]["eval_batch_size"] = 4
    config["trainer"] |= {"val_check_interval": 1, "num_sanity_val_steps": sanity_steps}
    path = tmp_path / "val.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["fit", "--config", str(path)]) == 0
    files = sorted(tmp_path.glob("lightning_logs/version_*/metrics.csv"))
    with open(files[-1]) as fh:
        rows = [row for row in csv.DictReader(fh) if row.get("val/reward")]
    assert len(rows) == 2  # after each of the 2 steps
    for row in rows:
        assert float(row["val/reward"]) == 0.5
        assert float(row["val/rewards/alternating_reward/mean"]) == 0.5
        assert 1 <= float(row["val/completions/mean_length"]) <= 10


def test_greedy_sampling_is_deterministic():
    from conftest import tiny_model

    from lightning_reasonattn.rollout.sampling import sample

    model = tiny_model("llama")
    prompts = torch.tensor([[0, 0, 5, 6], [3, 4, 5, 6]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    runs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        runs.append(sample(model, prompts, mask, eos_ids=[1], pad_id=0, max_new_tokens=8, temperature=0.0).ids)
    assert torch.equal(runs[0], runs[1])
    # and it is the argmax continuation: the first new token of each row is the model's top logit
    with torch.no_grad():
        from lightning_reasonattn.rollout.logprobs import position_ids

        logits = model(input_ids=prompts, attention_mask=mask, position_ids=position_ids(mask)).logits[:, -1]
    assert torch.equal(runs[0][:, 0], logits.argmax(-1))


def test_validate_a_checkpoint_gives_the_fit_s_last_held_out_reward(tmp_path, checkpoint, capsys):
    config = yaml.safe_load(write_config(tmp_path, checkpoint, "uniform", steps=2).read_text())
    config["model"]["task"]["n_test"] = 6
    config["model"]["rewards"] = {"functions": ["conftest:text_hash_reward"]}
    config["trainer"] |= {"val_check_interval": 2}
    path = tmp_path / "val.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["fit", "--config", str(path)]) == 0
    with open(sorted(tmp_path.glob("lightning_logs/version_*/metrics.csv"))[-1]) as fh:
        fitted = [row for row in csv.DictReader(fh) if row.get("val/reward")][-1]

    def validated(*extra) -> dict[str, float]:  # validate prints "name = value" lines
        capsys.readouterr()
        assert cli.main(["validate", "--config", str(path), *extra]) == 0
        lines = [line.split(" = ") for line in capsys.readouterr().out.splitlines() if line.startswith("val/")]
        return {name: float(value) for name, value in lines}

    again = validated("--ckpt_path", str(tmp_path / "ckpt" / "epoch=0-step=2.ckpt"))
    # the same adapter, greedy: the same completions
    assert again["val/reward"] == pytest.approx(float(fitted["val/reward"]), rel=1e-6) and again["val/reward"] > 0
    assert again["val/completions/mean_length"] == float(fitted["val/completions/mean_length"])
    # control: without the checkpoint the untrained adapter completes differently
    assert validated()["val/reward"] != pytest.approx(float(fitted["val/reward"]), rel=1e-6)
    assert len(list(tmp_path.glob("lightning_logs/version_*"))) == 1  # validation logs no version of its own
