"""``reasonattn survey`` on the command line: its arguments and handler (the work is in
[`run_survey`][lightning_reasonattn.survey.run.run_survey])."""

from __future__ import annotations

import sys
from pathlib import Path

from ..arguments import fraction, int_in, layers_arg, non_negative_float, random_seed
from ..models import ModelLoadError
from ..outputs import OutputError
from .knockout import KnockoutSettings
from .page import format_survey_table
from .run import BATCHES, PROMPT_SETS, run_survey
from .settings import CHAT_MODES, MAX_COUNT, SurveySettings

count = int_in(1, MAX_COUNT)
count_or_zero = int_in(0, MAX_COUNT)


def add_survey_parser(subparsers) -> None:
    """Register ``reasonattn survey`` on the ``reasonattn`` sub-parsers."""
    sv = subparsers.add_parser(
        "survey",
        help="the coupling statistics of the rhythm over many sampled responses, with confidence intervals",
        description="Sample one response per prompt, measure the rhythm of each batch in one forward pass, and "
        "report the paper's coupling statistics (entropy at WAAD peaks, FAI peaks after WAAD peaks vs shuffled "
        "positions, ...) with bootstrap confidence intervals over responses and the paper's values beside them. "
        "Writes survey.json, table.md, profiles.png, index.html and per-response reports to --out; a re-run with "
        "the same --out resumes.",
    )
    sv.add_argument("--model", default=None, help="checkpoint folder or hub name (default: the embedded model)")
    sv.add_argument(
        "--prompts",
        default="arithmetic",
        help=f"a built-in set ({', '.join(PROMPT_SETS)}) or a .jsonl/.json/.parquet file (default arithmetic)",
    )
    sv.add_argument("--prompt-column", default="prompt", help="the prompt column of a file (default prompt)")
    sv.add_argument("--n", type=count, default=128, help="number of prompts, one response each (default 128)")
    sv.add_argument("--max-new-tokens", type=count, default=200, help="response length limit (default 200)")
    sv.add_argument(
        "--temperature", type=non_negative_float, default=1.0, help="sampling temperature, 0 = greedy (default 1)"
    )
    sv.add_argument("--top-p", type=fraction, default=1.0, help="nucleus sampling cut (default 1: off)")
    sv.add_argument("--top-k", type=count_or_zero, default=0, help="top-k sampling cut (default 0: off)")
    sv.add_argument("--batch-size", type=count, default=8, help="prompts per batch (default 8)")
    sv.add_argument("--seed", type=random_seed, default=0, help="seed of the prompts and of the sampling (default 0)")
    sv.add_argument(
        "--chat", choices=CHAT_MODES, default="auto", help="wrap prompts in the chat template (default: if it has one)"
    )
    sv.add_argument(
        "--layers", type=layers_arg, default="middle", help="'middle' (default), 'all' or indices such as 10,12,14"
    )
    sv.add_argument("--k", type=count_or_zero, default=3, help="coupling window in tokens (default 3)")
    sv.add_argument(
        "--peak-top", type=fraction, default=0.2, help="peaks: local maxima among this top fraction (default 0.2)"
    )
    sv.add_argument("--boot", type=count, default=2000, help="bootstrap resamples (default 2000)")
    sv.add_argument(
        "--reports", type=count_or_zero, default=5, help="per-response reports of the N most and least coupled"
    )
    sv.add_argument(
        "--knockout",
        action="store_true",
        help="also hide each response's top anchors, and controls of the same count, from the later tokens and "
        "measure what the rest of the response loses (are anchors causal?)",
    )
    sv.add_argument(
        "--knockout-count", type=count, default=4, help="tokens knocked out per group and response (default 4)"
    )
    sv.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto", help="default: cuda if available")
    sv.add_argument("--out", default="reasonattn_out/survey", help="output folder (default reasonattn_out/survey)")
    sv.set_defaults(handler=survey_command, kept=survey_kept)


def survey_kept(args) -> str:
    """What an interrupted survey keeps (for the one line the command prints)."""
    done = len(list((Path(args.out) / BATCHES).glob("*.json")))
    return f"the {done} finished batch(es) in {Path(args.out) / BATCHES} are kept; run the same command again to resume"


def survey_command(args) -> int:
    """Run ``reasonattn survey`` from parsed arguments; print the table."""
    try:
        settings = SurveySettings(
            model=args.model,
            prompts=args.prompts,
            prompt_column=args.prompt_column,
            n=args.n,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            batch_size=args.batch_size,
            seed=args.seed,
            chat=args.chat,
            layers=args.layers,
            coupling_k=args.k,
            peak_top=args.peak_top,
            n_boot=args.boot,
            reports=args.reports,
            device=args.device,
        )
        knockout = KnockoutSettings(count=args.knockout_count) if args.knockout else False
        result = run_survey(settings, args.out, knockout=knockout)
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
