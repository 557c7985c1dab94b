"""Pictures of the rhythm of one sequence: attention heatmaps, WAAD / FAI curves and a token-level HTML page.

Pure rendering, no Lightning: a [`RhythmTrace`][lightning_reasonattn.RhythmTrace], the decoded tokens of the sequence
and (for the heatmaps) the group maps of [`capture_group_maps`][lightning_reasonattn.capture_group_maps] go in;
matplotlib figures, an HTML string or files come out.

* [`rhythm_figures`][rhythm_figures]: ``"heatmaps"`` (local- and global-head mean attention over a window of the
  sequence: the saw-tooth near the diagonal, the vertical stripes of anchors) and ``"curves"`` (WAAD and FAI over the
  response, preplan and anchor tokens marked). Needs matplotlib (``pip install 'lightning-reasonattn[report]'``).
* [`rhythm_html`][rhythm_html]: one self-contained page (inline CSS and SVG, no script, no network): the response tokens
  coloured by WAAD or FAI (a toggle), preplan and anchor tokens marked, the numbers on hover. Needs nothing.
* [`write_report`][write_report]: both, as files (the PNGs are also embedded in the page).

Token text is model output, hence untrusted: it is only ever HTML-escaped and shown, never interpreted.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..functional.trace import RhythmTrace
from ..outputs import write_whole
from .figures import figure_png, matplotlib_classes, rhythm_figures
from .page import rhythm_html, rhythm_markdown
from .sequence import MISSING_MATPLOTLIB, default_span

__all__ = ["default_span", "rhythm_figures", "rhythm_html", "rhythm_markdown", "write_report"]


def write_report(
    out_dir: str | Path,
    trace: RhythmTrace,
    tokens: list[str],
    maps: dict[str, torch.Tensor] | None = None,
    span: tuple[int, int] | None = None,
    index: int = 0,
    title: str = "Rhythm report",
    dpi: int = 90,
    embed_images: bool = True,
) -> dict[str, Path]:
    """Write the report of one sequence into ``out_dir``: ``curves.png``, ``heatmaps.png`` (with ``maps``) and
    ``report.html``.

    Without matplotlib the PNGs are skipped with a warning and only the page is written.

    Args:
        out_dir: folder, created if needed.
        trace: from [`capture_rhythm`][lightning_reasonattn.capture_rhythm].
        tokens: the decoded token of every position (``N`` strings).
        maps: the group maps from [`capture_group_maps`][lightning_reasonattn.capture_group_maps], as in
            [`rhythm_figures`][rhythm_figures] (without them, no heatmaps).
        span: the ``(start, stop)`` the maps were captured over.
        index: the sequence of the batch.
        title: the page's heading.
        dpi: resolution of the PNGs (90 gives about 1000 x 450 pixels per figure).
        embed_images: also embed the PNGs in the page (``data:`` URIs), so the page alone holds everything.

    Returns:
        ``{"curves": path, "heatmaps": path, "html": path}`` for the files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    images: dict[str, bytes] = {}
    try:
        matplotlib_classes()
    except ImportError:
        warnings.warn(MISSING_MATPLOTLIB, stacklevel=2)
    else:
        for name, figure in rhythm_figures(trace, tokens, maps, span, index).items():
            images[name] = figure_png(figure, dpi)
            paths[name] = out / f"{name}.png"
            write_whole(paths[name], images[name])
    page = rhythm_html(trace, tokens, index, title, images if embed_images else None)
    paths["html"] = out / "report.html"
    write_whole(paths["html"], page)
    return paths
