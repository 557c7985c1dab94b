"""The survey's knockout test: the groups on a hand-worked response, the sums and the paired statistics by hand, one
response's batched knockout against each set knocked out alone, and ``reasonattn survey --knockout`` end to end."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_model
from test_survey import _run, tiny_arithmetic  # noqa: F401 (a fixture)

from lightning_reasonattn import knockout_nll
from lightning_reasonattn.functional.knockout import choose_groups, knockout_sums, token_kind
from lightning_reasonattn.survey.knockout import (
    GROUPS,
    KnockoutSettings,
    answer_tokens,
    final_answer_span,
    heads_rows,
    measure_response,
    summarize_knockout,
    token_texts,
)

nan = float("nan")
# 10 tokens with an FAI (the last 2 have none). Top half of the FAI: 3, 6, 1, 8, 4; local maxima among them: 1, 3, 6, 8.
FAI = torch.tensor([0.1, 0.5, 0.2, 0.9, 0.3, 0.3, 0.8, 0.1, 0.4, 0.2, nan, nan])
WAAD = torch.tensor([0.0, 0.0] + [5.0] * 10)  # one WAAD jump, at token 1
ENTROPY = torch.tensor([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 0.5, 100, 100])  # the two largest have no FAI: not candidates
KINDS = ["word", "punctuation", "punctuation", "digit", "punctuation", "punctuation", "word", "punctuation"] + [
    "punctuation",
    "digit",
    "digit",
    "word",
]


def groups(kinds=KINDS, seed=0, count=2):
    return choose_groups(
        FAI, WAAD, ENTROPY, kinds, count, peak_fraction=0.5, generator=torch.Generator().manual_seed(seed)
    )


def test_groups_of_a_hand_worked_response():
    chosen, unmatched = groups()
    assert chosen["anchors"] == [3, 6]  # the two highest FAI peaks
    assert chosen["entropy"] == [7, 8]  # highest entropy among the tokens with an FAI
    assert chosen["preplan"] == [0, 1]  # the one jump peak (1), then the largest jump, earliest first (0)
    assert chosen["same_kind"] == [0, 9] and unmatched == 0  # the only other digit (9) and word (0) with an FAI
    for seed in range(20):
        chosen, _ = groups(seed=seed)
        first, second = chosen["position"]
        assert first in (2, 4) and second in (5, 7)  # one neighbour of each anchor (ties: a coin flip)
        random = chosen["random"]
        assert len(set(random)) == 2 and not set(random) & {3, 6} and max(random) <= 9


def test_same_kind_without_a_match_takes_another_token_and_counts_it():
    kinds = ["punctuation"] * 12
    kinds[3] = "digit"  # no other digit
    chosen, unmatched = groups(kinds)
    assert unmatched == 1 and len(chosen["same_kind"]) == 2 and not set(chosen["same_kind"]) & {3, 6}


def test_random_draws_follow_the_seed():
    assert groups(seed=1) == groups(seed=1)
    assert any(groups(seed=s)[0]["random"] != groups(seed=0)[0]["random"] for s in range(1, 10))


def test_a_response_with_too_few_candidates_is_skipped():
    assert choose_groups(FAI, WAAD, ENTROPY, KINDS, 6, generator=torch.Generator()) is None  # 10 < 2 * 6


def test_token_kinds():
    assert [token_kind(t) for t in ("12", " x3", " the", "\n", ".", " ", "é")] == [
        "digit",
        "digit",
        "word",
        "space",
        "punctuation",
        "space",
        "word",
    ]


def test_sums_over_the_tokens_the_knockout_reaches():
    increase = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    answer = torch.tensor([False] * 5 + [True] * 3)
    # knocked out: 2 and 5; window: from 2 + 2 = 4 on, without 5 -> 4, 6, 7; answer tokens in it: 6, 7
    sums = knockout_sums(increase, [2, 5], answer)
    assert sums == pytest.approx({"after_sum": 1.7, "after_count": 3, "answer_sum": 1.3, "answer_count": 2})
    assert knockout_sums(increase, [2, 5])["answer_count"] == 0


def test_final_answer_and_its_tokens():
    text = "<think>3+4=7</think><answer> 42 </answer>"
    start, end = final_answer_span(text)
    assert text[start:end] == "42"
    assert final_answer_span("so 3 + 4 = 7. Then 1,250 apples.") == (19, 24)
    assert final_answer_span("no number here") is None
    assert final_answer_span("<answer> </answer> 5") is None  # an empty answer block is no answer
    texts = ["The", " answer", " is", " 1", "2", "."]
    assert answer_tokens(texts, final_answer_span("".join(texts))).tolist() == [0, 0, 0, 1, 1, 0]


def test_token_texts_from_prefix_decoding():
    vocab = {0: "Hi", 1: " there", 2: "\u00e9"}

    def decode(ids):
        # ids 3, 4: the two halves of one character: "\ufffd" alone, the character together
        text = "".join(vocab.get(i, "") for i in ids if i < 3)
        if 3 in ids:
            text += "\u00e8" if 4 in ids else "\ufffd"
        return text

    assert token_texts(decode, [0, 1, 2]) == ["Hi", " there", "\u00e9"]
    assert token_texts(decode, [0, 3, 4]) == ["Hi", "\ufffd", ""]  # the second half, decoded alone, adds nothing


def _record(scale_anchor: float, size: float) -> dict:
    """A response whose anchors raise the NLL ``scale_anchor`` times as much per token as the random tokens."""
    groups = {}
    for g in GROUPS:
        scale = scale_anchor if g.tokens == "anchors" else 1.0
        groups[g.key] = {
            "positions": [1, 2] if g.tokens != "entropy" else [2, 9],
            "after_sum": scale * size,
            "after_count": 10.0,
            "answer_sum": scale * size / 2,
            "answer_count": 2.0,
        }
    return {"prompt_index": 0, "skipped": None, "unmatched_kind": 1, "answer_tokens": 2, "groups": groups}


def test_statistics_are_ratios_of_sums_with_paired_intervals():
    records = [_record(2.0, size) for size in (0.5, 1.0, 4.0)] + [{"prompt_index": 3, "skipped": "too short"}]
    summary = summarize_knockout(records, n_boot=500, level=0.9, seed=0)
    assert summary["responses"] == 3 and summary["skipped"] == 1 and summary["unmatched_kind"] == 3
    rows = {g["key"]: g for g in summary["groups"]}
    mean_random = (0.5 + 1.0 + 4.0) / 30  # sum of increases over sum of tokens
    assert rows["random"]["after"]["mean"]["value"] == pytest.approx(mean_random)
    assert rows["anchors"]["after"]["mean"]["value"] == pytest.approx(2 * mean_random)
    assert rows["random"]["answer"]["mean"]["value"] == pytest.approx(5.5 / 2 / 6)
    # Every response's anchors raise the NLL exactly twice as much as its random tokens: resampling the responses
    # together (paired) keeps the ratio at 2, and its interval collapses on it; the mean's does not.
    for window in ("after", "answer"):
        ratio = rows["anchors"][window]["vs_random"]
        assert ratio["value"] == pytest.approx(2) and ratio["low"] == pytest.approx(2)
        assert ratio["high"] == pytest.approx(2)
        assert rows["position"][window]["anchors_vs"]["value"] == pytest.approx(2)
    mean = rows["anchors"]["after"]["mean"]
    assert mean["low"] < mean["value"] < mean["high"]
    assert rows["entropy"]["overlap"] == pytest.approx(0.5) and rows["random"]["overlap"] == 1.0
    assert rows["anchors"]["after"]["tokens"] == 30


def test_one_forward_per_response_equals_each_set_knocked_out_alone():
    model = tiny_model("llama")  # 6 layers of 4 heads
    gen = torch.Generator().manual_seed(5)
    prompt, response = torch.randint(0, 97, (6,), generator=gen).tolist(), torch.randint(0, 97, (30,), generator=gen)
    response = response.tolist()
    chosen = {
        "anchors": [3, 10],
        "random": [5, 20],
        "position": [4, 11],
        "same_kind": [1, 2],
        "entropy": [0, 7],
        "preplan": [12, 13],
    }
    answer = torch.zeros(30, dtype=torch.bool)
    answer[25:28] = True
    heads = heads_rows([1, 6], layers=[1, 3], num_layers=6, num_heads=4)  # layer 1 head 1, layer 3 head 2
    assert heads[0].all() and heads[1].all()
    global_row = [i + 1 for i, g in enumerate(GROUPS) if g.heads == "global"][0]
    assert heads[global_row].nonzero().tolist() == [[1, 1], [3, 2]]
    measured = measure_response(model, prompt, response, chosen, answer, heads)

    ids = torch.tensor([prompt + response])
    plain = knockout_nll(model, ids, [[]])[0, 6:].double()
    for row, group in enumerate(GROUPS, 1):
        positions = chosen[group.tokens]
        alone = knockout_nll(model, ids, [[6 + s for s in positions]], heads=heads[row : row + 1])[0, 6:].double()
        after = [j for j in range(30) if j >= min(positions) + 2 and j not in positions]
        in_answer = [j for j in after if answer[j]]
        got = measured[group.key]
        assert got["positions"] == positions
        assert got["after_count"] == len(after) and got["answer_count"] == len(in_answer)
        assert got["after_sum"] == pytest.approx(float((alone - plain)[after].sum()), abs=1e-4)
        assert got["answer_sum"] == pytest.approx(float((alone - plain)[in_answer].sum()), abs=1e-4)
        assert got["after_sum"] != 0.0


def test_knockout_settings_are_checked():
    with pytest.raises(ValueError, match="count=0 is invalid"):
        KnockoutSettings(count=0)


def test_survey_knockout_end_to_end_and_resumed(tiny_arithmetic, tmp_path, capsys):  # noqa: F811
    args = ("--n", "6", "--batch-size", "3", "--max-new-tokens", "40", "--reports", "0", "--seed", "2")
    assert _run(tmp_path, tiny_arithmetic, *args) == 0  # a plain survey first
    assert _run(tmp_path, tiny_arithmetic, *args, "--knockout", "--knockout-count", "3") == 0
    out = tmp_path / "out"
    result = json.loads((out / "survey.json").read_text())
    assert result["run"]["measured_responses"] == 0  # the sampled batches were reused
    knockout = result["knockout"]
    assert knockout["settings"] == {"count": 3}
    assert [g["key"] for g in knockout["groups"]] == [g.key for g in GROUPS]
    assert knockout["responses"] + knockout["skipped"] == 6 and knockout["responses"] > 0
    anchors = knockout["groups"][0]
    assert anchors["after"]["tokens"] > 0 and anchors["after"]["mean"]["value"] is not None
    assert (out / "knockout.png").stat().st_size > 0
    page = (out / "index.html").read_text()
    assert "Are anchors causal? Knockout" in page and 'alt="knockout"' in page
    assert "Knockout: mean NLL increase" in (out / "table.md").read_text()
    printed = capsys.readouterr().out
    assert "Anchor tokens, global heads only" in printed
    files = sorted((out / "knockout").glob("*.json"))
    for r in (r for path in files for r in json.loads(path.read_text())["responses"]):
        if r["skipped"] is None:
            assert all(len(r["groups"][g.key]["positions"]) == 3 for g in GROUPS)

    assert _run(tmp_path, tiny_arithmetic, *args, "--knockout", "--knockout-count", "3") == 0
    again = json.loads((out / "survey.json").read_text())
    assert again["run"]["knockout_responses"] == 0 and again["knockout"] == knockout  # reused, same numbers
    assert _run(tmp_path, tiny_arithmetic, *args, "--knockout", "--knockout-count", "2") == 0
    other = json.loads((out / "survey.json").read_text())
    assert other["run"]["knockout_responses"] == 6 and other["knockout"]["settings"] == {"count": 2}


def test_global_heads_of_an_older_folder_are_captured_again(tiny_arithmetic, tmp_path):  # noqa: F811
    """A survey folder measured before the batches kept each response's global heads: the knockout captures them
    alone, and finds the heads the batched capture stored."""
    from lightning_reasonattn.models import load_model
    from lightning_reasonattn.survey import SurveySettings
    from lightning_reasonattn.survey.knockout import _global_heads

    args = ("--n", "3", "--batch-size", "3", "--max-new-tokens", "30", "--reports", "0")
    assert _run(tmp_path, tiny_arithmetic, *args) == 0
    model, _ = load_model(str(tiny_arithmetic))
    stored = json.loads((tmp_path / "out" / "batches" / "00000.json").read_text())["responses"]
    for record in stored:
        older = {k: v for k, v in record.items() if k != "global_heads"}
        assert sorted(_global_heads(model, older, SurveySettings())) == sorted(record["global_heads"])


def test_a_survey_with_nothing_to_knock_out_says_why(tiny_arithmetic, tmp_path, capsys):  # noqa: F811
    args = ("--n", "3", "--batch-size", "3", "--max-new-tokens", "8", "--reports", "0", "--knockout")
    assert _run(tmp_path, tiny_arithmetic, *args) == 0
    out = tmp_path / "out"
    knockout = json.loads((out / "survey.json").read_text())["knockout"]
    assert knockout["groups"] == [] and knockout["skipped"] == 3
    why = "none of the 3 responses has 8 tokens with an FAI"
    assert why in capsys.readouterr().out and why in (out / "table.md").read_text()
    assert why in (out / "index.html").read_text() and not (out / "knockout.png").exists()


@pytest.mark.parametrize("knockout", [3, "yes", 1.0])
def test_run_survey_refuses_a_knockout_that_is_not_one(knockout, tmp_path):
    from lightning_reasonattn.survey import SurveySettings, run_survey

    with pytest.raises(ValueError, match="pass True, False or KnockoutSettings"):
        run_survey(SurveySettings(n=1), tmp_path / "out", knockout=knockout)
    assert not (tmp_path / "out").exists()  # refused before the folder or the model
