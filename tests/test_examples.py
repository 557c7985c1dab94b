"""The example configs run as written (on a tiny random model instead of the real one, for two steps)."""

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from lightning_reasonattn import cli
from lightning_reasonattn.testing import tiny_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytest.importorskip("bitsandbytes")


CPU_CONFIGS = sorted(p.name for p in EXAMPLES.glob("grpo_cpu_*.yaml"))


def test_the_cpu_configs_are_found():
    assert {"grpo_cpu_smollm2.yaml", "grpo_cpu_word_problems.yaml"} <= set(CPU_CONFIGS)


@pytest.mark.parametrize("name", CPU_CONFIGS)
def test_cpu_config_runs(tmp_path, name):
    model = tiny_checkpoint(tmp_path / "model")
    config = yaml.safe_load((EXAMPLES / name).read_text())
    assert config["model"]["model"] is None  # the example itself uses the embedded default model
    argv = [
        "fit",
        "--config",
        str(EXAMPLES / name),
        "--model.model",
        str(model),
        "--trainer.max_steps",
        "2",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "logs"),
        "--trainer.callbacks.init_args.dirpath",
        str(tmp_path / "ckpt"),
    ]
    assert cli.main(argv) == 0
    (log,) = (tmp_path / "logs").rglob("metrics.csv")
    with open(log) as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("loss")]
    assert len(rows) == 2 and all(math.isfinite(float(r["loss"])) for r in rows)
    assert float(rows[-1]["credit/amplified_frac"]) > 0  # coupled credit is on
    assert (tmp_path / "ckpt" / "last.ckpt").exists()


def test_gpu_recipe_is_the_papers():
    config = yaml.safe_load((EXAMPLES / "grpo_countdown_qwen3_4b.yaml").read_text())
    model = config["model"]
    assert model["credit"]["strategy"] == "coupled" and model["optim"]["lr"] == 1e-6
    assert model["loss"]["beta"] == 0.0 and model["sampling"]["temperature"] == 1.0
    assert model["sampling"]["max_new_tokens"] == 1024
    assert model["credit"]["q"] == 0.4 and model["credit"]["gamma_amp"] == 1.5
    assert model["credit"]["horizon"] == [10, 100] and model["credit"]["window"] == 10


def test_the_from_scratch_config_runs_on_a_start_model(tmp_path):
    """examples/grpo_from_scratch.yaml as written, on a tiny start model made by benchmarks/credit_from_scratch.py."""
    from conftest import load_script

    script = load_script("benchmarks/credit_from_scratch.py")
    tiny = dict(seed=0, task_seed=0, difficulty=3, n_test=1000, n_eval=8, n_val=4, n_pretrain=100, n_layer=1,
                n_head=2, n_embd=16, batch_size=4, lr=2e-3, max_steps=1, eval_every=1, stop_at=1.0,
                max_new_tokens=8)  # fmt: skip
    script.start_model(tiny, tmp_path, log=lambda line: None)
    start = tmp_path / "start"
    config = yaml.safe_load((EXAMPLES / "grpo_from_scratch.yaml").read_text())
    model = config["model"]
    assert model["weights"] == "credit_from_scratch/start/model.safetensors"  # what the script writes, run from root
    model["model"]["init_args"] = {k: v for k, v in json.loads((start / "config.json").read_text()).items()
                                   if k != "model_type"}  # fmt: skip
    model["weights"] = str(start / "model.safetensors")
    model["tokenizer"]["init_args"]["vocab_file"] = str(start / "tokenizer.json")
    model |= {"prompts_per_step": 2, "group_size": 2, "eval_batch_size": 4}
    model["task"] |= {"n_train": 20, "n_test": 4}
    model["sampling"]["max_new_tokens"] = 8
    config["trainer"] |= {"max_steps": 2, "val_check_interval": 2}
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "logs")
    config["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(tmp_path / "ckpt")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["fit", "--config", str(path)]) == 0
    (log,) = (tmp_path / "logs").rglob("metrics.csv")
    with open(log) as fh:
        rows = list(csv.DictReader(fh))
    assert len([r for r in rows if r.get("loss")]) == 2 and any(r.get("val/reward") for r in rows)
    assert float([r for r in rows if r.get("loss")][-1]["credit/amplified_frac"]) > 0  # coupled credit is on
