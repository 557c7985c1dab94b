"""Which tokens a knockout hides, and how much the rest of a response loses (pure torch).

The survey's knockout test (docs/knockout.md, "Are anchors causal?") hides a few tokens of a response from every later
token ([`knockout_nll`][lightning_reasonattn.capture.knockout.knockout_nll]) and compares groups of the same size:

* candidates: the response tokens where FAI is defined (all but the last ``H_lo``), the only places an anchor can
  be; every group is drawn from them, so no group gains by sitting nearer the end;
* ``anchors``: the FAI peaks with the highest FAI (topped up by the next highest FAI if a response has fewer peaks
  than ``count``);
* ``random``: uniformly random candidates that are not anchors;
* ``position``: for each anchor (highest FAI first), the nearest candidate that is neither an anchor nor taken (a tie
  between before and after is a coin flip);
* ``same_kind``: for each anchor, a random untaken non-anchor candidate of the same kind (digit, word, space,
  punctuation), or of any kind when none is left (counted as unmatched);
* ``entropy``: the candidates of highest token entropy (the rival hypothesis: high-entropy tokens are the forks);
* ``preplan``: the WAAD-jump peaks with the largest jump (topped up as the anchors).

Rankings break ties by the earlier position. [`knockout_sums`][knockout_sums] reduces the NLL increase of one group to
sums over the tokens the knockout can reach.
"""

from __future__ import annotations

import torch

from ..deprecation import renamed_keywords
from . import defaults
from .coupling import local_peaks
from .tokens import waad_jumps

KINDS = ("digit", "word", "space", "punctuation")
"""Token kinds of the same-kind control: any ASCII digit; else any letter; else only whitespace; else punctuation."""


def token_kind(text: str) -> str:
    """The kind of a token's text (one of ``KINDS``): ``"12"`` digit, ``" the"`` word, ``"\\n"`` space, ``"."``
    punctuation."""
    if any("0" <= ch <= "9" for ch in text):
        return "digit"
    if any(ch.isalpha() for ch in text):
        return "word"
    return "space" if not text.strip() else "punctuation"


def _ranked(candidates: list[int], peaks: torch.Tensor, values: torch.Tensor) -> list[int]:
    """Candidates ordered: peaks first, then by value (largest first, NaN last), then position."""

    def key(i: int):
        v = float(values[i])
        return (not bool(peaks[i]), v != v, -v if v == v else 0.0, i)

    return sorted(candidates, key=key)


def _draw(pool: list[int], generator: torch.Generator) -> int:
    return pool[int(torch.randint(len(pool), (1,), generator=generator))]


@renamed_keywords(top="peak_fraction")
def choose_groups(
    fai: torch.Tensor,
    waad: torch.Tensor,
    entropy: torch.Tensor,
    kinds: list[str],
    count: int,
    *,
    peak_fraction: float = defaults.PEAK_FRACTION,
    generator: torch.Generator,
) -> tuple[dict[str, list[int]], int] | None:
    """The knockout groups of one response, as positions within it (0 = its first token).

    Args:
        fai: ``[n]`` FAI of the response tokens, NaN where undefined.
        waad: ``[n]`` WAAD of the response tokens (its jumps pick the preplan tokens).
        entropy: ``[n]`` token entropy.
        kinds: ``n`` token kinds (see [`token_kind`][token_kind]).
        count: tokens per group.
        peak_fraction: see [`local_peaks`][lightning_reasonattn.functional.coupling.local_peaks] (as the coupling
            statistics).
        generator: the seeded source of the random draws.

    Returns:
        ``({group: positions}, unmatched)``: ``anchors``, ``random``, ``position``, ``same_kind``, ``entropy`` and
        ``preplan``, each ``count`` sorted positions, and how many anchors the same-kind control matched with another
        kind; ``None`` when the response has fewer than ``2 * count`` candidates.
    """
    n = fai.shape[-1]
    finite = torch.isfinite(fai.float())
    candidates = [i for i in range(n) if bool(finite[i])]
    if len(candidates) < 2 * count:
        return None
    anchors = _ranked(candidates, local_peaks(fai, peak_fraction), fai.float())[:count]
    others = [i for i in candidates if i not in anchors]
    order = torch.randperm(len(others), generator=generator)[:count]
    groups = {"anchors": anchors, "random": [others[int(j)] for j in order]}

    taken: set[int] = set()
    for a in anchors:
        free = [i for i in others if i not in taken]
        nearest = min(abs(i - a) for i in free)
        ties = [i for i in free if abs(i - a) == nearest]
        taken.add(_draw(ties, generator))
    groups["position"] = sorted(taken)

    taken, unmatched = set(), 0
    for a in anchors:
        free = [i for i in others if i not in taken]
        same = [i for i in free if kinds[i] == kinds[a]]
        unmatched += not same
        taken.add(_draw(same or free, generator))
    groups["same_kind"] = sorted(taken)

    no_peaks = torch.zeros(n, dtype=torch.bool)
    groups["entropy"] = _ranked(candidates, no_peaks, entropy.float())[:count]
    jumps = waad_jumps(waad.float())
    groups["preplan"] = _ranked(candidates, local_peaks(jumps, peak_fraction), jumps)[:count]
    return {name: sorted(positions) for name, positions in groups.items()}, unmatched


def knockout_sums(increase: torch.Tensor, positions: list[int], answer: torch.Tensor | None = None) -> dict[str, float]:
    """Sums of the NLL increase a knockout set causes over the tokens it can reach.

    The window: response tokens ``j >= s_1 + 2`` (``s_1`` the first knocked-out position), predicted from a row after
    ``s_1`` (row ``s_1`` itself still reads its own token, so token ``s_1 + 1`` never changes), the knocked-out tokens
    left out; the answer window is the same restricted to the final-answer tokens.

    Args:
        increase: ``[n]`` NLL under the knockout minus the plain NLL, per response token.
        positions: the knocked-out positions (within the response).
        answer: ``[n]`` bool, the final-answer tokens (``None``: no answer).

    Returns:
        ``after_sum``, ``after_count``, ``answer_sum``, ``answer_count`` (floats).
    """
    n = increase.shape[-1]
    window = torch.zeros(n, dtype=torch.bool)
    window[min(positions) + 2 :] = True
    window[positions] = False
    inside = answer.bool() & window if answer is not None else torch.zeros(n, dtype=torch.bool)
    value = increase.double()
    return {
        "after_sum": float(value[window].sum()),
        "after_count": float(window.sum()),
        "answer_sum": float(value[inside].sum()),
        "answer_count": float(inside.sum()),
    }
