"""The ``reasonattn`` command line.

Subcommands:

* ``analyze``: generate a response to a prompt and print the rhythm of that response token by token
  (WAAD, its jumps, FAI, and the preplan / anchor / dominated / introductory marks), then a summary.
* ``survey``: the coupling statistics of the rhythm over many sampled responses (``survey_cli.py``).
* ``fit``, ``validate``: RL fine-tuning with RhythmGRPO and its held-out reward (LightningCLI, in ``grpo/cli.py``).
* ``export``: the LoRA adapter of a checkpoint as a peft folder.

Errors a user can fix print one line, ``reasonattn COMMAND: error: ...``; ``--debug`` (anywhere on the command
line) or ``REASONATTN_DEBUG=1`` shows the traceback instead.

Example:
    $ reasonattn analyze --max-new-tokens 64 --json rhythm.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch

DEFAULT_PROMPT = (
    "A train leaves a station at 2:00 pm at 60 km per hour. A second train leaves the same station at "
    "3:00 pm on the same track at 90 km per hour. At what time does the second train catch up with the "
    "first? Think step by step."
)
MARKS = (("preplan", "P"), ("anchor", "A"), ("dominated", "D"), ("intro", "I"))
LIGHTNING_COMMANDS = {  # their arguments belong to LightningCLI (grpo/cli.py); here they are only listed
    "fit": "RL fine-tuning with rhythm credit: reasonattn fit --config FILE.yaml (see reasonattn fit --help)",
    "validate": "held-out reward of a checkpoint: reasonattn validate --config FILE.yaml [--ckpt_path CKPT]",
    "export": "the LoRA adapter of a checkpoint as a peft folder: reasonattn export CHECKPOINT OUT_DIR",
}
DEBUG_ENV = "REASONATTN_DEBUG"
TOKEN_WIDTH = 16


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def _layers(text: str) -> str | list[int]:
    """``middle``, ``all`` or comma-separated layer indices (negative ones count from the end)."""
    if text in ("middle", "all"):
        return text
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 'middle', 'all' or comma-separated layer indices such as 10,12,14"
        ) from None


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
    an.add_argument("--prompt", default=DEFAULT_PROMPT, help="user message (default: a train word problem)")
    an.add_argument("--max-new-tokens", type=_positive_int, default=96, help="response length limit (default 96)")
    an.add_argument(
        "--layers", type=_layers, default="middle", help="'middle' (default), 'all' or indices such as 10,12,14"
    )
    an.add_argument("--seed", type=int, default=0, help="random seed for --sample (default 0)")
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
    an.set_defaults(handler=analyze)
    from .survey_cli import add_survey_parser

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
    if argv and argv[0] in LIGHTNING_COMMANDS:  # LightningCLI owns their arguments
        from .grpo.cli import run_command

        if os.getcwd() not in sys.path:  # as `trl grpo`: reward functions may live in ./my_rewards.py
            sys.path.insert(0, os.getcwd())
        return run_command(argv[0], argv[1:], debug=debug)
    args = build_parser().parse_args(argv)
    return args.handler(args)


def _fail(command: str, message: str) -> int:
    print(f"reasonattn {command}: error: {message}", file=sys.stderr)
    return 1


def prompt_ids(tokenizer, prompt: str) -> torch.Tensor:
    """``[1, P]`` token ids of ``prompt``, wrapped in the chat template when the tokenizer has one."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        return tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    return tokenizer(prompt, return_tensors="pt").input_ids


def generate(model, tokenizer, prompt: str, max_new_tokens: int, sample: bool = False, seed: int = 0):
    """Generate a response; return ``(input_ids [1, N], response_mask [1, N])`` for prompt + response."""
    ids = prompt_ids(tokenizer, prompt).to(model.device)
    # Sampling draws from the full distribution at temperature 1, as RL rollouts do (no top-k / top-p cut).
    decoding = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0} if sample else {"do_sample": False}
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            **decoding,
        )
    response_mask = torch.zeros_like(out, dtype=torch.bool)
    response_mask[:, ids.shape[1] :] = True
    return out, response_mask


def _escape_char(ch: str) -> str:
    if ch.isprintable():
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """Model output made safe for a terminal: control characters (escape sequences too) shown escaped."""
    return "".join(ch if ch in "\n\t" else _escape_char(ch) for ch in text)


def escape_token(text: str, width: int = TOKEN_WIDTH) -> str:
    """One-line, printable form of a token: control characters escaped, cut to ``width`` characters."""
    special = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}
    shown = "".join(special.get(ch) or _escape_char(ch) for ch in text)
    return shown if len(shown) <= width else shown[: width - 3] + "..."


def _num(value: float) -> float | None:
    return None if math.isnan(value) else value


def token_rows(trace, tokenizer, input_ids: torch.Tensor) -> list[dict]:
    """Per-token data of the response of sequence 0: position, id, text, WAAD, delta, FAI and the four marks."""
    ids = input_ids[0].tolist()
    rows = []
    for pos in trace.response_mask[0].nonzero().flatten().tolist():
        row = {"position": pos, "token_id": ids[pos], "text": tokenizer.decode([ids[pos]])}
        for key, field in (("waad", "waad"), ("delta", "waad_jumps"), ("fai", "fai")):
            row[key] = _num(float(getattr(trace, field)[0, pos]))
        for name, _ in MARKS:
            row[name] = bool(getattr(trace, name)[0, pos])
        rows.append(row)
    return rows


def _heads(trace, which: str) -> list[str]:
    n_heads = trace.head_distance.shape[-1]
    return [f"L{trace.layers[i // n_heads]}h{i % n_heads}" for i in getattr(trace, which)[0].tolist()]


def summarize(trace, rows: list[dict]) -> dict:
    """Summary of one analysed response: means over the response, token sets, head groups."""

    def mean(key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return sum(values) / len(values) if values else None

    def tokens(mark: str) -> list[dict]:
        return [{"position": r["position"], "text": r["text"]} for r in rows if r[mark]]

    return {
        "layers": list(trace.layers),
        "response_tokens": len(rows),
        "mean_waad": mean("waad"),
        "mean_fai": mean("fai"),
        **{name: tokens(name) for name, _ in MARKS},
        "local_heads": _heads(trace, "local_heads"),
        "global_heads": _heads(trace, "global_heads"),
    }


def format_table(rows: list[dict]) -> str:
    """The per-token table as text."""

    def num(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [f"{'pos':>5}  {'token':<{TOKEN_WIDTH}}  {'WAAD':>7}  {'delta':>7}  {'FAI':>7}  marks"]
    for r in rows:
        marks = "".join(letter if r[name] else "." for name, letter in MARKS)
        lines.append(
            f"{r['position']:>5}  {escape_token(r['text']):<{TOKEN_WIDTH}}  {num(r['waad'], 3):>7}  "
            f"{num(r['delta'], 3):>7}  {num(r['fai'], 4):>7}  {marks}"
        )
    lines.append("marks: P preplan, A anchor, D locally dominated anchor, I introductory token")
    return "\n".join(lines)


def format_summary(model_name: str, summary: dict) -> str:
    """The summary block as text."""

    def listing(items: list[str], width: int = 100) -> str:
        lines, line = [], ""
        for item in items:  # wrap between items only, never inside a token
            if line and len(line) + len(item) + 2 > width:
                lines.append(line + ",")
                line = ""
            line = f"{line}, {item}" if line else item
        return "\n".join("  " + text for text in [*lines, line])

    def mean(value: float | None, digits: int) -> str:
        return "n/a (response too short)" if value is None else f"{value:.{digits}f}"

    lines = [
        f"model: {model_name}",
        f"layers: {', '.join(map(str, summary['layers']))}",
        f"response tokens: {summary['response_tokens']}",
        f"mean WAAD: {mean(summary['mean_waad'], 3)}",
        f"mean FAI: {mean(summary['mean_fai'], 4)}",
    ]
    for name, label in (("preplan", "preplan tokens"), ("anchor", "anchor tokens")):
        found = summary[name]
        lines.append(f"{label}: {len(found)}")
        if found:
            lines.append(listing([f"{t['position']}:'{escape_token(t['text'])}'" for t in found]))
    lines.append(f"dominated anchors: {len(summary['dominated'])}, introductory tokens: {len(summary['intro'])}")
    for key, label in (("local_heads", "local heads"), ("global_heads", "global heads")):
        lines.append(f"{label}: {len(summary[key])}")
        lines.append(listing(summary[key]))
    return "\n".join(lines)


def analyze(args: argparse.Namespace) -> int:
    """Run ``reasonattn analyze``: load, generate, capture, print (and write JSON)."""
    from .capture import capture_rhythm
    from .functional import select_layers
    from .models import DEFAULT_MODEL, ModelLoadError, load_model

    model_name = args.model or DEFAULT_MODEL
    if args.json and not Path(args.json).resolve().parent.is_dir():
        return _fail("analyze", f"--json {args.json!r}: its folder does not exist; create it or pick another path.")
    try:
        model, tokenizer = load_model(args.model, device=args.device)
        layers = select_layers(model.config.get_text_config().num_hidden_layers, args.layers)
    except (ModelLoadError, ValueError) as exc:
        return _fail("analyze", str(exc))

    if prompt_ids(tokenizer, args.prompt).numel() == 0:
        return _fail(
            "analyze",
            f"--prompt {args.prompt!r} gives no tokens: this model's tokenizer has no chat template to wrap it in and "
            "adds no start token. Pass a non-empty prompt.",
        )
    input_ids, response_mask = generate(model, tokenizer, args.prompt, args.max_new_tokens, args.sample, args.seed)
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
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(record, f, indent=1, allow_nan=False)
        except OSError as exc:
            return _fail("analyze", f"cannot write --json {args.json!r} ({exc}): pass a writable file path.")
        print(f"per-token data written to {args.json}", file=sys.stderr)
    if args.report:
        try:
            paths = write_analysis_report(model, tokenizer, input_ids, trace, args.report, model_name)
        except OSError as exc:
            return _fail("analyze", f"cannot write the report to {args.report!r} ({exc}): pass a writable folder.")
        shown = ", ".join(str(p) for p in paths.values())
        print(f"report written: {shown} (open report.html in a browser)")
    return 0


def write_analysis_report(model, tokenizer, input_ids: torch.Tensor, trace, out_dir: str, title: str) -> dict:
    """Heatmaps of a window at the start of the response, curves and the HTML page, into ``out_dir``."""
    from .capture import capture_group_maps
    from .report import default_span, write_report

    span = default_span(trace)
    device = next(model.parameters()).device
    maps = capture_group_maps(model, input_ids.to(device), trace.to(device), span=span)
    maps = {name: value.cpu() for name, value in maps.items()}
    tokens = [tokenizer.decode([i]) for i in input_ids[0].tolist()]
    return write_report(out_dir, trace, tokens, maps, span, title=f"Rhythm of {title}")


if __name__ == "__main__":
    sys.exit(main())
