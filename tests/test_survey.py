"""``reasonattn survey`` end to end on tiny random models, checked against an unpadded, unbatched re-measurement."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import BadInput

from lightning_reasonattn import cli, testing
from lightning_reasonattn.capture import capture_rhythm
from lightning_reasonattn.functional.coupling import token_entropy
from lightning_reasonattn.metrics import RhythmCoupling
from lightning_reasonattn.models import load_model
from lightning_reasonattn.survey import SurveySettings


@pytest.fixture(scope="module")
def tiny_arithmetic(tmp_path_factory) -> Path:
    """A random 4-layer Llama whose tokenizer knows the characters of the built-in arithmetic prompts."""
    from lightning_reasonattn.tasks import generate_arithmetic

    texts = tuple(r["prompt"][1]["content"] for r in generate_arithmetic(8, difficulty=3, chat=True))  # the survey's
    path = tmp_path_factory.mktemp("tiny-arith")
    return testing.tiny_checkpoint(path, texts=texts, vocab_size=300, hidden_size=32, intermediate_size=64)


@pytest.fixture(scope="module")
def tiny_small_vocab(tmp_path_factory) -> Path:
    """A random model over 25 tokens, so that its samples often end with EOS before the length limit."""
    path = tmp_path_factory.mktemp("tiny-eos")
    return testing.tiny_checkpoint(path, texts=("1+2=3*4-5",), vocab_size=24, hidden_size=32, intermediate_size=64)


def _batches(out: Path) -> list[dict]:
    responses = []
    for path in sorted((out / "batches").glob("*.json")):
        responses += json.loads(path.read_text())["responses"]
    return responses


def _remeasure(model_path: Path, responses: list[dict]):
    """Each response alone, without padding: its trace and token entropies from a plain forward."""
    model, _ = load_model(str(model_path))
    found = []
    for r in responses:
        ids = torch.tensor([r["prompt_ids"] + r["response_ids"]])
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask[:, len(r["prompt_ids"]) :] = True
        trace, out = capture_rhythm(model, ids, response_mask=mask, return_outputs=True)
        found.append((trace, token_entropy(out.logits), mask))
    return found


def _stored(values: list) -> torch.Tensor:
    return torch.tensor([float("nan") if v is None else v for v in values])


def _run(tmp_path, model: Path, *extra: str, out: str = "out") -> int:
    argv = ["survey", "--model", str(model), "--device", "cpu", "--out", str(tmp_path / out), "--n-boot", "300"]
    return cli.main([*argv, *extra])


def test_survey_end_to_end_matches_unbatched_measurement(tiny_arithmetic, tmp_path, capsys, monkeypatch):
    from lightning_reasonattn.survey import progress

    monkeypatch.setitem(progress.STEP_INTERVAL_S, "log", 0.0)  # a progress line at every decoding step
    args = ("--n", "4", "--batch-size", "3", "--max-new-tokens", "48", "--reports", "1", "--peak-fraction", "0.4")
    assert _run(tmp_path, tiny_arithmetic, *args) == 0
    printed = capsys.readouterr()
    out = tmp_path / "out"
    result = json.loads((out / "survey.json").read_text())
    assert {"survey.json", "table.md", "profiles.png", "index.html", "batches"} <= {p.name for p in out.iterdir()}
    assert result["responses"] == 4 and len(list((out / "batches").glob("*.json"))) == 2  # batches of 3 and 1
    assert "responses/s" in printed.err and "FAI peaks preceded by or at a WAAD peak" in printed.out
    # Progress within a batch: every decoding step of each batch, as many as its longest response has tokens.
    longest = [max(len(r["response_ids"]) for r in batch) for batch in (_batches(out)[:3], _batches(out)[3:])]
    for batch, steps in enumerate(longest, 1):
        shown = [int(n) for n in re.findall(rf"batch {batch}/2: step (\d+)/48, \d+ tokens/s", printed.err)]
        assert shown == list(range(1, steps + 1)), (batch, shown[:5], steps)
    # The layers measured, resolved: 'middle' of 4 layers is round(linspace(1, 2, 5)) = {1, 2}.
    assert result["settings"]["layers"] == "middle" and result["layers"] == [1, 2]
    assert "layers 1, 2 (middle)" in (out / "index.html").read_text()

    # The stored per-token signals equal those of each response measured alone (left padding and batching
    # change nothing), and the pooled statistics equal RhythmCoupling's over those single measurements.
    responses = _batches(out)
    metric = RhythmCoupling(coupling_window=3, peak_fraction=0.4)
    for r, (trace, entropy, mask) in zip(responses, _remeasure(tiny_arithmetic, responses), strict=True):
        torch.testing.assert_close(_stored(r["waad"]), trace.waad[mask], equal_nan=True, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(_stored(r["fai"]), trace.fai[mask], equal_nan=True, atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(_stored(r["entropy"]), entropy[mask], atol=1e-4, rtol=1e-4)
        metric.update(trace, entropy)
    expected = metric.compute()
    table = {row["key"]: row for row in result["table"]}
    for key, name in (
        ("fai_preceded_rate", "fai_preceded_rate"),
        ("fai_preceded_lift", "fai_preceded_lift"),
        ("waad_followed_rate", "waad_followed_rate"),
        ("entropy_lift", "entropy_lift"),
        ("entropy_mean", "entropy_mean"),
    ):
        assert table[key]["value"] == pytest.approx(expected[name].item(), rel=1e-4), key
        assert table[key]["low"] <= table[key]["value"] <= table[key]["high"]
    assert table["fai_preceded_rate"]["paper"] == 0.525

    # The page: the table, the paper's values, the embedded profiles, working links to the per-response reports.
    page = (out / "index.html").read_text()
    assert "0.525" in page and "data:image/png;base64," in page
    links = re.findall(r'href="([^"]+)"', page)
    reports = result["coupled"]["most"] + result["coupled"]["least"]
    assert links == [item["report"] for item in reports] and links
    for link in links:
        assert (out / link).is_file() and not Path(link).is_absolute()


def test_survey_eos_resume_and_refusal(tiny_small_vocab, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"question": q}) + "\n" for q in ("1+2", "3*4-5", "12", "4-3", "2*2", "5")))
    args = ["--prompts", str(prompts), "--prompt-column", "question", "--n", "6", "--batch-size", "4"]
    args += ["--max-new-tokens", "24", "--reports", "0"]
    assert _run(tmp_path, tiny_small_vocab, *args) == 0
    out = tmp_path / "out"
    first = json.loads((out / "survey.json").read_text())
    responses = _batches(out)
    eos = 2  # <|im_end|>
    ended = [r for r in responses if not r["truncated"]]
    assert ended and any(r["truncated"] for r in responses)
    for r in responses:
        assert len(r["waad"]) == len(r["fai"]) == len(r["entropy"]) == len(r["response_ids"])
        assert eos not in r["response_ids"][:-1]  # nothing after the first EOS
        assert (r["response_ids"][-1] == eos) != r["truncated"]
        assert len(r["response_ids"]) == 24 or not r["truncated"]
    for r, (trace, _, mask) in zip(responses, _remeasure(tiny_small_vocab, responses), strict=True):
        torch.testing.assert_close(_stored(r["fai"]), trace.fai[mask], equal_nan=True, atol=1e-6, rtol=1e-4)
    assert first["truncated"] == sum(r["truncated"] for r in responses)
    page = (out / "index.html").read_text()  # --reports 0: the page says the lists were turned off, not empty
    assert page.count("Per-response reports were turned off (--reports 0)") == 2 and "No response has" not in page

    # Resume: nothing is measured again; a lost batch is measured again, identically.
    batch1 = (out / "batches" / "00001.json").read_text()
    (out / "batches" / "00001.json").unlink()
    capsys.readouterr()
    assert _run(tmp_path, tiny_small_vocab, *args) == 0
    again = json.loads((out / "survey.json").read_text())
    assert again["run"]["reused_batches"] == 1 and again["run"]["measured_responses"] == 2
    assert (out / "batches" / "00001.json").read_text() == batch1
    assert again["table"] == first["table"]

    # The statistics' settings reuse every batch; a generation setting is refused with the reason.
    assert _run(tmp_path, tiny_small_vocab, *args, "--coupling-window", "1") == 0
    assert json.loads((out / "survey.json").read_text())["run"]["measured_responses"] == 0
    capsys.readouterr()
    assert _run(tmp_path, tiny_small_vocab, *args[:-4], "--max-new-tokens", "30", "--reports", "0") == 1
    err = capsys.readouterr().err
    assert "max_new_tokens: 24 there, 30 now" in err and "another --out" in err


def _unknown_prompt_set(tmp_path, model) -> int:
    return _run(tmp_path, model, "--prompts", "gsm9k", "--n", "2")


def _out_is_a_file(tmp_path, model) -> int:
    (tmp_path / "file").write_text("x")
    return _run(tmp_path, model, "--n", "2", out="file")


def _prompts_past_the_context(tmp_path, model) -> int:
    prompts = tmp_path / "long.jsonl"
    prompts.write_text(json.dumps({"prompt": "1+2=3*4-5" * 80}) + "\n")  # some 700 tokens; the context is 512
    return _run(tmp_path, model, "--prompts", str(prompts), "--n", "1", "--max-new-tokens", "8")


def _top_p_above_one(tmp_path, model) -> int:
    with pytest.raises(SystemExit) as info:
        cli.main(["survey", "--top-p", "1.5"])
    return info.value.code


def _out_holds_the_users_files(tmp_path, model) -> int:
    out = tmp_path / "out"  # no survey in it: the user's own page and table, which a survey would overwrite
    out.mkdir()
    mine = {"index.html": "<p>my page</p>", "table.md": "my table", "thesis.tex": "precious"}
    for name, text in mine.items():
        (out / name).write_text(text)
    status = _run(tmp_path, model, "--n", "2", "--max-new-tokens", "4", "--reports", "0")
    assert {p.name: p.read_text() for p in out.iterdir()} == mine  # nothing written, nothing overwritten
    return status


def _settings_file_holding(value):
    def run(tmp_path, model) -> int:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "survey_settings.json").write_text(json.dumps(value))
        status = _run(tmp_path, model, "--n", "2", "--max-new-tokens", "4", "--reports", "0")
        assert json.loads((tmp_path / "out" / "survey_settings.json").read_text()) == value  # left as it was
        return status

    return run


def _usage_error(*extra: str):
    def run(tmp_path, model) -> int:
        with pytest.raises(SystemExit) as info:
            cli.main(["survey", "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "out"), *extra])
        return info.value.code

    return run


BAD_SURVEY_RUNS = [  # (name, the run, its exit status, fragment of the error on stderr)
    (
        "unknown prompt set",
        _unknown_prompt_set,
        1,
        "'gsm9k' is neither a built-in set (arithmetic, countdown, word_problems)",
    ),
    ("--out is a file", _out_is_a_file, 1, "is a file: pass a folder"),
    ("--top-p 1.5", _top_p_above_one, 2, "not a number in (0, 1]"),
    ("--out a folder of the user's files", _out_holds_the_users_files, 1, "holds files but no survey_settings.json"),
    (
        "survey_settings.json that is a JSON list",
        _settings_file_holding([]),
        1,
        "survey_settings.json holds a JSON list, not a survey's settings",
    ),
    (
        "survey_settings.json whose settings are a number",
        _settings_file_holding({"settings": 5}),
        1,
        "survey_settings.json holds 'settings': 5 (int), not a survey's settings",
    ),
    ("--n 10**30", _usage_error("--n", str(10**30)), 2, f"'{10**30}' is not an integer in [1, 1000000]"),
    ("--n-boot 10**30", _usage_error("--n-boot", str(10**30)), 2, f"'{10**30}' is not an integer in [1, 1000000]"),
    ("--seed 2**70", _usage_error("--seed", str(2**70)), 2, f"'{2**70}' is not a seed: an integer in [0, 2**63 - 1]"),
    ("--seed -1", _usage_error("--seed", "-1"), 2, "'-1' is not a seed: an integer in [0, 2**63 - 1]"),
    (
        "prompts past the model's context",
        _prompts_past_the_context,
        1,
        "plus --max-new-tokens 8 makes",
    ),
]


@pytest.mark.parametrize(("name", "run", "status", "message"), BAD_SURVEY_RUNS, ids=[c[0] for c in BAD_SURVEY_RUNS])
def test_survey_bad_input_is_reported(tiny_small_vocab, tmp_path, capsys, name, run, status, message):
    assert run(tmp_path, tiny_small_vocab) == status
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


BAD_SURVEY_SETTINGS = [
    ({"n": 0}, "n=0"),
    ({"look_back": -1}, "look_back=-1"),
    ({"temperature": -1.0}, "temperature=-1.0"),
    ({"chat": "maybe"}, "chat='maybe'"),
    ({"horizon": (5, 2)}, "horizon=(5, 2)"),
    ({"n": 10**30}, f"n={10**30}"),
    ({"n_boot": 10**7}, f"n_boot={10**7}"),
    ({"seed": 2**70}, f"seed={2**70}"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_SURVEY_SETTINGS, ids=[m for _, m in BAD_SURVEY_SETTINGS])
def test_survey_settings_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SurveySettings(**kwargs)


def test_decode_steps_count_the_tokens_of_the_rows_still_running(tiny_small_vocab):
    from lightning_reasonattn.rollout.prompts import end_ids
    from lightning_reasonattn.survey import progress
    from lightning_reasonattn.survey.run import measure_batch

    model, tokenizer = load_model(str(tiny_small_vocab))
    steps = []

    class Recorder(progress.SurveyProgress):
        def step(self, count, tokens, seconds):
            steps.append((count, tokens))

    settings = SurveySettings(max_new_tokens=24, batch_size=4)
    tracker = Recorder(4, 1, 24, None).streamer(0, 4, end_ids(model, tokenizer))
    records = measure_batch(model, tokenizer, ["1+2", "3*4-5", "12", "4-3"], settings, seed=0, streamer=tracker)
    lengths = [len(r["response_ids"]) for r in records]  # each up to and including its EOS
    assert min(lengths) < 24  # some row ended early: its later steps make no token
    assert [count for count, _ in steps] == list(range(1, max(lengths) + 1))
    assert steps[-1][1] == sum(lengths)


def test_fingerprint_covers_what_is_measured_only():
    base = SurveySettings()
    assert SurveySettings(look_back=1, q=0.3, peak_fraction=0.1, n=999, n_boot=10).fingerprint() == base.fingerprint()
    assert SurveySettings(temperature=0.7).fingerprint() != base.fingerprint()
    assert SurveySettings(layers=[1, 2]).fingerprint() != base.fingerprint()


BAD_INPUTS = [
    *(BadInput(f"survey: {name}", "test_survey_bad_input_is_reported") for name, *_ in BAD_SURVEY_RUNS),
    *(
        BadInput(f"SurveySettings({message})", "test_survey_settings_reject_bad_values")
        for _, message in BAD_SURVEY_SETTINGS
    ),
    BadInput("survey: resume with another generation setting", "test_survey_eos_resume_and_refusal"),
]
"""Every bad input tried here, once (the count is in docs/troubleshooting.md, "Robustness")."""
