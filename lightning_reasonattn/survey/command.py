"""``reasonattn survey`` on the command line: its arguments and handler (the work is in
[`run_survey`][lightning_reasonattn.survey.run.run_survey]).

The flags are built from the fields of [`SurveySettings`][lightning_reasonattn.survey.settings.SurveySettings], as
LightningCLI builds its options: one ``--field-name`` per field, with the field's default and its documented meaning;
a field added to the settings is a flag at once. Only how some texts are parsed is written here.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from ..arguments import (
    add_dataclass_flags,
    add_renamed_flags,
    fraction,
    int_in,
    int_pair,
    layers_arg,
    non_negative_float,
    random_seed,
)
from ..functional._checks import MAX_INTEGER
from ..outputs import OutputError
from ..settings import MAX_COUNT
from ..tasks.table import TASKS
from .settings import CHAT_MODES, SurveySettings

count = int_in(1, MAX_COUNT)
count_or_zero = int_in(0, MAX_COUNT)
size = int_in(1, MAX_INTEGER)

FLAG_TYPES = {
    "n": count,
    "max_new_tokens": count,
    "temperature": non_negative_float,
    "top_p": fraction,
    "top_k": count_or_zero,
    "batch_size": count,
    "seed": random_seed,
    "layers": layers_arg,
    "window": size,
    "horizon": int_pair,
    "head_fraction": fraction,
    "q": fraction,
    "look_back": size,
    "block_size": size,
    "coupling_window": count_or_zero,
    "peak_fraction": fraction,
    "num_buckets": count,
    "n_boot": count,
    "level": fraction,
    "reports": count_or_zero,
}
"""How the text of a flag becomes its value, where more than the field's type: bounds are checked as the text is
parsed (a usage error, exit status 2); everything else is checked by ``SurveySettings`` (one line, exit status 1)."""

FLAG_CHOICES = {"chat": CHAT_MODES, "device": ("cpu", "cuda", "auto")}

RENAMED_FLAGS = {"--k": "--coupling-window", "--peak-top": "--peak-fraction", "--boot": "--n-boot"}
"""Flags of 0.1 still taken, with a deprecation warning, until 0.3."""


def add_survey_parser(subparsers) -> None:
    """Register ``reasonattn survey`` on the ``reasonattn`` sub-parsers."""
    sv = subparsers.add_parser(
        "survey",
        help="the coupling statistics of the rhythm over many sampled responses, with confidence intervals",
        description="Sample one response per prompt, measure the rhythm of each batch in one forward pass, and "
        "report the paper's coupling statistics (entropy at WAAD peaks, FAI peaks after WAAD peaks vs shuffled "
        "positions, ...) with bootstrap confidence intervals over responses and the paper's values beside them. "
        "Writes survey.json, table.md, profiles.png, index.html and per-response reports to --out; a re-run with "
        f"the same --out resumes. Built-in prompt sets: {', '.join(TASKS)}; --layers: 'middle', 'all' or indices "
        "such as 10,12,14; --horizon: lo,hi.",
    )
    actions = add_dataclass_flags(sv, SurveySettings, FLAG_TYPES, FLAG_CHOICES)
    add_renamed_flags(sv, RENAMED_FLAGS, actions)
    sv.add_argument(
        "--knockout",
        action="store_true",
        help="also hide each response's top anchors, and controls of the same count, from the later tokens and "
        "measure what the rest of the response loses (are anchors causal?)",
    )
    sv.add_argument(
        "--knockout-count", type=count, default=4, help="tokens knocked out per group and response (default 4)"
    )
    sv.add_argument("--out", default="reasonattn_out/survey", help="output folder (default reasonattn_out/survey)")
    sv.set_defaults(handler=survey_command, kept=survey_kept)


def survey_kept(args) -> str:
    """What an interrupted survey keeps (for the one line the command prints)."""
    from .run import BATCHES

    done = len(list((Path(args.out) / BATCHES).glob("*.json")))
    return f"the {done} finished batch(es) in {Path(args.out) / BATCHES} are kept; run the same command again to resume"


def survey_command(args) -> int:
    """Run ``reasonattn survey`` from parsed arguments; print the table."""
    from ..models import ModelLoadError
    from .knockout import KnockoutSettings
    from .page import format_survey_table
    from .run import run_survey

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SurveySettings)}  # (one flag per field)
    try:
        knockout = KnockoutSettings(count=args.knockout_count) if args.knockout else False
        result = run_survey(SurveySettings(**values), args.out, knockout=knockout)
    except (ModelLoadError, ValueError, FileNotFoundError, ImportError) as exc:
        print(f"reasonattn survey: error: {exc}", file=sys.stderr)
        return 1
    except OutputError as exc:  # a full disk...: the batches finished so far are whole
        print(f"reasonattn survey: error: --out: {exc} Finished batches are kept for a re-run.", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"reasonattn survey: error: cannot write to --out {args.out!r} ({exc}).", file=sys.stderr)
        return 1
    print(format_survey_table(result))
    print(f"survey written to {args.out} (open {Path(args.out) / 'index.html'} in a browser)")
    return 0
