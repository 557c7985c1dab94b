"""Make the pictures of docs/report.md: the rhythm report of the embedded default model on the CLI's prompt.

The default model (SmolLM2-135M-Instruct, loaded offline by ``load_model()``) answers the built-in word
problem of ``reasonattn analyze`` greedily, then one capture gives the trace and a second the local / global
head maps over a window near the start of the response. Written into ``--out`` (default ``docs/images/report``
of this repository): ``curves.png``, ``heatmaps.png`` and ``report.html`` (the page without the PNGs embedded,
to keep it small). About half a minute on 2 CPU cores.

    python examples/make_report_figures.py [--max-new-tokens 96] [--out docs/images/report]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lightning_reasonattn import capture_group_maps, capture_rhythm
from lightning_reasonattn.analysis import DEFAULT_PROMPT, generate
from lightning_reasonattn.models import load_model
from lightning_reasonattn.report import default_span, write_report

DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images" / "report"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--window", type=int, default=128, help="positions shown in the heatmaps")
    parser.add_argument("--dpi", type=int, default=80)
    parser.add_argument("--out", type=Path, default=DOCS_IMAGES)
    args = parser.parse_args()

    model, tokenizer = load_model()
    input_ids, response_mask = generate(model, tokenizer, DEFAULT_PROMPT, max_new_tokens=args.max_new_tokens)
    trace = capture_rhythm(model, input_ids, response_mask=response_mask)
    span = default_span(trace, size=args.window)
    maps = capture_group_maps(model, input_ids, trace, span=span)
    tokens = [tokenizer.decode([i]) for i in input_ids[0].tolist()]
    paths = write_report(
        args.out,
        trace,
        tokens,
        maps,
        span,
        title="Rhythm of SmolLM2-135M-Instruct on the train problem",
        dpi=args.dpi,
        embed_images=False,
    )
    response = tokenizer.decode(input_ids[0, response_mask[0]].tolist())
    print(f"response ({int(response_mask.sum())} tokens): {response!r}")
    print(f"heatmap window: positions {span[0]} to {span[1] - 1}")
    for name, path in paths.items():
        print(f"{name}: {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
