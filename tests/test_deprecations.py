"""The spellings renamed in 0.2 ("one name per idea") still work for one release, each with one DeprecationWarning that
names the new spelling: Python keywords and attributes, moved names, survey flags, fit config keys and 0.1 checkpoints.

Each old spelling is checked against the new one (the same result), never against itself.
"""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch
import yaml

from lightning_reasonattn import RhythmCoupling, RhythmSettings, SurveySettings, cli
from lightning_reasonattn.functional import (
    coupling_counts,
    dominated_anchors,
    intro_tokens,
    local_peaks,
    response_counts,
    rhythm_from_attentions,
    select_tokens,
    waad_jumps,
)
from lightning_reasonattn.functional.coupling import shuffled_hits, within
from lightning_reasonattn.grpo.checkpoint import flat_settings
from lightning_reasonattn.grpo.renamed import translate_config_args
from lightning_reasonattn.grpo.settings import CreditSettings
from lightning_reasonattn.survey.table import count_responses

NAN = float("nan")
DEFAULTS = "lightning_reasonattn.functional.defaults"


def warns_once(new: str):
    """Assert that the block raises exactly one DeprecationWarning, and that it names ``new``."""
    return _Once(new)


class _Once:
    def __init__(self, new: str):
        self.new = new

    def __enter__(self):
        self.catcher = warnings.catch_warnings(record=True)
        self.caught = self.catcher.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self.catcher.__exit__(*exc)
        if exc[0] is not None:
            return False
        found = [w for w in self.caught if issubclass(w.category, DeprecationWarning)]
        assert len(found) == 1, [str(w.message) for w in found]
        assert f"use {self.new}" in str(found[0].message), str(found[0].message)
        return False


def signals():
    resp = torch.tensor([[False, True, True, True, True, True, True, True, True, True]])
    waad = torch.tensor([[NAN, 1.0, 9.0, 1.0, 1.0, 1.0, 8.0, 1.0, 2.0, 1.0]])
    fai = torch.tensor([[NAN, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.8, 0.2, NAN]])
    return waad, fai, resp


def assert_same(old, new):
    if isinstance(new, dict):
        assert old.keys() == new.keys()
        for key in new:
            torch.testing.assert_close(old[key], new[key], equal_nan=True)
    else:
        torch.testing.assert_close(old, new, equal_nan=True)


def test_renamed_keywords_of_the_math_warn_and_work():
    waad, fai, resp = signals()
    entropy = torch.rand(1, 10, generator=torch.Generator().manual_seed(0))
    jumps = waad_jumps(waad)
    anchors = fai > 0.5
    with warns_once("look_back="):
        old = dominated_anchors(waad, jumps, anchors, k=1)
    assert_same(old, dominated_anchors(waad, jumps, anchors, look_back=1))
    with warns_once("look_back="):
        old = intro_tokens(jumps, anchors, k=2)
    assert_same(old, intro_tokens(jumps, anchors, look_back=2))
    with warns_once("look_back="):
        old = select_tokens(waad, fai, 0.3, k=1)
    assert_same(old, select_tokens(waad, fai, 0.3, look_back=1))
    with warns_once("peak_fraction="):
        old = local_peaks(waad, top=0.5)
    assert_same(old, local_peaks(waad, peak_fraction=0.5))
    with warns_once("coupling_window="):
        old = within(anchors, k=2)
    assert_same(old, within(anchors, coupling_window=2))
    with warns_once("coupling_window="):
        old = shuffled_hits(anchors, anchors, resp, k=1, look="back")
    assert_same(old, shuffled_hits(anchors, anchors, resp, coupling_window=1, look="back"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = coupling_counts(waad, fai, resp, k=1, top=0.5)
    assert sorted(str(w.message).split(": use ")[1] for w in caught) == ["coupling_window=.", "peak_fraction=."]
    assert_same(old, coupling_counts(waad, fai, resp, coupling_window=1, peak_fraction=0.5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = response_counts(waad, fai, resp, entropy, k=1, top=0.5)
    assert len(caught) == 2
    assert_same(old, response_counts(waad, fai, resp, entropy, coupling_window=1, peak_fraction=0.5))


def test_both_spellings_at_once_are_refused():
    waad, fai, resp = signals()
    with pytest.raises(TypeError, match="got both k= and coupling_window="):
        coupling_counts(waad, fai, resp, k=1, coupling_window=2)
    with pytest.raises(TypeError, match="got both k= and look_back="):
        RhythmSettings(k=1, look_back=2)


def test_renamed_settings_keywords_and_attributes_warn_and_work():
    with warns_once("look_back="):
        old = RhythmSettings(k=2)
    assert old == RhythmSettings(look_back=2)
    with warns_once(".look_back"):
        assert old.k == 2
    with warns_once("look_back="):
        assert CreditSettings(k=1, q=0.3) == CreditSettings(look_back=1, q=0.3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = SurveySettings(k=1, coupling_k=5, peak_top=0.3)
    assert len(caught) == 3 and all(issubclass(w.category, DeprecationWarning) for w in caught)
    assert old == SurveySettings(look_back=1, coupling_window=5, peak_fraction=0.3)
    with warns_once(".coupling_window"):
        assert old.coupling_k == 5
    with warns_once(".peak_fraction"):
        assert old.peak_top == 0.3


def test_rhythm_coupling_takes_its_settings_one_way():
    waad, fai, resp = signals()
    attn = torch.ones(10, 10).tril()
    trace = rhythm_from_attentions((attn / attn.sum(-1, keepdim=True)).expand(1, 1, 2, 10, 10), resp, horizon=(1, 4))
    trace.waad, trace.fai = waad, fai
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = RhythmCoupling(k=1, top=0.5)
    assert len(caught) == 2
    new = RhythmCoupling(coupling_window=1, peak_fraction=0.5)
    for metric in (old, new):
        metric.update(trace)
    assert_same(old.compute(), new.compute())
    with warns_once(".coupling_window"):
        assert old.k == 1
    with warns_once(".peak_fraction"):
        assert old.top == 0.5
    from lightning_reasonattn import CouplingSettings

    same = RhythmCoupling(CouplingSettings(coupling_window=1, peak_fraction=0.5))
    same.update(trace)
    assert_same(same.compute(), new.compute())
    with pytest.raises(ValueError, match=r"coupling_window=2 given beside coupling="):
        RhythmCoupling(CouplingSettings(), coupling_window=2)
    with pytest.raises(ValueError, match=r"peak_fraction=0 is invalid"):
        RhythmCoupling(peak_fraction=0)


def test_renamed_trace_keyword_and_attribute():
    waad, fai, resp = signals()
    attn = torch.ones(10, 10).tril()
    maps = (attn / attn.sum(-1, keepdim=True)).expand(1, 1, 2, 10, 10)
    with warns_once("look_back="):
        old = rhythm_from_attentions(maps, resp, horizon=(1, 4), k=1)
    new = rhythm_from_attentions(maps, resp, horizon=(1, 4), look_back=1)
    assert_same(old.dominated, new.dominated) and new.look_back == 1
    with warns_once(".look_back"):
        assert new.k == 1


def test_count_responses_old_keywords():
    responses = [{"waad": [1.0, 9.0, 1.0, 8.0, 1.0], "fai": [0.1, 0.1, 0.9, 0.1, None], "entropy": [1.0] * 5}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = count_responses(responses, coupling_k=1, top=0.5)
    assert len(caught) == 2
    new = count_responses(responses, coupling_window=1, peak_fraction=0.5)
    assert old[0] == new[0] and torch.equal(old[1], new[1])


@pytest.mark.parametrize(
    ("old", "home", "new"),
    [
        ("lightning_reasonattn.functional:RhythmSettings", "lightning_reasonattn.settings", "RhythmSettings"),
        ("lightning_reasonattn.functional:SPEC", "lightning_reasonattn.settings", "SPEC"),
        ("lightning_reasonattn.functional.settings:RhythmSettings", "lightning_reasonattn.settings", "RhythmSettings"),
        ("lightning_reasonattn.functional.settings:SPEC", "lightning_reasonattn.settings", "SPEC"),
        ("lightning_reasonattn.functional.settings:RHYTHM_FIELDS", "lightning_reasonattn.settings", "RHYTHM_FIELDS"),
        ("lightning_reasonattn.functional.settings:COUPLING_K", DEFAULTS, "COUPLING_WINDOW"),
        ("lightning_reasonattn.functional.settings:PEAK_TOP", DEFAULTS, "PEAK_FRACTION"),
    ],
)  # fmt: skip
def test_moved_names_warn_and_are_the_same_objects(old, home, new):
    module, name = old.split(":")
    with warns_once(f"{home}.{new}"):
        found = getattr(importlib.import_module(module), name)
    assert found is getattr(importlib.import_module(home), new)


@pytest.mark.parametrize(
    ("flag", "new", "field", "value"),
    [("--k", "--coupling-window", "coupling_window", 1), ("--peak-top", "--peak-fraction", "peak_fraction", 0.5),
     ("--boot", "--n-boot", "n_boot", 300)],
)  # fmt: skip
def test_renamed_survey_flags_warn_and_set_the_new_setting(flag, new, field, value, capsys):
    with warns_once(new):
        args = cli.build_parser().parse_args(["survey", flag, str(value)])
    assert getattr(args, field) == value
    assert getattr(cli.build_parser().parse_args(["survey", new, str(value)]), field) == value
    with pytest.raises(SystemExit):
        cli.main(["survey", "--help"])
    shown = capsys.readouterr().out
    assert new in shown and f"{flag} " not in shown  # the old spelling works but is not offered


def _old_config(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"model": {"credit": {"strategy": "coupled", "k": 2, "q": 0.3}}}))
    return path


def test_fit_config_key_credit_k_is_read_as_look_back(tmp_path):
    path = _old_config(tmp_path)
    with warns_once("model.credit.look_back"):
        argv = translate_config_args(["--config", str(path), "--trainer.max_steps", "1"], "fit")
    assert yaml.safe_load(argv[1])["model"]["credit"] == {"strategy": "coupled", "look_back": 2, "q": 0.3}
    assert argv[2:] == ["--trainer.max_steps", "1"]
    with warns_once("--model.credit.look_back"):
        assert translate_config_args(["--model.credit.k=3"], "fit") == ["--model.credit.look_back=3"]
    untouched = tmp_path / "new.yaml"
    untouched.write_text(yaml.safe_dump({"model": {"credit": {"look_back": 2}}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert translate_config_args(["--config", str(untouched)], "fit") == ["--config", str(untouched)]


def test_fit_parses_an_old_config(tmp_path, capsys):
    path = _old_config(tmp_path)
    with warns_once("model.credit.look_back"), pytest.raises(SystemExit):
        cli.main(["fit", "--config", str(path), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["credit"]["look_back"] == 2 and "k" not in printed["model"]["credit"]


def test_a_checkpoint_of_0_1_keeps_its_look_back():
    flat = flat_settings({"credit": {"strategy": "coupled", "k": 2}})
    assert flat["credit.look_back"] == 2 and "credit.k" not in flat


def test_a_survey_folder_of_0_1_resumes():
    """The fingerprint of the settings that decide a batch is unchanged by the renames (values of 0.1)."""
    assert SurveySettings().fingerprint() == "ffb70316be8223c5"
    settings = SurveySettings(temperature=0.7, top_k=5, layers=[1, 2], horizon=(4, 40), max_new_tokens=64)
    assert settings.fingerprint() == "232b3dd2473d8c4e"


@pytest.mark.parametrize("callback", ["AttentionRhythmMonitor", "RhythmReport"])
def test_the_callbacks_old_look_back_keyword(callback):
    import lightning_reasonattn

    cls = getattr(lightning_reasonattn, callback)
    with warns_once("look_back="):
        old = cls(k=2)
    assert old.rhythm == cls(look_back=2).rhythm == RhythmSettings(look_back=2)
