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

from .knockout import KnockoutSettings
from .run import PROMPT_SETS, run_survey
from .settings import SurveySettings

__all__ = ["PROMPT_SETS", "KnockoutSettings", "SurveySettings", "run_survey"]
