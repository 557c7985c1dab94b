"""``reasonattn survey``: the coupling statistics of the rhythm over many sampled responses (the paper's Table 2).

Modules: ``settings`` ([`SurveySettings`][lightning_reasonattn.survey.settings.SurveySettings], what decides the
numbers), ``run`` (sample, measure each batch in one forward, resume, write), ``table`` (the statistics with
bootstrap intervals), ``knockout`` (hiding anchors and controls from later tokens: what the rest loses), ``page``
(the tables as text and Markdown, the PNGs, the HTML page) and ``command`` (its command line).

Python use::

    from lightning_reasonattn.survey import SurveySettings, run_survey

    result = run_survey(SurveySettings(prompts="countdown", n=256), "survey_out")
    print(result["table"][0])
"""

from typing import TYPE_CHECKING

from .settings import SurveySettings

if TYPE_CHECKING:
    from .knockout import KnockoutSettings
    from .run import PROMPT_SETS, run_survey

__all__ = ["PROMPT_SETS", "KnockoutSettings", "SurveySettings", "run_survey"]

_LAZY = {"PROMPT_SETS": "run", "run_survey": "run", "KnockoutSettings": "knockout"}


def __getattr__(name: str):
    # The run and the knockout (models, capture, report) are imported on first use, so that the survey's flags
    # (`reasonattn --help`) need the settings only.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
