"""The ``reasonattn`` command line.

Subcommands:

* ``analyze``: generate a response to a prompt and print the rhythm of that response token by token
  (WAAD, its jumps, FAI, and the preplan / anchor / dominated / introductory marks), then a summary.
* ``survey``: the coupling statistics of the rhythm over many sampled responses (``survey/command.py``).
* ``fit``, ``validate``: RL fine-tuning with RhythmGRPO and its held-out reward (LightningCLI, in ``grpo/cli.py``).
* ``export``: the LoRA adapter of a checkpoint as a peft folder.

Errors a user can fix print one line, ``reasonattn COMMAND: error: ...``; ``--debug`` (anywhere on the command
line) or ``REASONATTN_DEBUG=1`` shows the traceback instead. A command stopped by Ctrl-C or SIGTERM prints one line
saying what is kept and exits with ``128 + signum``; one whose reader closed the pipe (``| head``) stops quietly with
141; a character the terminal cannot show is printed as an escape (``\\u2019``). See ``interrupts.py``.

Example:
    $ reasonattn analyze --max-new-tokens 64 --json rhythm.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .arguments import layers_arg, positive_int, random_seed
from .files import not_utf8
from .interrupts import Terminated, exit_status, quiet_broken_pipe, signal_name, sigterm_raises, tolerant_streams
from .outputs import OutputError, write_whole
from .settings import COMMAND_DEFAULTS
from .survey.command import add_survey_parser

# Each command's own modules (Lightning, transformers, matplotlib...) are imported when it runs, so that
# `reasonattn --help` and a mistyped option answer at once.

LIGHTNING_COMMANDS = {  # their arguments belong to LightningCLI (grpo/cli.py); here they are only listed
    "fit": "RL fine-tuning with rhythm credit: reasonattn fit --config FILE.yaml (see reasonattn fit --help)",
    "validate": "held-out reward of a checkpoint: reasonattn validate --config FILE.yaml [--ckpt_path CKPT]",
    "export": "the LoRA adapter of a checkpoint as a peft folder: reasonattn export CHECKPOINT OUT_DIR",
}
DEBUG_ENV = "REASONATTN_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``reasonattn`` with all its subcommands."""
    parser = argparse.ArgumentParser(
        prog="reasonattn", description="See the preplan-and-anchor attention rhythm of a causal language model."
    )
    parser.epilog = (
        f"Errors print one line and exit with status 2 (analyze: 1); --debug or {DEBUG_ENV}=1 shows the traceback."
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (it may also come after the command)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    an = sub.add_parser(
        "analyze",
        help="generate a response and print its per-token rhythm",
        description="Generate a response to a prompt, then print WAAD, FAI and the preplan/anchor tokens of "
        "every response token, measured in one forward pass over prompt + response.",
    )
    an.add_argument(
        "--model", default=None, help="checkpoint folder or hub name (default: the embedded SmolLM2-135M-Instruct)"
    )
    an.add_argument("--prompt", default=None, help="user message (default: a train word problem)")
    limit = COMMAND_DEFAULTS["analyze"].max_new_tokens
    an.add_argument(
        "--max-new-tokens", type=positive_int, default=limit, help=f"response length limit (default {limit})"
    )
    an.add_argument(
        "--layers", type=layers_arg, default="middle", help="'middle' (default), 'all' or indices such as 10,12,14"
    )
    an.add_argument("--seed", type=random_seed, default=0, help="random seed for --sample (default 0)")
    mode = an.add_mutually_exclusive_group()
    mode.add_argument("--greedy", dest="sample", action="store_false", help="greedy decoding (default)")
    mode.add_argument(
        "--sample", dest="sample", action="store_true", help="sample from the full distribution at temperature 1"
    )
    an.set_defaults(sample=False)
    an.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto", help="default: cuda if available")
    an.add_argument("--json", metavar="PATH", default=None, help="also write the per-token data as JSON to PATH")
    an.add_argument(
        "--report",
        metavar="DIR",
        default="reasonattn_out/analyze",
        help="write the rhythm report (heatmaps.png, curves.png, report.html) to DIR (default reasonattn_out/analyze)",
    )
    an.add_argument("--no-report", dest="report", action="store_const", const=None, help="write no report")
    an.set_defaults(handler=analyze, kept=lambda args: "no file was half-written (each is written whole or not at all)")
    add_survey_parser(sub)
    for name, text in LIGHTNING_COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)  # main() hands these to grpo/cli.py before parsing
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``reasonattn`` console script.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success; 2 when ``fit``, ``validate`` or ``export`` reported an error (a setting,
        a missing file, a bad checkpoint) in one line; 1 when ``analyze`` did.

    Raises:
        SystemExit: invalid arguments (status 2, with a usage message) or ``--help``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")
    argv = [arg for arg in argv if arg != "--debug"]
    tolerant_streams()
    try:
        if argv and argv[0] in LIGHTNING_COMMANDS:  # LightningCLI owns their arguments
            if os.getcwd() not in sys.path:  # as `trl grpo`: reward functions may live in ./my_rewards.py
                sys.path.insert(0, os.getcwd())
            from .grpo.cli import run_command

            status = run_command(argv[0], argv[1:], debug=debug)
        else:
            status = _run_handler(build_parser().parse_args(argv), debug)
        if sys.stdout is not None:  # (None when the shell closed it: `>&-`; print() then writes nothing)
            sys.stdout.flush()  # a closed pipe shows here, not as Python's "Exception ignored" at exit
        return status
    except BrokenPipeError:  # `reasonattn analyze ... | head -1`: the reader has all it wanted
        return quiet_broken_pipe()


def _run_handler(args: argparse.Namespace, debug: bool) -> int:
    """Run ``analyze`` or ``survey``; a Ctrl-C or SIGTERM ends it with one line saying what is kept."""
    try:
        with sigterm_raises():
            return args.handler(args)
    except (KeyboardInterrupt, Terminated) as err:
        if debug:
            raise
        print(f"reasonattn {args.command}: interrupted by {signal_name(err)}: {args.kept(args)}.", file=sys.stderr)
        return exit_status(err)


def _fail(command: str, message: str) -> int:
    print(f"reasonattn {command}: error: {message}", file=sys.stderr)
    return 1


def analyze(args: argparse.Namespace) -> int:
    """Run ``reasonattn analyze``: load, generate, capture, print (and write JSON)."""
    from .analysis import (
        DEFAULT_PROMPT,
        format_summary,
        format_table,
        generate,
        prompt_ids,
        summarize,
        token_rows,
        write_analysis_report,
    )
    from .capture import capture_rhythm
    from .functional import select_layers
    from .models import DEFAULT_MODEL, ModelLoadError, load_model
    from .report.escape import printable
    from .rollout.context import ContextLengthError, check_context

    if args.prompt is None:
        args.prompt = DEFAULT_PROMPT
    model_name = args.model or DEFAULT_MODEL
    bad_text = not_utf8(args.prompt)
    if bad_text:
        return _fail(
            "analyze",
            f"--prompt holds bytes that are not UTF-8 ({bad_text}): pass the prompt as UTF-8 text (a Latin-1 "
            "terminal or file? convert it, e.g. with iconv -f latin1 -t utf-8).",
        )
    if args.json and not Path(args.json).resolve().parent.is_dir():
        return _fail("analyze", f"--json {args.json!r}: its folder does not exist; create it or pick another path.")
    try:
        model, tokenizer = load_model(args.model, device=args.device)
        layers = select_layers(model.config.get_text_config().num_hidden_layers, args.layers)
    except (ModelLoadError, ValueError) as exc:
        return _fail("analyze", str(exc))

    prompt_tokens = prompt_ids(tokenizer, args.prompt).shape[1]
    if prompt_tokens == 0:
        return _fail(
            "analyze",
            f"--prompt {args.prompt!r} gives no tokens: this model's tokenizer has no chat template to wrap it in and "
            "adds no start token. Pass a non-empty prompt.",
        )
    try:
        check_context(model, prompt_tokens, args.max_new_tokens, setting="--max-new-tokens")
    except ContextLengthError as exc:
        return _fail("analyze", str(exc))
    input_ids, response_mask = generate(
        model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens, sample=args.sample, seed=args.seed
    )
    trace = capture_rhythm(model, input_ids, response_mask=response_mask, layers=layers).to("cpu")
    input_ids = input_ids.cpu()
    rows = token_rows(trace, tokenizer, input_ids)
    summary = summarize(trace, rows)
    response = tokenizer.decode(input_ids[0, response_mask[0].cpu()].tolist())

    print(f"prompt: {printable(args.prompt)}")
    print(f"response: {printable(response)}")
    print()
    print(format_table(rows))
    print()
    print(format_summary(model_name, summary))
    if args.json:
        record = {
            "model": model_name,
            "prompt": args.prompt,
            "response": response,
            "input_ids": input_ids[0].tolist(),
            "prompt_length": int((~trace.response_mask[0]).sum()),
            "sample": args.sample,
            "seed": args.seed,
            "summary": summary,
            "tokens": rows,
        }
        try:
            write_whole(args.json, json.dumps(record, indent=1, allow_nan=False))
        except OutputError as exc:
            return _fail("analyze", f"--json: {exc} Pass a writable file path.")
        print(f"per-token data written to {args.json}", file=sys.stderr)
    if args.report:
        try:
            paths = write_analysis_report(model, tokenizer, input_ids, trace, out_dir=args.report, title=model_name)
        except OutputError as exc:
            return _fail("analyze", f"--report: {exc} Pass a writable folder.")
        except OSError as exc:
            return _fail("analyze", f"cannot write the report to {args.report!r} ({exc}): pass a writable folder.")
        shown = ", ".join(str(p) for p in paths.values())
        print(f"report written: {shown} (open report.html in a browser)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
