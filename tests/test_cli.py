"""The ``reasonattn`` command line: ``analyze`` on a tiny random model (fast) and on the default model."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import HAS_SMOLLM2, SMOLLM2_MISSING, BadInput

from lightning_reasonattn import analysis, cli, models, testing
from lightning_reasonattn.functional import rhythm_from_attentions, select_layers


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random 4-layer Llama with a byte-level BPE tokenizer (vocab 300) trained in memory; no pad token."""
    texts = (analysis.DEFAULT_PROMPT, "Let us think step by step.\nThe answer is 5 pm.")
    path = tmp_path_factory.mktemp("tiny-llama")
    return testing.tiny_checkpoint(path, texts=texts, vocab_size=300, hidden_size=32, intermediate_size=64)


def _close(value, expected: float) -> bool:
    if value is None:
        return math.isnan(expected)
    return math.isclose(value, expected, rel_tol=1e-5, abs_tol=1e-6)


def _reference_trace(path, record, attn_implementation):
    """The trace of the JSON's ids, measured without the CLI."""
    from lightning_reasonattn.capture import capture_rhythm

    model, _ = models.load_model(str(path), attn_implementation=attn_implementation)
    ids = torch.tensor([record["input_ids"]])
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, record["prompt_length"] :] = True
    if attn_implementation == "sdpa":
        return capture_rhythm(model, ids, response_mask=mask), mask
    layers = select_layers(model.config.num_hidden_layers, "middle")
    with torch.no_grad():
        out = model(ids, output_attentions=True)
    return rhythm_from_attentions(torch.stack([out.attentions[i] for i in layers], 1), mask, layers), mask


def test_analyze_tiny_model(tiny_checkpoint, tmp_path, capsys):
    out_json = tmp_path / "rhythm.json"
    report = tmp_path / "report"
    argv = ["analyze", "--model", str(tiny_checkpoint), "--max-new-tokens", "16", "--json", str(out_json)]
    assert cli.main([*argv, "--report", str(report)]) == 0
    out = capsys.readouterr().out
    record = json.loads(out_json.read_text())
    rows = record["tokens"]

    # The response is the 16 greedy tokens after the chat-templated prompt.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": analysis.DEFAULT_PROMPT}], add_generation_prompt=True, tokenize=False
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    assert record["input_ids"][: record["prompt_length"]] == prompt_ids
    assert 1 <= len(rows) <= 16 and len(record["input_ids"]) == record["prompt_length"] + len(rows)
    assert [r["position"] for r in rows] == list(range(record["prompt_length"], len(record["input_ids"])))

    # Table and summary.
    assert "WAAD" in out and "delta" in out and "FAI" in out and "marks" in out
    for row in rows:
        assert f"\n{row['position']:>5}  " in out
    assert f"model: {tiny_checkpoint}" in out
    assert "layers: 1, 2" in out  # "middle" of 4 layers: round(linspace(1, 2, 5))

    # The report: pictures and a page holding every response token with its WAAD, in the reported folder.
    assert {p.name for p in report.iterdir()} == {"heatmaps.png", "curves.png", "report.html"}
    assert f"report written: {report}" in out
    page = (report / "report.html").read_text()
    shown = dict(re.findall(r'data-pos="(\d+)" data-waad="([^"]+)"', page))
    for row in rows:
        assert _close(float(shown[str(row["position"])]), row["waad"] if row["waad"] is not None else math.nan)
    assert f"response tokens: {len(rows)}" in out
    for label in ("mean WAAD:", "mean FAI:", "preplan tokens:", "anchor tokens:", "local heads:", "global heads:"):
        assert label in out
    summary = record["summary"]
    assert summary["layers"] == [1, 2] and summary["response_tokens"] == len(rows)
    assert len(summary["local_heads"]) == len(summary["global_heads"]) == max(1, round(0.3 * 2 * 4))

    # Same numbers as capture_rhythm run directly on the same ids.
    trace, mask = _reference_trace(tiny_checkpoint, record, "sdpa")
    for row in rows:
        t = row["position"]
        assert _close(row["waad"], float(trace.waad[0, t]))
        assert _close(row["delta"], float(trace.waad_jumps[0, t]))
        assert _close(row["fai"], float(trace.fai[0, t]))
        for name in ("preplan", "anchor", "dominated", "intro"):
            assert row[name] == bool(getattr(trace, name)[0, t])
    waad = [r["waad"] for r in rows]
    assert summary["mean_waad"] == pytest.approx(sum(waad) / len(waad))
    assert [t["position"] for t in summary["preplan"]] == trace.preplan[0].nonzero().flatten().tolist()
    assert [t["position"] for t in summary["anchor"]] == trace.anchor[0].nonzero().flatten().tolist()

    # And close to the dense definition on eager attention maps.
    dense, _ = _reference_trace(tiny_checkpoint, record, "eager")
    for row in rows:
        t = row["position"]
        assert row["waad"] == pytest.approx(float(dense.waad[0, t]), abs=1e-4)
        if row["fai"] is not None:
            assert row["fai"] == pytest.approx(float(dense.fai[0, t]), abs=1e-5)


def test_analyze_is_reproducible_and_layers_can_be_chosen(tiny_checkpoint, tmp_path, capsys):
    runs = []
    for name in ("a.json", "b.json"):
        argv = ["analyze", "--model", str(tiny_checkpoint), "--max-new-tokens", "12", "--layers", "0,-1", "--no-report"]
        assert cli.main([*argv, "--sample", "--seed", "3", "--json", str(tmp_path / name)]) == 0
        runs.append(json.loads((tmp_path / name).read_text()))
    assert runs[0] == runs[1]
    assert runs[0]["summary"]["layers"] == [0, 3]
    assert "layers: 0, 3" in capsys.readouterr().out


def test_missing_model_path_is_reported_without_traceback(tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    assert cli.main(["analyze", "--model", str(missing)]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err
    assert err.startswith("reasonattn analyze: error:") and "Traceback" not in err


def test_layer_out_of_range_is_reported(tiny_checkpoint, capsys):
    assert cli.main(["analyze", "--model", str(tiny_checkpoint), "--layers", "7"]) == 1
    err = capsys.readouterr().err
    assert "layer index 7" in err and "4 layers" in err and "Traceback" not in err


def test_json_into_missing_folder_is_reported(tiny_checkpoint, tmp_path, capsys):
    target = tmp_path / "nowhere" / "out.json"
    assert cli.main(["analyze", "--model", str(tiny_checkpoint), "--json", str(target)]) == 1
    err = capsys.readouterr().err
    assert "--json" in err and "Traceback" not in err


def test_analyze_refuses_a_prompt_past_the_context_with_both_numbers(tiny_checkpoint, capsys):
    from transformers import AutoTokenizer

    prompt = "The answer is 5 pm. " * 200
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    tokens = len(tokenizer(text, add_special_tokens=False).input_ids)
    assert tokens > 512  # the tiny model's context (max_position_embeddings)
    argv = ["analyze", "--model", str(tiny_checkpoint), "--prompt", prompt, "--max-new-tokens", "8", "--no-report"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1:] == [
        f"reasonattn analyze: error: a prompt of {tokens} tokens plus --max-new-tokens 8 makes {tokens + 8} tokens, "
        "more than the model's context of 512 (its max_position_embeddings): shorten the prompts to at most 504 "
        "tokens (the prompt alone is too long)"
    ]
    assert "Traceback" not in err and "friendly reminder" not in err  # refused before generating


BAD_ARGUMENTS = [  # (command line, fragment of the usage error)
    ([], "COMMAND"),
    (["analyze", "--max-new-tokens", "0"], "'0' is not an integer >= 1"),
    (["analyze", "--layers", "middle,x"], "'middle,x' is not 'middle', 'all' or comma-separated"),
    (["analyze", "--device", "tpu"], "invalid choice: 'tpu'"),
    (["analyze", "--greedy", "--sample"], "not allowed with argument"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (
        ["analyze", "--model", "no-model", "--sample", "--seed", str(2**70)],
        f"'{2**70}' is not a seed: an integer in [0, 2**63 - 1]",
    ),
]


@pytest.mark.parametrize(
    ("argv", "pattern"), BAD_ARGUMENTS, ids=[" ".join(a) or "no command" for a, _ in BAD_ARGUMENTS]
)
def test_bad_arguments_exit_with_usage(argv, pattern, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert pattern in err and "usage: reasonattn" in err


def test_analyze_empty_prompt_without_chat_template(tmp_path, capsys):
    from transformers import AutoTokenizer

    folder = testing.tiny_checkpoint(tmp_path / "plain")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    assert cli.main(["analyze", "--model", str(folder), "--prompt", "", "--no-report"]) == 1
    err = capsys.readouterr().err
    assert "--prompt" in err and "no tokens" in err and "Traceback" not in err


def test_analyze_refuses_a_prompt_that_is_not_utf8(tiny_checkpoint, capsys):
    prompt = b"2+2? \xff\xfe".decode("utf-8", "surrogateescape")  # what Python makes of such bytes in argv
    assert cli.main(["analyze", "--model", str(tiny_checkpoint), "--prompt", prompt, "--no-report"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("reasonattn analyze: error: --prompt holds bytes that are not UTF-8")
    assert "byte 0xff" in err and "Traceback" not in err


def test_escape_token():
    assert analysis.escape_token("a\nb\tc\\") == "a\\nb\\tc\\\\"
    assert analysis.escape_token("\x00") == "\\x00"
    assert analysis.escape_token("x" * 40) == "x" * 13 + "..."
    assert len(analysis.escape_token("\n" * 40)) == analysis.TOKEN_WIDTH


@pytest.mark.skipif(not HAS_SMOLLM2, reason=SMOLLM2_MISSING)
def test_analyze_default_model_end_to_end(default_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(models.CACHE_ENV, str(default_cache))
    out_json = tmp_path / "rhythm.json"
    report = tmp_path / "report"
    assert cli.main(["analyze", "--max-new-tokens", "24", "--json", str(out_json), "--report", str(report)]) == 0
    assert {p.name for p in report.iterdir()} >= {"heatmaps.png", "curves.png", "report.html"}
    captured = capsys.readouterr()
    assert "converting" not in captured.err
    assert f"model: {models.DEFAULT_MODEL}" in captured.out
    assert "layers: 10, 12, 15, 18, 20" in captured.out
    record = json.loads(out_json.read_text())
    rows = record["tokens"]
    assert 1 <= len(rows) <= 24
    assert all(0.0 <= r["waad"] <= 10.0 for r in rows)
    assert record["summary"]["mean_fai"] is None or 0.0 < record["summary"]["mean_fai"] < 1.0
    assert len(record["summary"]["local_heads"]) == round(0.3 * 5 * 9)


BAD_INPUTS = [
    BadInput("analyze --model of a missing folder", "test_missing_model_path_is_reported_without_traceback"),
    BadInput("analyze --layers 7 on a 4-layer model", "test_layer_out_of_range_is_reported"),
    BadInput("analyze --json into a missing folder", "test_json_into_missing_folder_is_reported"),
    BadInput("analyze --prompt '' without a chat template", "test_analyze_empty_prompt_without_chat_template"),
    BadInput("analyze --prompt of bytes that are not UTF-8", "test_analyze_refuses_a_prompt_that_is_not_utf8"),
    BadInput(
        "analyze --prompt past the model's context", "test_analyze_refuses_a_prompt_past_the_context_with_both_numbers"
    ),
    *(
        BadInput(f"reasonattn {' '.join(argv)}".strip(), "test_bad_arguments_exit_with_usage")
        for argv, _ in BAD_ARGUMENTS
    ),
]
"""Every bad input tried here, once (the count is in docs/troubleshooting.md, "Robustness")."""
