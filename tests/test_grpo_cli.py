"""`reasonattn fit / validate / export` as a tool: settings checked before the model loads, one-line errors,
safe checkpoint reading, the resume rule, atomic checkpoint writes, config saving that never overwrites a user's
file, and an export that records (and reproduces) the base it was trained on."""

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from conftest import BadInput
from test_grpo_module import write_config

from lightning_reasonattn import cli
from lightning_reasonattn.functional.credit import STRATEGIES
from lightning_reasonattn.grpo import advantages, loss, settings
from lightning_reasonattn.grpo.checkpoint import AtomicCheckpointIO, CheckpointError, load_checkpoint
from lightning_reasonattn.models import LoraSettings
from lightning_reasonattn.rollout import dense as rollout
from lightning_reasonattn.testing import tiny_checkpoint

pytest.importorskip("bitsandbytes")
ROOT = Path(__file__).resolve().parents[1]


class CreatesFile:
    """Unpickling this opens (creates) a file: what a crafted checkpoint could do with weights_only=False."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, model_dir) -> Path:
    """A 2-step run (CSV logs in version_0, a checkpoint after each step); returns its folder."""
    run = tmp_path_factory.mktemp("trained")
    assert cli.main(["fit", "--config", str(write_config(run, model_dir, "uniform", steps=2))]) == 0
    return run


def one_error_line(capsys, command="fit") -> str:
    """The error line, checked to be the only one and the last thing on stderr, with no traceback."""
    return error_line(capsys.readouterr().err, command)


def error_line(stderr: str, command="fit") -> str:
    """:func:`one_error_line` of a captured stderr."""
    err = stderr.strip().splitlines()
    errors = [line for line in err if line.startswith("reasonattn")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    assert errors[0].startswith(f"reasonattn {command}: error: ") and not any("Traceback" in line for line in err)
    return errors[0]


# ------------------------------------------------------------------------------------------ settings


BAD_SETTINGS = [  # (build the settings, fragment of the error that names the value)
    (lambda: settings.CreditSettings(horizon=(2, 10**20)), "credit.horizon=(2, 100000000000000000000) is invalid"),
    (lambda: settings.CreditSettings(window=10**30), "window=1000000000000000000000000000000 is invalid"),
    (lambda: settings.CreditSettings(look_back=2**63), "look_back=9223372036854775808 is invalid"),
    (lambda: settings.LossSettings(num_iterations=0), "loss.num_iterations=0"),
    (lambda: settings.LossSettings(mini_batch_size=0), "loss.mini_batch_size=0"),
    (lambda: settings.LossSettings(epsilon_low=-0.1), "loss.epsilon_low=-0.1"),
    (lambda: settings.LossSettings(loss_type="bnpo"), "use 'token-mean'"),
    (lambda: settings.LossSettings(scale_rewards="std"), "loss.scale_rewards='std'"),
    (lambda: settings.SamplingSettings(top_p=0.0), "sampling.top_p=0.0"),
    (lambda: settings.SamplingSettings(top_p=1.5), "sampling.top_p=1.5"),
    (lambda: settings.SamplingSettings(temperature=0.0), "sampling.temperature=0.0"),
    (lambda: settings.SamplingSettings(max_new_tokens=0), "sampling.max_new_tokens=0"),
    (lambda: settings.SamplingSettings(backend="vllm"), "sampling.backend='vllm'"),
    (lambda: settings.CreditSettings(strategy="coupld"), "credit.strategy='coupld'"),
    (lambda: settings.CreditSettings(horizon=(20, 10)), "credit.horizon=(20, 10)"),
    (lambda: settings.CreditSettings(horizon=(-1, 10)), "credit.horizon=(-1, 10)"),
    (lambda: settings.CreditSettings(q=0.0), "credit.q=0.0"),
    (lambda: settings.CreditSettings(layers=[]), "credit.layers=[]"),
    (lambda: settings.CreditSettings(gamma_amp=float("nan")), "credit.gamma_amp=nan"),
    (lambda: settings.OptimSettings(lr=0.0), "optim.lr=0.0"),
    (lambda: settings.OptimSettings(lr=float("inf")), "optim.lr=inf"),
    (lambda: settings.OptimSettings(optimizer="sgd"), "optim.optimizer='sgd'"),
    (lambda: settings.RewardSettings(["numeric"], weights=[1.0, 2.0]), "2 values for 1 functions"),
    (lambda: settings.RewardSettings(["numeric"], weights=[float("nan")]), "rewards.weights[0]=nan"),
    (lambda: settings.RewardSettings(weights=[1.0]), "without rewards.functions"),
    (lambda: settings.TaskSettings(style="long"), "task.style='long'"),
    (lambda: settings.TaskSettings(difficulty=9), "task.difficulty=9"),
    (lambda: settings.TaskSettings(n_test=-1), "task.n_test=-1"),
    (lambda: LoraSettings(r=0), "lora.r=0"),
    (lambda: LoraSettings(dropout=1.0), "lora.dropout=1.0"),
]


@pytest.mark.parametrize(("build", "message"), BAD_SETTINGS, ids=[m for _, m in BAD_SETTINGS])
def test_bad_settings_fail_when_built(build, message):
    with pytest.raises(ValueError) as info:
        build()
    assert message in str(info.value)


def test_trl_loss_names_are_aliases_of_the_same_aggregation():
    per_token = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    by_hand = {  # TRL GRPOConfig.loss_type, worked out by hand for these two sequences (lengths 3 and 1)
        "grpo": ((1 + 2 + 3) / 3 + 4 / 1) / 2,  # each sequence's token mean, then the mean over sequences
        "dapo": (1 + 2 + 3 + 4) / 4,  # every token of the batch weighs the same
        "dr_grpo": (1 + 2 + 3 + 4) / (2 * 8),  # sum / (B * max_completion_length), here 8
    }
    for trl_name, expected in by_hand.items():
        loss_type = settings.LossSettings(loss_type=trl_name).loss_type
        assert loss_type in loss.LOSS_TYPES
        assert float(loss.aggregate(per_token, mask, loss_type, max_len=8)) == pytest.approx(expected)


def test_choices_match_the_code_that_reads_them():
    from typing import get_args

    from lightning_reasonattn.models import QUANTIZATIONS

    assert get_args(settings.Strategy) == STRATEGIES
    assert get_args(settings.SignMode) == advantages.SIGN_MODES
    assert get_args(settings.ScaleRewards) == advantages.SCALES
    assert get_args(settings.Backend) == rollout.BACKENDS
    assert set(get_args(settings.LossType)) == set(loss.LOSS_TYPES) | set(settings.LOSS_ALIASES)
    assert set(QUANTIZATIONS) == {"none", "nf4", "fp4", "int8"}


def test_every_model_option_has_its_own_help_without_markup():
    from lightning.pytorch.cli import LightningArgumentParser

    from lightning_reasonattn.grpo.module import RhythmGRPO

    parser = LightningArgumentParser()
    parser.add_lightning_class_args(RhythmGRPO, "model")
    helps = {a.dest: a.help for a in parser._actions if a.dest.startswith("model.") and "CONFIG" not in str(a.metavar)}
    helps = {dest: text for dest, text in helps.items() if text != "Path to a configuration file."}
    assert len(helps) > 50
    for dest, text in helps.items():
        assert text and text.strip(), dest
        assert not any(mark in text for mark in (":mod:", ":func:", ":data:", ":class:", "``")), (dest, text)
    assert "rank" in helps["model.lora.r"] and "alpha" not in helps["model.lora.r"]  # was "rank. alpha: ..."
    assert "scaling" in helps["model.lora.alpha"] and "dropout" in helps["model.lora.dropout"]
    for section in ("rewards.functions", "rewards.weights", "sampling.top_p", "credit.gamma_amp", "loss.beta"):
        assert helps[f"model.{section}"], section


def test_help_lists_the_commands_and_the_choices(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    top = capsys.readouterr().out
    for command in ("analyze", "survey", "fit", "validate", "export", "--debug"):
        assert command in top
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    fit_help = capsys.readouterr().out
    assert "{uniform,random,entropy,local_chunk,global_anchor,coupled}" in fit_help
    assert "--optimizer" not in fit_help and "--lr_scheduler" not in fit_help  # model.optim sets the optimizer
    assert "--model.optim.lr" in fit_help


# ------------------------------------------------------------------------------------------ one-line errors


BAD_FIT_ARGUMENTS = [  # (arguments after `fit --config FILE`, fragment of the one error line)
    (["--model.credit.strategy", "coupld"], "--model.credit.strategy: got 'coupld', expected one of 'uniform'"),
    (["--model.credit.strategy", "coupled "], "got 'coupled ', expected one of"),  # the stray space shown
    (["--model.group_size", str(10**30)], "group_size=1000000000000000000000000000000 is invalid"),
    (["--trainer.devices", "3"], "prompts_per_step=2 cannot be split evenly over 3 processes"),  # before launching
    (["--model.loss.loss_type", "bnpo"], "use 'token-mean', TRL's 'dapo'"),
    (["--model.loss.num_iterations", "0"], "loss.num_iterations=0 is invalid"),
    (["--model.sampling.top_p", "0"], "sampling.top_p=0.0 is invalid"),
    (["--model.sampling.temperature", "0"], "sampling.temperature=0.0 is invalid"),
    (["--model.loss.mini_batch_size", "0"], "loss.mini_batch_size=0 is invalid"),
    (["--model.credit.horizon", "[5, 2]"], "credit.horizon=(5, 2) is invalid"),
    (["--model.rewards.weights", "[1.0]"], "rewards.weights has 1 values for 2 functions"),
    (["--model.rewards.weights", "[1.0, .nan]"], "rewards.weights[1]=nan"),
    (["--model.sampling.top_k", "many"], "--model.sampling.top_k: got 'many', expected an integer or null"),
    (["--model.quantization", "nf5"], "expected one of 'none', 'nf4', 'fp4', 'int8'"),
    (["--model.no_such_option", "1"], "unrecognized arguments: --model.no_such_option 1"),
    (["--trainer.max_steps", "-1"], "set trainer.max_steps"),
    # the TRL name passes the parser and the loss settings: the error is the next bad setting
    (["--model.loss.loss_type", "grpo", "--model.group_size", "1"], "group_size=1"),
]


@pytest.mark.parametrize(("extra", "expected"), BAD_FIT_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_FIT_ARGUMENTS])
def test_setting_errors_are_one_line_before_the_model_loads(tmp_path, model_dir, capsys, extra, expected):
    argv = ["fit", "--config", str(write_config(tmp_path, model_dir)), *extra]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "Loading weights" not in captured.err  # the model never loaded
    line = error_line(captured.err)
    assert expected in line


MISSING_FILES = {  # name: (the config file of `fit --config`, fragments of the one error line)
    "config file": (lambda tmp, model: tmp / "nope.yaml", ["nope.yaml", "does not exist"]),
    "model folder": (lambda tmp, model: write_config(tmp, tmp / "no-model"), ["no-model", "does not exist"]),
    "reward module": (
        lambda tmp, model: write_config(tmp, model, rewards={"functions": ["no_such_module:reward"]}),
        ["no_such_module:reward"],
    ),
    "task file": (
        lambda tmp, model: write_config(tmp, model, task={"name": str(tmp / "missing.jsonl")}),
        ["missing.jsonl"],
    ),
}


@pytest.mark.parametrize("missing", sorted(MISSING_FILES))
def test_missing_files_are_one_line(tmp_path, model_dir, capsys, missing):
    config, fragments = MISSING_FILES[missing]
    assert cli.main(["fit", "--config", str(config(tmp_path, model_dir))]) == 2
    line = one_error_line(capsys)
    assert all(fragment in line for fragment in fragments), line


def test_fit_with_prompts_past_the_context_stops_in_one_line(tmp_path, model_dir, capsys):
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps({"prompt": "x" * 2000, "answer": "1"}) + "\n")  # 2000 tokens; the context is 512
    config = write_config(tmp_path, model_dir, "uniform", task={"name": str(data)}, rewards={"functions": ["numeric"]})
    assert cli.main(["fit", "--config", str(config)]) == 2  # the run had started: still one line, not a traceback
    line = one_error_line(capsys)
    assert "tokens plus sampling.max_new_tokens 10 makes" in line and "context of 512" in line, line
    assert "shorten the prompts to at most 502 tokens" in line
    assert not list(tmp_path.glob("ckpt/*.ckpt"))


LATE_SETUP_ERRORS = {  # found once the model or the callbacks exist, still before the first step: (config, line)
    "credit.layers past the model's": (
        {"credit": {"strategy": "coupled", "horizon": [2, 8], "layers": [100]}},
        "credit.layers=[100]: layer index 100 is out of range for a model with 4 layers",
    ),
    "a checkpoint dirpath that is a file": (None, "is a file, not a folder: set dirpath to a folder"),
}


@pytest.mark.parametrize("name", LATE_SETUP_ERRORS)
def test_late_setup_errors_are_one_line_before_the_first_step(tmp_path, model_dir, capsys, name):
    overrides, expected = LATE_SETUP_ERRORS[name]
    config = write_config(tmp_path, model_dir, **(overrides or {}))
    if overrides is None:  # the config's ModelCheckpoint writes to tmp_path / "ckpt"
        (tmp_path / "ckpt").write_text("my notes")
    assert cli.main(["fit", "--config", str(config)]) == 2
    line = one_error_line(capsys)
    assert expected in line, line
    assert not list(tmp_path.glob("lightning_logs/*/metrics.csv"))  # no step ran
    if overrides is None:
        assert (tmp_path / "ckpt").read_text() == "my notes"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_config_that_is_a_pipe_is_refused_without_reading_it(tmp_path, capsys):
    pipe = tmp_path / "config.yaml"
    os.mkfifo(pipe)  # no writer: reading it would block forever
    assert cli.main(["fit", "--config", str(pipe)]) == 2
    assert "is not a regular file (a pipe, device or socket)" in one_error_line(capsys)


def test_a_file_task_runs_without_a_validation_loop(tmp_path, model_dir, capsys):
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+1=", "answer": str(i + 1)}) + "\n" for i in range(4)))
    config = write_config(tmp_path, model_dir, "uniform", task={"name": str(data)}, rewards={"functions": ["numeric"]})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert cli.main(["fit", "--config", str(config)]) == 0
    assert not [w for w in seen if "across ranks is zero" in str(w.message)]  # no empty loader to warn of
    assert not [w for w in seen if "LeafSpec" in str(w.message)]  # (Lightning's, about torch: not for users)


def test_a_long_value_is_cut_in_the_error_line(tmp_path, model_dir, capsys):
    argv = ["fit", "--config", str(write_config(tmp_path, model_dir)), "--model.credit.strategy", "x" * 100_000]
    assert cli.main(argv) == 2
    line = one_error_line(capsys)
    assert "xxx'... (100,000 characters), expected one of 'uniform'" in line and len(line) < 1000, line[:2000]


def test_console_entry_point_prints_no_traceback(tmp_path, model_dir):
    config = write_config(tmp_path, model_dir)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    env.pop("REASONATTN_DEBUG", None)
    argv = [sys.executable, "-m", "lightning_reasonattn.cli", "fit", "--config", str(config), "--model.credit.q", "2.0"]
    run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [
        "reasonattn fit: error: credit.q=2.0 is invalid: it must be a number in (0, 1], for example 0.3 or 0.4."
    ]


def test_debug_shows_the_error_itself(tmp_path, model_dir, monkeypatch):
    argv = ["fit", "--config", str(write_config(tmp_path, model_dir)), "--model.credit.q", "2.0"]
    with pytest.raises(ValueError, match=r"credit\.q=2\.0"):
        cli.main([*argv, "--debug"])
    monkeypatch.setenv("REASONATTN_DEBUG", "1")
    with pytest.raises(ValueError, match=r"credit\.q=2\.0"):
        cli.main(argv)


# ------------------------------------------------------------------------------------------ checkpoints


def bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / f"{name}.ckpt" for name in ("empty", "random", "text", "plain", "tensor", "evil")}
    files["empty"].write_bytes(b"")
    files["random"].write_bytes(bytes(range(256)) * 8)
    files["text"].write_text("not a checkpoint\n")
    torch.save({"weights": torch.ones(2)}, files["plain"])
    torch.save(torch.ones(3), files["tensor"])
    torch.save({"state_dict": {}, "global_step": 0, "payload": CreatesFile(folder / "PWNED")}, files["evil"])
    return files


BAD_CHECKPOINTS = {  # the files of bad_files: fragment of load_checkpoint's error
    "empty": "is empty",
    "random": "weights_only=True",
    "text": "is not a PyTorch checkpoint",
    "plain": "not a Lightning checkpoint",
    "tensor": "not a Lightning checkpoint",
    "evil": "holds the Python object",
}
CHECKPOINT_COMMANDS = ("fit", "validate", "export")


def test_load_checkpoint_refuses_non_checkpoints_without_running_code(tmp_path):
    files = bad_files(tmp_path)
    assert sorted(files) == sorted(BAD_CHECKPOINTS)
    for name, path in files.items():
        with pytest.raises(CheckpointError, match=BAD_CHECKPOINTS[name]):
            load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")
    assert not (tmp_path / "PWNED").exists()
    torch.load(files["evil"], weights_only=False)["payload"].close()  # the control: an unsafe load runs it
    assert (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("command", CHECKPOINT_COMMANDS)
def test_every_command_refuses_bad_checkpoints_in_one_line(tmp_path, model_dir, capsys, command):
    files = bad_files(tmp_path / "files")
    assert sorted(files) == sorted(BAD_CHECKPOINTS)
    config = write_config(tmp_path, model_dir)
    for name, path in files.items():
        if command == "export":
            argv = ["export", str(path), str(tmp_path / "out")]
        else:
            argv = [command, "--config", str(config), "--ckpt_path", str(path)]
        assert cli.main(argv) == 2, name
        line = one_error_line(capsys, command)
        assert str(path) in line and "Traceback" not in line, line
    assert not (tmp_path / "files" / "PWNED").exists()


def _first(state: dict, part: str) -> str:
    return next(key for key in state if part in key)


def _set_first(part: str, make):
    """Replace the first LoRA factor whose name holds ``part`` by ``make(that tensor)``."""

    def mutate(ckpt):
        key = _first(ckpt["state_dict"], part)
        ckpt["state_dict"][key] = make(ckpt["state_dict"][key])

    return mutate


WRONG_TYPED = {  # name: (mutate a good checkpoint in place, fragment of the error naming the bad entry)
    "hyper-parameters a string": (lambda c: c.update(hyper_parameters="oops"), "hyper_parameters is str 'oops'"),
    "LoRA settings a string": (lambda c: c["hyper_parameters"].update(lora="r=4"), "hyper_parameters['lora'] is str"),
    "LoRA rank a string": (
        lambda c: c["hyper_parameters"]["lora"].update(r="4"),
        "hyper_parameters['lora']: lora.r='4' is invalid",
    ),
    "task settings a list": (lambda c: c["hyper_parameters"].update(task=[1]), "hyper_parameters['task'] is list"),
    "model an int": (lambda c: c["hyper_parameters"].update(model=5), "hyper_parameters['model'] is int 5"),
    "quantization unknown": (lambda c: c["hyper_parameters"].update(quantization="nf5"), "'quantization'] is str"),
    "group_size a string": (lambda c: c["hyper_parameters"].update(group_size="3"), "['group_size'] is str '3'"),
    "state dict of strings": (
        lambda c: c.update(state_dict=dict.fromkeys(c["state_dict"], "x")),
        "is str 'x', not a tensor",
    ),
    "state dict a list": (lambda c: c.update(state_dict=[1, 2]), "state_dict is list, not a dict"),
    "state dict empty": (lambda c: c.update(state_dict={}), "state_dict is empty, not the adapter's weights"),
    "integer weights": (_set_first("lora_A", lambda t: t.long()), "is a torch.int64 tensor, not a floating-point"),
    "NaN weights": (_set_first("lora_B", lambda t: torch.full_like(t, float("nan"))), "NaN or infinite values"),
    "a LoRA factor of another rank": (
        _set_first("lora_A", lambda t: torch.zeros(3, t.shape[1])),
        "is a factor of shape [3, 64], not of rank 4 (lora.r)",
    ),
    "a LoRA factor of 3 dimensions": (_set_first("lora_B", lambda t: t[None]), "not a 2-D LoRA factor"),
    "a LoRA factor without its pair": (
        lambda c: c["state_dict"].pop(_first(c["state_dict"], "lora_B")),
        "is a LoRA factor alone, not paired with",
    ),
    "global_step a string": (lambda c: c.update(global_step="5"), "global_step is str '5', not an integer >= 0"),
    "sampling_seed a string": (lambda c: c.update(sampling_seed="x"), "sampling_seed is str 'x'"),
    "RNG states a string": (lambda c: c.update(rng_states="x"), "rng_states is str 'x'"),
    "RNG states that do not restore": (
        lambda c: c.update(rng_states=[{"torch": torch.zeros(3, dtype=torch.uint8), "cuda": [], "python": (3,)}]),
        "rng_states[0]: states that do not restore",
    ),
    "optimizer states a string": (lambda c: c.update(optimizer_states="x"), "optimizer_states is str 'x'"),
    "param_groups a dict": (
        lambda c: c["optimizer_states"][0].update(param_groups={}),
        "optimizer_states[0]['param_groups'] is dict, not list",
    ),
    "schedulers a list of strings": (lambda c: c.update(lr_schedulers=["x"]), "lr_schedulers[0] is str 'x'"),
    "loops a list": (lambda c: c.update(loops=[1]), "loops is list, not a dict"),
    "base record a list": (lambda c: c.update(reasonattn_base=[1]), "reasonattn_base is list, not a dict"),
}


def wrong_typed_files(folder: Path, good: Path) -> dict[str, Path]:
    """One copy of the checkpoint ``good`` per entry of WRONG_TYPED, with that entry spoilt."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, (name, (mutate, _)) in enumerate(WRONG_TYPED.items()):
        ckpt = torch.load(good, weights_only=True)
        mutate(ckpt)
        files[name] = folder / f"wrong-{i}.ckpt"
        torch.save(ckpt, files[name])
    return files


def test_load_checkpoint_checks_every_entry_by_type_and_shape(trained, tmp_path):
    good = trained / "ckpt" / "epoch=0-step=2.ckpt"
    assert load_checkpoint(good)["global_step"] == 2  # the control: a checkpoint of reasonattn fit passes
    for name, path in wrong_typed_files(tmp_path, good).items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert str(path) in message and WRONG_TYPED[name][1] in message and "\n" not in message, (name, message)


@pytest.mark.parametrize("command", CHECKPOINT_COMMANDS)
def test_every_command_refuses_wrong_typed_checkpoints_before_the_model_loads(
    trained, model_dir, tmp_path, capsys, command
):
    files = wrong_typed_files(tmp_path / "files", trained / "ckpt" / "epoch=0-step=2.ckpt")
    config = write_config(tmp_path, model_dir, "uniform", steps=3)
    for name, path in files.items():
        if command == "export":
            argv = ["export", str(path), str(tmp_path / "out")]
        else:
            argv = [command, "--config", str(config), "--ckpt_path", str(path)]
        assert cli.main(argv) == 2, name
        captured = capsys.readouterr()
        assert "Loading weights" not in captured.err, name  # refused before the base model loads
        line = error_line(captured.err, command)
        assert str(path) in line and WRONG_TYPED[name][1] in line, (name, line)
    assert not (tmp_path / "out").exists() and not (tmp_path / "ckpt").exists()


def test_checkpoints_load_with_weights_only(trained):
    ckpt = torch.load(trained / "ckpt" / "epoch=0-step=2.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["reasonattn_base"]["quantization"] == "nf4" and ckpt["reasonattn_base"]["double_quant"] is True
    assert ckpt["reasonattn_base"]["compute_dtype"] == "float32"  # the CPU's 4-bit compute dtype


# Lightning's ModelCheckpoint warns that the resumed run writes to another folder: this test resumes into a new one
@pytest.mark.filterwarnings("ignore:The dirpath has changed from:UserWarning")
def test_resume_takes_changeable_settings_from_the_command_line(trained, model_dir, tmp_path, caplog):
    ckpt = trained / "ckpt" / "epoch=0-step=2.ckpt"
    config = write_config(tmp_path, model_dir, "uniform", steps=3)
    argv = ["fit", "--config", str(config), "--ckpt_path", str(ckpt), "--model.optim.lr", "0.5"]
    with caplog.at_level("INFO"):
        assert cli.main([*argv, "--model.sampling.max_new_tokens", "6"]) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Resuming")]
    assert len(lines) == 1
    assert "optim.lr 0.5 (checkpoint: 0.01)" in lines[0] and "sampling.max_new_tokens 6 (checkpoint: 10)" in lines[0]
    resumed = torch.load(tmp_path / "ckpt" / "epoch=0-step=3.ckpt", weights_only=True)
    assert resumed["hyper_parameters"]["optim"]["lr"] == 0.5
    assert [g["lr"] for g in resumed["optimizer_states"][0]["param_groups"]] == [0.5]  # the optimizer used it
    assert resumed["lr_schedulers"][0]["base_lrs"] == [0.5]


RESUME_REFUSALS = [  # (a setting that differs from the checkpoint's, fragment of the error)
    (["--model.lora.r", "8"], "lora.r=8 but the checkpoint has 4"),
    (["--model.quantization", "int8"], "quantization='int8' but the checkpoint has 'nf4'"),
    (["--model.double_quant", "false"], "double_quant=False but the checkpoint has True"),
    (["--model.task.seed", "5"], "task.seed=5 but the checkpoint has 0"),
]


@pytest.mark.parametrize(("extra", "named"), RESUME_REFUSALS, ids=[" ".join(a) for a, _ in RESUME_REFUSALS])
def test_resume_refuses_settings_that_cannot_change(trained, model_dir, tmp_path, capsys, extra, named):
    ckpt = trained / "ckpt" / "epoch=0-step=2.ckpt"
    config = write_config(tmp_path, model_dir, "uniform", steps=3)
    assert cli.main(["fit", "--config", str(config), "--ckpt_path", str(ckpt), *extra]) == 2
    line = one_error_line(capsys)
    assert named in line and "without --ckpt_path" in line
    assert not (tmp_path / "ckpt").exists()  # refused before anything ran


def test_validate_writes_no_log_version_and_prints_the_reward(trained, model_dir, tmp_path, capsys, recwarn):
    config = yaml.safe_load(write_config(trained, model_dir, "uniform", steps=2).read_text())
    config["model"]["task"]["n_test"] = 4
    path = tmp_path / "val.yaml"
    path.write_text(yaml.safe_dump(config))
    versions = sorted(p.name for p in (trained / "lightning_logs").iterdir())
    ckpt = trained / "ckpt" / "epoch=0-step=2.ckpt"
    assert cli.main(["validate", "--config", str(path), "--ckpt_path", str(ckpt)]) == 0
    assert sorted(p.name for p in (trained / "lightning_logs").iterdir()) == versions
    out = capsys.readouterr().out
    assert "held-out problems: 4" in out and "val/reward = " in out
    reward = float(out.split("val/reward = ")[1].split()[0])
    assert reward == 0.5  # alternating_reward over 4 completions: 1, 0, 1, 0; countdown 0 on a random model
    texts = [str(w.message) for w in recwarn]
    assert not any("callbacks used to create the checkpoint" in t or "dirpath has changed" in t for t in texts)


def test_validate_without_a_held_out_split_says_so(tmp_path, model_dir, capsys):
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i} + 1 =", "answer": str(i + 1)}) + "\n" for i in range(4)))
    config = write_config(tmp_path, model_dir, "uniform", task={"name": str(data)}, rewards={"functions": ["numeric"]})
    assert cli.main(["validate", "--config", str(config)]) == 2
    line = one_error_line(capsys, "validate")
    assert "has no held-out split" in line and "problems.jsonl" in line


# ------------------------------------------------------------------------------------------ config saving


def test_fit_never_overwrites_a_users_config(tmp_path, model_dir, monkeypatch, recwarn):
    monkeypatch.chdir(tmp_path)
    mine = "# my own notes\nmodel: {}\n"
    (tmp_path / "config.yaml").write_text(mine)
    config = yaml.safe_load(write_config(tmp_path / "cfg", model_dir, "uniform", steps=1).read_text())
    config["trainer"]["logger"] = False  # Lightning then saves the resolved config into the current folder
    path = tmp_path / "cfg" / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["fit", "--config", str(path)]) == 0
    assert (tmp_path / "config.yaml").read_text() == mine
    assert any("Not saving the resolved config" in str(w.message) for w in recwarn)


def test_fit_saves_its_config_in_the_log_folder(trained):
    saved = (trained / "lightning_logs" / "version_0" / "config.yaml").read_text()
    assert saved.startswith("# reasonattn fit: the resolved config of this run")
    assert yaml.safe_load(saved)["model"]["credit"]["strategy"] == "uniform"


# ------------------------------------------------------------------------------------------ atomic writes


@pytest.fixture(scope="module")
def fitted_module(tmp_path_factory, model_dir):
    """A RhythmGRPO trained for 2 steps in Python, with its trainer."""
    import lightning.pytorch as pl

    from lightning_reasonattn.grpo import RhythmGRPO

    work = tmp_path_factory.mktemp("python-fit")
    module = RhythmGRPO(
        model=str(model_dir),
        lora=LoraSettings(r=4, alpha=8),
        task=settings.TaskSettings(name="arithmetic", difficulty=0, style="short", n_train=10, n_test=2),
        rewards=settings.RewardSettings(["conftest:alternating_reward"]),
        prompts_per_step=2,
        group_size=2,
        sampling=settings.SamplingSettings(max_new_tokens=6),
        credit=settings.CreditSettings(strategy="uniform"),
        optim=settings.OptimSettings(lr=0.05),
    )
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, default_root_dir=work, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False,
                         plugins=[AtomicCheckpointIO()])  # fmt: skip
    trainer.fit(module)
    return module, trainer, work


def test_a_kill_in_a_cross_filesystem_checkpoint_write_keeps_the_previous_file(fitted_module, tmp_path, monkeypatch):
    _, trainer, _ = fitted_module
    target = tmp_path / "ckpt" / "last.ckpt"
    trainer.save_checkpoint(target)
    before = target.read_bytes()
    assert torch.load(target, weights_only=True)["global_step"] == 2  # a Python-built module's checkpoint loads safe

    # The system temp folder on another filesystem: a rename out of it fails, and the fallback copy gets killed.
    other = tmp_path / "other-filesystem"
    other.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(other))
    real_rename, real_replace = os.rename, os.replace

    def cross_device(move):
        def moved(src, dst, *args, **kwargs):
            if Path(src).parent.resolve() != Path(dst).parent.resolve():
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            return move(src, dst, *args, **kwargs)

        return moved

    def killed_copy(src, dst, *args, **kwargs):
        Path(dst).write_bytes(b"")  # the copy had opened (truncated) the target when the kill came
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "rename", cross_device(real_rename))
    monkeypatch.setattr(os, "replace", cross_device(real_replace))
    monkeypatch.setattr(shutil, "copyfile", killed_copy)
    monkeypatch.setattr(shutil, "copy2", killed_copy)
    try:
        trainer.save_checkpoint(target)  # with the fix, nothing crosses a filesystem: this succeeds
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    assert target.stat().st_size > 0 and torch.load(target, weights_only=True)["global_step"] == 2
    assert target.read_bytes() == before or torch.load(target, weights_only=True)["global_step"] == 2
    assert not list(target.parent.glob("*.partial")) and not list(other.iterdir())


def test_a_kill_during_the_write_leaves_the_previous_checkpoint_and_no_temp_file(fitted_module, tmp_path, monkeypatch):
    from lightning_reasonattn.grpo import checkpoint as checkpoint_module

    _, trainer, _ = fitted_module
    target = tmp_path / "last.ckpt"
    trainer.save_checkpoint(target)
    before = target.read_bytes()

    def dies_halfway(obj, fh, *args, **kwargs):
        fh.write(before[: len(before) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


# ------------------------------------------------------------------------------------------ export


def test_export_records_the_base_and_reproduces_the_policy_exactly(fitted_module, tmp_path, capsys, recwarn):
    peft = pytest.importorskip("peft")
    from lightning_reasonattn.models import load_model

    module, trainer, _ = fitted_module
    ckpt = tmp_path / "trained.ckpt"
    trainer.save_checkpoint(ckpt)
    out = tmp_path / "adapter"
    assert cli.main(["export", str(ckpt), str(out)]) == 0
    captured = capsys.readouterr()
    assert "keys that are in the model state dict but not in the checkpoint" not in captured.err + captured.out
    assert not any("not in the checkpoint" in str(w.message) for w in recwarn)
    record = json.loads((out / "reasonattn_base.json").read_text())
    assert record == {"model": module.model_name, "quantization": "nf4", "double_quant": True,
                      "compute_dtype": "float32", "lora_dtype": "float32", "step": 2}  # fmt: skip
    readme = (out / "README.md").read_text()
    assert "double_quant=True" in readme and "nf4" in readme and "dtype='float32'" in readme

    ids = torch.randint(3, len(module.tokenizer), (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        trained = module.policy.eval()(input_ids=ids).logits
    gaps = {}
    for double_quant in (True, False):  # as trained (the README's way), and the common mistake
        base, _ = load_model(module.model_name, quantization="nf4", double_quant=double_quant, dtype="float32")
        with torch.no_grad():
            logits = peft.PeftModel.from_pretrained(base, out).eval()(input_ids=ids).logits
        gaps[double_quant] = float((logits - trained).abs().max())
    assert gaps[True] == 0.0  # bitwise the trained policy
    assert gaps[False] > 1e-4  # another base gives another policy


def test_export_refuses_a_folder_of_other_files(trained, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["export", str(trained / "ckpt" / "epoch=0-step=1.ckpt"), str(tmp_path)]) == 2
    assert "new or empty folder" in one_error_line(capsys, "export")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_export_refuses_another_tools_adapter(trained, tmp_path, capsys):
    folder = tmp_path / "my-adapter"  # a peft folder that reasonattn did not write: it has no reasonattn_base.json
    folder.mkdir()
    mine = {
        "adapter_config.json": b'{"peft_type": "LORA", "r": 64}',
        "adapter_model.safetensors": b"MY-WEIGHTS",
        "README.md": b"# My adapter",
        "notes.txt": b"keep",
    }
    for name, data in mine.items():
        (folder / name).write_bytes(data)
    assert cli.main(["export", str(trained / "ckpt" / "epoch=0-step=1.ckpt"), str(folder)]) == 2
    line = one_error_line(capsys, "export")
    assert str(folder) in line and "not written by reasonattn export" in line, line
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == mine


def test_export_replaces_its_own_previous_export(trained, tmp_path, capsys):
    pytest.importorskip("peft")
    ckpt, out = trained / "ckpt" / "epoch=0-step=1.ckpt", tmp_path / "adapter"
    assert cli.main(["export", str(ckpt), str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    (out / "adapter_model.safetensors").write_bytes(b"stale")
    assert cli.main(["export", str(ckpt), str(out)]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "adapter_model.safetensors").read_bytes() != b"stale"


# ------------------------------------------------------------------------------------------ the count

BAD_INPUTS = [
    *(BadInput(f"settings: {message}", "test_bad_settings_fail_when_built") for _, message in BAD_SETTINGS),
    *(
        BadInput(f"fit {' '.join(extra)}", "test_setting_errors_are_one_line_before_the_model_loads")
        for extra, _ in BAD_FIT_ARGUMENTS
    ),
    BadInput("fit --model.credit.q 2.0 from a shell (no traceback)", "test_console_entry_point_prints_no_traceback"),
    BadInput("fit: prompts past the model's context", "test_fit_with_prompts_past_the_context_stops_in_one_line"),
    *(BadInput(f"fit: missing {name}", "test_missing_files_are_one_line") for name in MISSING_FILES),
    *(
        BadInput(f"load_checkpoint: {name} file", "test_load_checkpoint_refuses_non_checkpoints_without_running_code")
        for name in BAD_CHECKPOINTS
    ),
    BadInput("load_checkpoint: missing file", "test_load_checkpoint_refuses_non_checkpoints_without_running_code"),
    *(
        BadInput(f"load_checkpoint: {name}", "test_load_checkpoint_checks_every_entry_by_type_and_shape")
        for name in WRONG_TYPED
    ),
    *(
        BadInput(
            f"{command}: checkpoint with {name}",
            "test_every_command_refuses_wrong_typed_checkpoints_before_the_model_loads",
        )
        for command in CHECKPOINT_COMMANDS
        for name in WRONG_TYPED
    ),
    *(
        BadInput(f"{command}: {name} checkpoint file", "test_every_command_refuses_bad_checkpoints_in_one_line")
        for command in CHECKPOINT_COMMANDS
        for name in BAD_CHECKPOINTS
    ),
    *(
        BadInput(f"resume with {' '.join(extra)}", "test_resume_refuses_settings_that_cannot_change")
        for extra, _ in RESUME_REFUSALS
    ),
    BadInput("validate: a task without a held-out split", "test_validate_without_a_held_out_split_says_so"),
    *(
        BadInput(f"fit: {name}", "test_late_setup_errors_are_one_line_before_the_first_step")
        for name in LATE_SETUP_ERRORS
    ),
    BadInput("fit: a --config that is a named pipe", "test_a_config_that_is_a_pipe_is_refused_without_reading_it"),
    BadInput("fit: a choice of 100,000 characters", "test_a_long_value_is_cut_in_the_error_line"),
    BadInput("export: into a folder of other files", "test_export_refuses_a_folder_of_other_files"),
    BadInput("export: into another tool's peft adapter folder", "test_export_refuses_another_tools_adapter"),
]
"""Every bad input tried here, once (the count is in docs/troubleshooting.md, "Robustness")."""
