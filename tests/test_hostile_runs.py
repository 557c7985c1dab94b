"""Runs that do not end as planned, tried as a new user meets them: signals (SIGTERM from a scheduler, Ctrl-C, even
inside a checkpoint write), disks that fill up and folders that cannot be written, a run folder moved before it is
resumed, output piped into ``head`` or shown on a Latin-1 terminal, an example script given zeros.

The signals are real (a process sends them to itself at a known moment, see ``run_faults.py``); the runs of
``reasonattn fit`` are subprocesses, started together in one fixture. Each case checks the exit status (``128 +
signum`` after a signal), the one line on stderr and the absence of a traceback, and which files are whole.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml
from conftest import BadInput, communicate_or_fail
from test_grpo_cli import error_line
from test_grpo_module import metrics, write_config

from lightning_reasonattn import capture, cli
from lightning_reasonattn.grpo.checkpoint import load_checkpoint
from lightning_reasonattn.testing import tiny_checkpoint

pytest.importorskip("bitsandbytes")
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
TIMEOUT_S = 420  # a loaded 2-core machine; a hang fails the test instead of blocking the suite


def environment(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    for name in ("REASONATTN_DEBUG", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # a leftover would make Lightning think the processes are launched already
    return {**env, **extra}


@pytest.fixture(scope="module", autouse=True)
def ctrl_c_not_ignored():
    """Ctrl-C as at a terminal, also when the tests themselves run with SIGINT ignored (started in the background by
    a shell without job control: `make test &`, nohup, some CI runners). An ignored SIGINT is inherited by the
    commands the tests start and keeps Python from raising KeyboardInterrupt, as it should for a program started
    that way; Python's handler here is reset to the default in every command started (a handler does not survive
    exec, an ignored signal does)."""
    handler = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, handler)


@pytest.fixture
def processes():
    """The processes a test starts (``processes.append(proc)``); any still running at its end are killed."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def start(argv: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "lightning_reasonattn.cli", *argv]
    return subprocess.Popen(
        command, cwd=cwd, env=environment(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = communicate_or_fail(proc, TIMEOUT_S, " ".join(proc.args[3:6]))
    return proc.returncode, out, err


def our_line(stderr: str, command: str = "fit") -> str:
    """The one line of ours on stderr (Lightning and transformers print their own), and no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    ours = [line for line in stderr.splitlines() if line.startswith(f"reasonattn {command}:")]
    assert len(ours) == 1, stderr[-3000:]
    return ours[0]


def whole_checkpoints(folder: Path) -> list[int]:
    """The steps of the checkpoints in ``folder``, each loaded in full; no temporary file may be left."""
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".partial"]
    return sorted(load_checkpoint(p)["global_step"] for p in folder.glob("*.ckpt"))


def fault_config(folder: Path, model: Path, plugin: str | None = None, callback: str | None = None, **model_kw):
    path = write_config(folder, model, "uniform", steps=4, **model_kw)
    config = yaml.safe_load(path.read_text())
    if plugin:
        config["trainer"]["plugins"] = [{"class_path": f"run_faults.{plugin}"}]
    if callback:
        config["trainer"]["callbacks"].append({"class_path": f"run_faults.{callback}"})
    path.write_text(yaml.safe_dump(config))
    return path


SIGNAL_RUNS = {  # name: (config overrides, environment, expected status)
    "SIGTERM during step 2": (
        {"rewards": {"functions": ["run_faults:signal_on_second_call"]}},
        {"FAULT_SIGNAL": "SIGTERM"},
        143,
    ),
    "Ctrl-C during step 2": (
        {"rewards": {"functions": ["run_faults:signal_on_second_call"]}},
        {"FAULT_SIGNAL": "SIGINT"},
        130,
    ),
    "Ctrl-C inside the second checkpoint write": ({"plugin": "CtrlCInSecondSave"}, {}, 130),
    "SIGTERM before the first step": ({"callback": "SigtermInSetup"}, {}, 143),
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-model")
    tiny_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def signal_runs(tmp_path_factory, model_dir) -> dict[str, tuple[Path, int, str]]:
    """Every run of ``SIGNAL_RUNS``, started together: ``{name: (folder, status, stderr)}``."""
    procs = {}
    for i, (name, (overrides, env, _)) in enumerate(SIGNAL_RUNS.items()):
        folder = tmp_path_factory.mktemp(f"signal-{i}")
        extra = {k: v for k, v in overrides.items() if k in ("plugin", "callback")}
        model_kw = {k: v for k, v in overrides.items() if k not in extra}
        config = fault_config(folder, model_dir, **extra, **model_kw)
        procs[name] = (folder, start(["fit", "--config", str(config)], folder, **env))
    return {name: (folder, *finish(proc)[::2]) for name, (folder, proc) in procs.items()}


@pytest.mark.parametrize("name", SIGNAL_RUNS)
def test_a_signal_ends_fit_with_its_status_one_line_and_whole_checkpoints(signal_runs, name):
    folder, status, stderr = signal_runs[name]
    assert status == SIGNAL_RUNS[name][2], stderr[-3000:]
    line = our_line(stderr)
    signal_name = "SIGTERM" if status == 143 else "SIGINT (Ctrl-C)"
    if name == "SIGTERM before the first step":
        assert line == f"reasonattn fit: interrupted by {signal_name} before the first step: no step ran and no " \
            "checkpoint was written."  # fmt: skip
        assert not list((folder / "ckpt").glob("*.ckpt"))
        return
    steps = whole_checkpoints(folder / "ckpt")
    last = steps[-1]
    assert steps == list(range(1, last + 1))
    # SIGTERM lets step 2 finish (and its checkpoint be written); Ctrl-C abandons step 2 (or its checkpoint write)
    assert last == (2 if status == 143 else 1), (steps, line)
    done = 1 if name == "Ctrl-C during step 2" else 2
    path = folder / "ckpt" / f"epoch=0-step={last}.ckpt"
    assert line.startswith(
        f"reasonattn fit: stopped by {signal_name} after step {done}: the checkpoints written are whole, the last "
        f"{str(path)!r} (step {last}); resume with (steps after {last} run again): reasonattn fit --config "
    ), line
    assert line.endswith(f"--ckpt_path {path}"), line


def test_the_resume_command_of_the_line_goes_on_from_the_checkpoint(signal_runs, capsys):
    folder, _, stderr = signal_runs["SIGTERM during step 2"]
    argv = our_line(stderr).split("run again): reasonattn ", 1)[1].split()
    argv = [arg for arg in argv if "signal_on_second_call" not in arg]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main([*argv, "--model.rewards.functions", "[conftest:alternating_reward]"]) == 0
    assert whole_checkpoints(folder / "ckpt") == [1, 2, 3, 4]
    # resuming writes on in the run's own folder: no "exists and is not empty" warning for it
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]


# ------------------------------------------------------------------------------------------ faults while writing


def test_a_disk_that_fills_during_a_checkpoint_write_is_one_line(tmp_path, model_dir, capsys):
    config = fault_config(tmp_path, model_dir, plugin="FullDiskInSecondSave")
    assert cli.main(["fit", "--config", str(config)]) == 2
    line = error_line(capsys.readouterr().err)
    target = tmp_path / "ckpt" / "epoch=0-step=2.ckpt"
    assert line == f"reasonattn fit: error: cannot write {str(target)!r} (No space left on device): the " \
        "checkpoints written before it are whole; free space (or set another dirpath) and resume from one."  # fmt: skip
    assert whole_checkpoints(tmp_path / "ckpt") == [1]


def test_a_checkpoint_folder_that_cannot_be_written_is_refused_before_the_first_step(tmp_path, model_dir, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    config = write_config(tmp_path, model_dir, "uniform")
    text = config.read_text().replace(str(tmp_path / "ckpt"), str(tmp_path / "notes.txt" / "ckpt"))
    config.write_text(text)
    assert cli.main(["fit", "--config", str(config)]) == 2
    line = error_line(capsys.readouterr().err)
    assert f"{str(tmp_path / 'notes.txt' / 'ckpt')!r} cannot be written (Not a directory: " in line, line
    assert not (tmp_path / "ckpt").exists() and (tmp_path / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob("lightning_logs/*/metrics.csv"))  # no step ran


@pytest.fixture(scope="module")
def trained(tmp_path_factory, model_dir) -> Path:
    """A 2-step run with ``last.ckpt`` (save_last); returns its folder."""
    run = tmp_path_factory.mktemp("trained")
    config = write_config(run, model_dir, "uniform", steps=2)
    data = yaml.safe_load(config.read_text())
    data["trainer"]["callbacks"][0]["init_args"]["save_last"] = True
    config.write_text(yaml.safe_dump(data))
    assert cli.main(["fit", "--config", str(config)]) == 0
    return run


def test_export_on_a_disk_that_fills_leaves_no_folder(trained, tmp_path, capsys, monkeypatch):
    pytest.importorskip("peft")
    real = Path.write_text

    def fills_up(path, text, *args, **kwargs):
        if path.name == "README.md":  # the last file of an export: the adapter is written by then
            real(path, text[: len(text) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", fills_up)
    out = tmp_path / "adapter"
    assert cli.main(["export", str(trained / "ckpt" / "last.ckpt"), str(out)]) == 2
    line = error_line(capsys.readouterr().err, "export")
    assert line == f"reasonattn export: error: cannot write {str(out)!r} (No space left on device): no folder was made."
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temporary one


# ------------------------------------------------------------------------------------------ a moved run folder


def test_a_run_folder_moved_and_resumed_keeps_writing_last_ckpt(trained, tmp_path, recwarn):
    moved = tmp_path / "moved"
    shutil.copytree(trained, moved)
    config = moved / "uniform.yaml"
    config.write_text(config.read_text().replace(str(trained), str(moved)))
    last = moved / "ckpt" / "last.ckpt"
    assert cli.main(["fit", "--config", str(config), "--trainer.max_steps", "3", "--ckpt_path", str(last)]) == 0
    assert sorted(p.name for p in (moved / "ckpt").glob("last*")) == ["last.ckpt"]  # no last-v1.ckpt
    assert load_checkpoint(last)["global_step"] == 3
    assert load_checkpoint(trained / "ckpt" / "last.ckpt")["global_step"] == 2  # the original folder untouched
    assert not [w for w in recwarn if "dirpath has changed" in str(w.message)]


# ------------------------------------------------------------------------------------------ output streams


def test_analyze_into_a_closed_pipe_stops_quietly(model_dir, tmp_path):
    argv = ["analyze", "--model", str(model_dir), "--max-new-tokens", "12", "--no-report"]
    proc = start(argv, tmp_path)
    proc.stdout.close()  # the reader is gone before the table comes (`| head -1` once it has its line)
    status, _, err = finish(proc)
    assert status == 141 and "Traceback" not in err and "BrokenPipe" not in err, err[-2000:]


def test_analyze_with_stdout_closed_runs_as_before(model_dir, tmp_path):
    argv = ["analyze", "--model", str(model_dir), "--max-new-tokens", "8", "--json", str(tmp_path / "r.json")]
    command = [sys.executable, "-m", "lightning_reasonattn.cli", *argv, "--no-report"]
    run = subprocess.run(  # `reasonattn analyze ... >&-`: Python's sys.stdout is None
        command, cwd=tmp_path, env=environment(), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        timeout=TIMEOUT_S, preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert json.loads((tmp_path / "r.json").read_text())["tokens"]


def test_analyze_on_a_latin1_terminal_escapes_what_it_cannot_show(model_dir, tmp_path):
    argv = ["analyze", "--model", str(model_dir), "--max-new-tokens", "8", "--no-report", "--prompt", "It’s 5 pm."]
    status, out, err = finish(start(argv, tmp_path, PYTHONIOENCODING="latin-1"))
    assert status == 0 and "Traceback" not in err, err[-2000:]
    assert "prompt: It\\u2019s 5 pm." in out


# ------------------------------------------------------------------------------------------ analyze and survey


def signal_at(what: str, call: int = 1):
    """A stand-in that sends ``what`` (a signal name) to this process on its ``call``-th call, else runs ``real``."""

    def wrap(real):
        count = {"n": 0}

        def wrapped(*args, **kwargs):
            count["n"] += 1
            if count["n"] == call:
                os.kill(os.getpid(), getattr(signal, what))
            return real(*args, **kwargs)

        return wrapped

    return wrap


@pytest.fixture
def sigint_restored():
    """Ctrl-C's handler as the test found it (a command may ignore Ctrl-C while it shuts down)."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


@pytest.mark.parametrize(("what", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_analyze_interrupted_is_one_line(model_dir, capsys, monkeypatch, sigint_restored, what, status):
    # (analyze imports capture_rhythm from lightning_reasonattn.capture when it runs: the command line is lazy)
    monkeypatch.setattr(capture, "capture_rhythm", signal_at(what)(capture.capture_rhythm))
    assert cli.main(["analyze", "--model", str(model_dir), "--max-new-tokens", "8", "--no-report"]) == status
    line = our_line(capsys.readouterr().err, "analyze")
    assert line.startswith(f"reasonattn analyze: interrupted by {what}"), line
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)  # the command's handler is gone


@pytest.mark.parametrize(("what", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_survey_interrupted_keeps_its_batches_and_resumes(model_dir, tmp_path, capsys, monkeypatch, what, status):
    from lightning_reasonattn.survey import run

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in ("1+2", "3*4-5", "12", "4-3", "2*2", "5")))
    argv = ["survey", "--model", str(model_dir), "--device", "cpu", "--prompts", str(prompts), "--n", "6"]
    argv += ["--batch-size", "2", "--max-new-tokens", "8", "--reports", "0", "--n-boot", "50"]
    assert cli.main([*argv, "--out", str(tmp_path / "whole")]) == 0
    with monkeypatch.context() as patch:
        patch.setattr(run, "measure", signal_at(what, call=2)(run.measure))  # during the second batch
        assert cli.main([*argv, "--out", str(tmp_path / "cut")]) == status
    line = our_line(capsys.readouterr().err, "survey")
    kept = f"the 1 finished batch(es) in {tmp_path / 'cut' / 'batches'} are kept; run the same command again"
    assert line.startswith(f"reasonattn survey: interrupted by {what}") and kept in line, line
    assert not [p for p in (tmp_path / "cut").rglob("*") if p.name.startswith(".")]  # no temporary file left
    assert cli.main([*argv, "--out", str(tmp_path / "cut")]) == 0
    again, whole = (json.loads((tmp_path / f / "survey.json").read_text()) for f in ("cut", "whole"))
    assert again["run"]["reused_batches"] == 1 and again["table"] == whole["table"]


# ------------------------------------------------------------------------------------------ the example script


def emerge_script():
    spec = importlib.util.spec_from_file_location("watch_rhythm_emerge", ROOT / "examples" / "watch_rhythm_emerge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE_ARGUMENTS = {  # arguments of watch_rhythm_emerge.py: the start of the error line
    "--batch-size 0": "argument --batch-size: '0' is not an integer >= 1",
    "--n-val 0": "argument --n-val: '0' is not an integer >= 1",
    "--n-layer 0": "argument --n-layer: '0' is not an integer >= 1",
    "--n-head 0": "argument --n-head: '0' is not an integer >= 1",
    "--max-steps -5": "argument --max-steps: '-5' is not an integer >= 1",
    "--n-embd 190": "argument --n-embd: 190 is not a multiple of --n-head 6",
    "--lr nan": "argument --lr: 'nan' is not a learning rate",
    "--horizon 9 3": "argument --horizon: 9 3: pass LO HI with LO <= HI",
    "--horizon -1 5": "argument --horizon: '-1' is not an integer >= 0",
    "--threads -1": "argument --threads: '-1' is not an integer >= 0",
}


@pytest.mark.parametrize("arguments", EXAMPLE_ARGUMENTS)
def test_the_example_script_names_a_bad_argument(arguments, capsys):
    with pytest.raises(SystemExit) as info:
        emerge_script().parse_args(arguments.split())
    assert info.value.code == 2
    assert f"error: {EXAMPLE_ARGUMENTS[arguments]}" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ more than one machine


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node(rank: int, port: int, config: Path, folder: Path, *extra: str) -> subprocess.Popen:
    """One "node" of a 2-node run on this machine: its own process, Lightning's environment variables."""
    argv = ["fit", "--config", str(config), "--trainer.num_nodes", "2", "--trainer.devices", "1"]
    argv += ["--trainer.strategy", "ddp", *extra]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": str(rank), "WORLD_SIZE": "2"}
    return start(argv, folder, **env)


def test_two_nodes_log_the_values_of_one_process(tmp_path, model_dir, processes):
    # a reward of each text alone (an alternating one would depend on the batch split) and test_ddp's learning rate
    same = {"rewards": {"functions": ["conftest:text_hash_reward"]}, "optim": {"lr": 1e-3}}
    configs = {name: write_config(tmp_path / name, model_dir, "coupled", steps=2, **same) for name in ("one", "two")}
    port = free_port()
    processes += [node(rank, port, configs["two"], tmp_path / "two") for rank in (0, 1)]
    processes.append(start(["fit", "--config", str(configs["one"])], tmp_path / "one"))
    for proc in processes:
        status, _, err = finish(proc)
        assert status == 0, err[-3000:]
    a, b = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert len(a) == len(b) == 2
    for row_a, row_b in zip(a, b, strict=True):
        assert row_a.keys() == row_b.keys()
        for name, value in row_a.items():
            if name.startswith("tokens_per_sec/") or not value:  # measured time: not comparable
                continue
            assert float(row_b[name]) == pytest.approx(float(value), rel=1e-5, abs=1e-6), name
    assert whole_checkpoints(tmp_path / "two" / "ckpt") == [1, 2]


def test_a_node_that_dies_stops_the_other_with_one_line(tmp_path, model_dir, processes):
    config = write_config(tmp_path, model_dir, "uniform", steps=50)
    port = free_port()
    nodes = [node(rank, port, config, tmp_path) for rank in (0, 1)]
    processes += nodes
    first = tmp_path / "ckpt" / "epoch=0-step=1.ckpt"
    for _ in range(TIMEOUT_S * 5):  # until node 0 has written its first checkpoint
        if first.exists() or nodes[0].poll() is not None:
            break
        time.sleep(0.2)
    os.killpg(nodes[1].pid, signal.SIGKILL)  # node 1 is gone, mid-run
    status, _, err = finish(nodes[0])
    nodes[1].communicate()
    assert status == 2, err[-3000:]
    line = our_line(err)
    assert line.startswith("reasonattn fit: error: another process of this run stopped answering after step"), line
    assert "Start every process again (with --ckpt_path to resume)" in line
    assert whole_checkpoints(tmp_path / "ckpt")


BAD_INPUTS = [
    *(
        BadInput(f"fit: {name}", "test_a_signal_ends_fit_with_its_status_one_line_and_whole_checkpoints")
        for name in SIGNAL_RUNS
    ),
    BadInput(
        "fit: resumed with the command the SIGTERM line gives",
        "test_the_resume_command_of_the_line_goes_on_from_the_checkpoint",
    ),
    *(BadInput(f"analyze: {what}", "test_analyze_interrupted_is_one_line") for what in ("SIGINT", "SIGTERM")),
    *(
        BadInput(f"survey: {what}", "test_survey_interrupted_keeps_its_batches_and_resumes")
        for what in ("SIGINT", "SIGTERM")
    ),
    BadInput(
        "fit: a disk that fills during a checkpoint write",
        "test_a_disk_that_fills_during_a_checkpoint_write_is_one_line",
    ),
    BadInput(
        "fit: a checkpoint folder under a file",
        "test_a_checkpoint_folder_that_cannot_be_written_is_refused_before_the_first_step",
    ),
    BadInput("export: a disk that fills", "test_export_on_a_disk_that_fills_leaves_no_folder"),
    BadInput("fit: a run folder moved, then resumed", "test_a_run_folder_moved_and_resumed_keeps_writing_last_ckpt"),
    BadInput("analyze | head: a closed pipe", "test_analyze_into_a_closed_pipe_stops_quietly"),
    BadInput("analyze >&-: stdout closed", "test_analyze_with_stdout_closed_runs_as_before"),
    BadInput(
        "analyze: a Latin-1 terminal and a prompt holding ’",
        "test_analyze_on_a_latin1_terminal_escapes_what_it_cannot_show",
    ),
    *(
        BadInput(f"watch_rhythm_emerge.py {a}", "test_the_example_script_names_a_bad_argument")
        for a in EXAMPLE_ARGUMENTS
    ),
    BadInput("fit on two nodes (one process each)", "test_two_nodes_log_the_values_of_one_process"),
    BadInput("fit on two nodes: node 1 killed mid-run", "test_a_node_that_dies_stops_the_other_with_one_line"),
]
"""Every case tried here, once (the count is in docs/troubleshooting.md, "Robustness")."""
