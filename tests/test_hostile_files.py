"""Hostile files given to the commands: data files (``fit``, ``survey``), configs (``fit --config``) and model folders
(``analyze``, ``fit``). Each is reported in one line that names the file (and the line where there is one), with the
command's exit status, before the model loads where the file is read first, and without a traceback.

More data files' values (Countdown columns, answers) and the library-level reading are in ``test_hostile_rewards.py``;
checkpoints are in ``test_grpo_cli.py``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import BadInput
from test_grpo_module import write_config

from lightning_reasonattn import cli
from lightning_reasonattn.testing import tiny_checkpoint

pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny-model"))


def error_lines(capsys, command: str) -> tuple[str, str]:
    """``(the one error line, all of stderr)``; checked to be the only error line, with no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("reasonattn")]
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err[-2000:]
    assert lines[0].startswith(f"reasonattn {command}: error: ") and "Traceback" not in err
    return lines[0], err


# ------------------------------------------------------------------------------------------------ data files

ROW = {"prompt": "1 + 1 =", "answer": "2"}
DATA_FILES = {  # name: (file name, bytes, fragment of the error after the file name)
    "not UTF-8 (Latin-1)": (
        "data.jsonl",
        json.dumps({"prompt": "café", "answer": "2"}, ensure_ascii=False).encode("latin-1") + b"\n",
        ", line 1, column 16: byte 0xe9 is not UTF-8",
    ),
    "UTF-16": ("data.jsonl", (json.dumps(ROW) + "\n").encode("utf-16"), " is UTF-16"),
    "a record nested 100,000 deep": (
        "data.jsonl",
        ('{"prompt": "x", "answer": ' + "[" * 100_000 + "]" * 100_000 + "}\n").encode(),
        ", line 1: nested more than 64",
    ),
    "a number of 5,000 digits": (
        "data.jsonl",
        ('{"prompt": "x", "answer": ' + "9" * 5000 + "}\n").encode(),
        ", line 1: holds a number too long to read",
    ),
    "a JSON array with a syntax error": ("data.json", b'[\n{"prompt": "x"},\n{"prompt": }\n]', ", line 3, column 12"),
    "a parquet file of random bytes": ("data.parquet", bytes(range(256)) * 4, " cannot be read as a parquet file"),
    "an empty prompt": ("data.jsonl", b'{"prompt": "", "answer": "2"}\n', ", line 1 (record 0): prompt '' is empty"),
    "an empty message list": (
        "data.jsonl",
        b'{"prompt": [], "answer": "2"}\n',
        ", line 1 (record 0): prompt [] is an empty list of messages",
    ),
    "a message without a role": (
        "data.jsonl",
        b'{"prompt": [{"content": "1 + 1 ="}], "answer": "2"}\n',
        ", line 1 (record 0): prompt message 0 has no 'role'",
    ),
    "a lone surrogate": (
        "data.jsonl",
        b'{"prompt": "1 + 1 = \\ud800", "answer": "2"}\n',
        ", line 1 (record 0): prompt holds a lone surrogate '\\ud800' at character 9",
    ),
    "a FIFO named .jsonl": ("data.jsonl", None, " is not a regular file (a FIFO)"),
}


def write_data(path: Path, data: bytes | None) -> None:
    """The data file: ``data`` as bytes, or a FIFO (a named pipe, which a reader would wait on) for ``None``."""
    if data is None:
        os.mkfifo(path)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("name", sorted(DATA_FILES))
def test_fit_reports_a_bad_data_file_in_one_line_before_the_model_loads(tmp_path, model_dir, capsys, name):
    file_name, data, fragment = DATA_FILES[name]
    path = tmp_path / file_name
    write_data(path, data)
    config = write_config(tmp_path, model_dir, "uniform", task={"name": str(path)}, rewards={"functions": ["numeric"]})
    assert cli.main(["fit", "--config", str(config)]) == 2
    line, err = error_lines(capsys, "fit")
    assert f"{path}{fragment}" in line, line
    assert "Loading weights" not in err and not (tmp_path / "ckpt").exists()


REFERENCE_FILES = {  # name: (a record, the task's reward, fragment of the error after the file name)
    "an answer that is an object": (
        {"prompt": "1 + 1 =", "answer": {"value": 2}},
        "numeric",
        ", line 1 (record 0): column 'answer' (numeric_answer_reward): {'value': 2} (dict) is neither a number nor",
    ),
    "a Countdown target '1e9999999'": (
        {"prompt": "3 3 -> 6", "numbers": [3, 3], "target": "1e9999999"},
        "countdown",
        ", line 1 (record 0): column 'target' (countdown_reward): '1e9999999' (str) is not an integer's text",
    ),
}


@pytest.mark.parametrize("name", sorted(REFERENCE_FILES))
def test_fit_checks_the_reference_columns_before_the_model_loads(tmp_path, model_dir, capsys, name):
    record, reward, fragment = REFERENCE_FILES[name]
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(record) + "\n")
    config = write_config(tmp_path, model_dir, "uniform", task={"name": str(path)}, rewards={"functions": [reward]})
    assert cli.main(["fit", "--config", str(config)]) == 2
    line, err = error_lines(capsys, "fit")
    assert f"{path}{fragment}" in line, line
    assert "Loading weights" not in err and not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("name", sorted(DATA_FILES))
def test_survey_reports_a_bad_prompt_file_in_one_line(tmp_path, model_dir, capsys, name):
    file_name, data, fragment = DATA_FILES[name]
    path = tmp_path / file_name
    write_data(path, data)
    argv = ["survey", "--model", str(model_dir), "--device", "cpu", "--prompts", str(path), "--n", "2"]
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == 1
    line, _ = error_lines(capsys, "survey")
    assert f"{path}{fragment}" in line, line
    assert not list((tmp_path / "out" / "batches").glob("*.json"))  # nothing measured, nothing half-written


# ------------------------------------------------------------------------------------------------ configs

CONFIGS = {  # name: (bytes of the --config file, fragment of the error after the file name)
    "binary": (bytes(range(256)), ", line 1 holds a NUL byte: a binary file"),
    "not UTF-8 (Latin-1)": ("model:\n  model: café\n".encode("latin-1"), ", line 2, column 13: byte 0xe9 is not UTF-8"),
    "a YAML list": (b"- 1\n- 2\n", " holds a YAML list, not a mapping of settings"),
    "nested 100,000 deep": (("model: " + "[" * 100_000 + "]" * 100_000 + "\n").encode(), ": nested deeper than"),
    "a YAML syntax error": (b"model: {model: [\n", ", line 2, column 1: not valid YAML"),
    "a number of 5,000 digits": (("seed_everything: " + "9" * 5000 + "\n").encode(), ": holds a number too long"),
    "empty": (b"", " is empty: start from examples/grpo_cpu_smollm2.yaml"),
    "aliases of aliases (10**8 values)": (
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"{n}: &{n} [{', '.join(['*' + m] * 10)}]\n" for m, n in zip("abcdefg", "bcdefgh", strict=True))
            + "model: {task: {style: *h}}\n"
        ).encode(),
        " expands to more than 100,000 values (YAML aliases that repeat aliases?)",
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fit_reports_a_bad_config_file_in_one_line(tmp_path, capsys, name):
    data, fragment = CONFIGS[name]
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    assert cli.main(["fit", "--config", str(path)]) == 2
    line, _ = error_lines(capsys, "fit")
    assert f"{path}{fragment}" in line, line


# ------------------------------------------------------------------------------------------------ model folders


def _json(name: str, text: str):
    return lambda folder: (folder / name).write_text(text, encoding="utf-8")


def _config_with(**changes):
    def change(folder):
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **changes}))

    return change


MODEL_FOLDERS = {  # name: (spoil a copy of a good folder, the file named, fragment of the error after it)
    "config.json a list": (_json("config.json", "[1, 2]"), "config.json", " holds a JSON list, not an object"),
    "config.json in Latin-1": (
        lambda f: (f / "config.json").write_bytes(b'{"model_type": "caf\xe9"}'),
        "config.json",
        ", line 1, column 20: byte 0xe9 is not UTF-8",
    ),
    "config.json nested 100,000 deep": (
        _json("config.json", "[" * 100_000 + "]" * 100_000),
        "config.json",
        ": nested more than 64",
    ),
    "config.json not JSON": (_json("config.json", '{"model_type": "llama",\n}'), "config.json", ", line 2, column 1"),
    "config.json model_type a number": (_config_with(model_type=5), "config.json", ": model_type is 5"),
    "config.json max_position_embeddings a string": (
        _config_with(max_position_embeddings="512"),
        "config.json",
        ": max_position_embeddings is '512' (str), not an integer",
    ),
    "tokenizer_config.json a list": (
        _json("tokenizer_config.json", "[]"),
        "tokenizer_config.json",
        " holds a JSON list",
    ),
    "generation_config.json a list": (_json("generation_config.json", "[]"), "generation_config.json", " holds a JSON"),
    "tokenizer.json of random bytes": (
        lambda f: (f / "tokenizer.json").write_bytes(bytes(range(11, 256))),
        "tokenizer.json",
        ", line 1, column 118: byte 0x80 is not UTF-8",
    ),
    "model.safetensors of random bytes": (
        lambda f: (f / "model.safetensors").write_bytes(bytes(range(256)) * 4),
        "model.safetensors",
        " is not a readable safetensors file",
    ),
}


def spoilt_folder(model_dir: Path, tmp_path: Path, name: str) -> tuple[Path, Path, str]:
    spoil, file_name, fragment = MODEL_FOLDERS[name]
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    spoil(folder)
    return folder, folder / file_name, fragment


@pytest.mark.parametrize("name", sorted(MODEL_FOLDERS))
def test_analyze_reports_a_bad_model_folder_in_one_line(model_dir, tmp_path, capsys, name):
    folder, path, fragment = spoilt_folder(model_dir, tmp_path, name)
    assert cli.main(["analyze", "--model", str(folder), "--device", "cpu", "--no-report"]) == 1
    line, _ = error_lines(capsys, "analyze")
    assert f"{path}{fragment}" in line, line


@pytest.mark.parametrize("name", sorted(MODEL_FOLDERS))
def test_fit_reports_a_bad_model_folder_in_one_line_before_anything_runs(model_dir, tmp_path, capsys, name):
    folder, path, fragment = spoilt_folder(model_dir, tmp_path, name)
    assert cli.main(["fit", "--config", str(write_config(tmp_path, folder, "uniform"))]) == 2
    line, err = error_lines(capsys, "fit")
    assert f"{path}{fragment}" in line, line
    assert "Loading weights" not in err and not (tmp_path / "ckpt").exists()


# ------------------------------------------------------------------------------------------------ the count

BAD_INPUTS = [
    *(BadInput(f"fit: data file {n}", "test_fit_reports_a_bad_data_file_in_one_line_before_the_model_loads")
      for n in DATA_FILES),
    *(BadInput(f"survey: prompt file {n}", "test_survey_reports_a_bad_prompt_file_in_one_line") for n in DATA_FILES),
    *(BadInput(f"fit: data file with {n}", "test_fit_checks_the_reference_columns_before_the_model_loads")
      for n in REFERENCE_FILES),
    *(BadInput(f"fit --config {n}", "test_fit_reports_a_bad_config_file_in_one_line") for n in CONFIGS),
    *(BadInput(f"analyze --model: {n}", "test_analyze_reports_a_bad_model_folder_in_one_line") for n in MODEL_FOLDERS),
    *(BadInput(f"fit model: {n}", "test_fit_reports_a_bad_model_folder_in_one_line_before_anything_runs")
      for n in MODEL_FOLDERS),
]  # fmt: skip
"""Every bad input tried here, once (the count is in docs/troubleshooting.md, "Robustness")."""
