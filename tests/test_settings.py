"""The rhythm's settings: the spec's defaults in one place, used by every function and settings class that has them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from lightning.pytorch.utilities.exceptions import MisconfigurationException

import lightning_reasonattn
from lightning_reasonattn import AttentionRhythmMonitor, RhythmReport, RhythmSettings, SurveySettings
from lightning_reasonattn.functional.defaults import COUPLING_WINDOW, PEAK_FRACTION
from lightning_reasonattn.grpo.settings import CreditSettings
from lightning_reasonattn.settings import SPEC

# docs/rhythm.md, "Numbers the paper reports": W = 10, horizon (10, 100), q = 0.4, 5 middle layers, 30% split;
# look-back 3 (the paper allows 1 to 3). Written out here, not read from the code.
SPEC_VALUES = {"layers": "middle", "window": 10, "horizon": (10, 100), "head_fraction": 0.3, "q": 0.4, "look_back": 3}


def test_the_defaults_are_the_spec():
    assert {name: getattr(SPEC, name) for name in SPEC_VALUES} == SPEC_VALUES
    assert RhythmSettings() == SPEC and SPEC.block_size == 128
    assert (COUPLING_WINDOW, PEAK_FRACTION) == (3, 0.2)  # docs/rhythm.md, "Coupling statistics"


def public_functions():
    """Every function and method of the package (its own, not imported ones)."""
    for info in pkgutil.walk_packages(lightning_reasonattn.__path__, "lightning_reasonattn."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module):
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{module.__name__}.{obj.__qualname__}", obj
            elif inspect.isclass(obj):
                for name, member in vars(obj).items():
                    if inspect.isfunction(member):
                        yield f"{module.__name__}.{obj.__qualname__}.{name}", member


# A parameter of these names is the knob wherever it appears, with the spec's default or None ("taken from elsewhere":
# credit_gamma's q from the trace, rhythm_from_attentions' layer labels, a recorder's trace() the capture's).
KNOBS = {
    "window": 10,
    "horizon": (10, 100),
    "head_fraction": 0.3,
    "q": 0.4,
    "look_back": 3,
    "layers": "middle",
    "block_size": 128,
    "coupling_window": 3,
    "peak_fraction": 0.2,
}


def test_every_default_of_a_rhythm_knob_is_the_spec():
    seen, wrong = 0, []
    for name, fn in public_functions():
        for param in inspect.signature(fn).parameters.values():
            if param.name in KNOBS and param.default not in (inspect.Parameter.empty, None):
                seen += 1
                if param.default != KNOBS[param.name]:
                    wrong.append(f"{name}({param.name}={param.default!r})")
    assert seen >= 15, seen  # the walk found the package's signatures
    assert not wrong, wrong


def test_credit_and_survey_settings_are_rhythm_settings():
    for cls in (CreditSettings, SurveySettings):
        settings = cls()
        assert isinstance(settings, RhythmSettings) and settings.rhythm() == SPEC
    credit = CreditSettings(horizon=[4, 40], q=0.25)  # YAML gives lists
    assert credit.rhythm() == RhythmSettings(horizon=(4, 40), q=0.25)
    assert credit.capture_kwargs() == {**SPEC.capture_kwargs(), "horizon": (4, 40), "q": 0.25}
    assert SurveySettings().coupling_window == COUPLING_WINDOW and SurveySettings().peak_fraction == PEAK_FRACTION


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "window=0"),
        ({"horizon": (5, 2)}, "horizon=(5, 2)"),
        ({"q": 1.5}, "q=1.5"),
        ({"head_fraction": 0}, "head_fraction=0"),
        ({"look_back": 0}, "look_back=0"),
        ({"layers": []}, "layers=[]"),
        ({"layers": "first"}, "layers='first'"),
        ({"block_size": 0}, "block_size=0"),
    ],
)
def test_bad_rhythm_settings_are_refused_when_built(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        RhythmSettings(**kwargs)
    with pytest.raises(ValueError, match="credit." + message.replace("[", r"\[").replace("(", r"\(")[:12]):
        CreditSettings(**kwargs)


@pytest.mark.parametrize("callback", [AttentionRhythmMonitor, RhythmReport])
def test_callbacks_take_the_rhythm_one_way_and_check_it_when_built(callback):
    assert callback(horizon=(4, 20)).rhythm == RhythmSettings(horizon=(4, 20))
    assert callback(rhythm=RhythmSettings(q=0.2)).rhythm == RhythmSettings(q=0.2)
    assert callback().rhythm == SPEC
    with pytest.raises(MisconfigurationException, match=r"window=0"):
        callback(window=0)
    with pytest.raises(MisconfigurationException, match=r"horizon given beside rhythm="):
        callback(rhythm=RhythmSettings(), horizon=(4, 20))
    with pytest.raises(MisconfigurationException, match=r"rhythm=\{'q': 0.2\}"):
        callback(rhythm={"q": 0.2})
