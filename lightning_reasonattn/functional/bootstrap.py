"""Bootstrap confidence intervals over responses, and position-normalised profiles (pure torch).

A survey keeps one row of counts per response (``[R, S]``: sums and counts such as "FAI peaks", "FAI peaks
preceded by a WAAD peak"). A statistic is a function of the column sums, e.g. a rate ``hits / peaks``: the
point estimate is the statistic of the sums over all responses (a ratio of sums, not a mean of per-response
ratios), and the interval is the percentile interval of the same statistic over resamples of the responses.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._checks import check_fraction, check_positive_int


def resample_counts(n: int, n_boot: int, generator: torch.Generator) -> torch.Tensor:
    """``[n_boot, n]`` float64: how often each of ``n`` items is drawn in each of ``n_boot`` resamples of size ``n``.

    Args:
        n: items (responses).
        n_boot: resamples.
        generator: the seeded source of the draws.
    """
    draws = torch.randint(n, (n_boot, n), generator=generator)
    counts = torch.zeros(n_boot, n, dtype=torch.float64)
    return counts.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))


def bootstrap_ci(
    values: torch.Tensor,
    statistic: Callable[[torch.Tensor], torch.Tensor],
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    chunk: int = 256,  # pragma: no mutate (any chunk draws the same resamples in the same order: memory only)
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Point estimate and percentile bootstrap interval of a statistic of column sums, resampling rows.

    Args:
        values: ``[R, S]`` per-response counts (float; converted to float64).
        statistic: maps column sums ``[..., S]`` to ``[...]`` or ``[..., D]`` (e.g. ``lambda s: s[..., 0] /
            s[..., 1]``); NaN where undefined (a resample without any peak), those resamples are left out.
        n_boot: resamples (>= 1).
        level: coverage of the interval, in (0, 1].
        seed: seed of the resampling (the same seed gives the same interval).
        chunk: resamples drawn at a time (bounds memory to ``chunk x R``).

    Returns:
        ``(point, low, high)``, each of the statistic's shape; ``low``/``high`` are the ``(1 - level) / 2`` and
        ``(1 + level) / 2`` quantiles of the resampled statistic (NaN if every resample is undefined).
    """
    n_boot = check_positive_int(n_boot, "n_boot")
    level = check_fraction(level, "level")
    if values.ndim != 2 or values.shape[0] < 1:
        raise ValueError(f"values has shape {tuple(values.shape)}: pass [R, S] with one row per response (R >= 1).")
    rows = values.detach().double().cpu()
    point = statistic(rows.sum(0))
    generator = torch.Generator().manual_seed(seed)
    boots = []
    for start in range(0, n_boot, chunk):
        weights = resample_counts(rows.shape[0], min(chunk, n_boot - start), generator)
        boots.append(statistic(weights @ rows))
    boot = torch.cat(boots)
    alpha = (1 - level) / 2
    quantiles = torch.tensor([alpha, 1 - alpha], dtype=torch.float64)
    low, high = torch.nanquantile(boot, quantiles, dim=0)
    return point, low, high


def profile_sums(
    values: torch.Tensor, response_mask: torch.Tensor, num_buckets: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row sums and counts of a signal in ``num_buckets`` equal slices of relative response position.

    Response token ``i`` (0-based, counted within its response) of a response of ``n`` tokens goes to bucket
    ``floor(i * num_buckets / n)``; only finite values count.

    Args:
        values: ``[B, N]``, NaN where undefined.
        response_mask: ``[B, N]`` bool.
        num_buckets: slices (>= 1).

    Returns:
        ``(sums, counts)``, float64 ``[B, num_buckets]``; the profile is ``sums.sum(0) / counts.sum(0)``.
    """
    num_buckets = check_positive_int(num_buckets, "num_buckets")
    v = values.detach().double()
    mask = response_mask.bool().to(v.device)
    use = mask & torch.isfinite(v)
    rank = mask.long().cumsum(-1) - 1  # index of each token within its response
    length = mask.sum(-1, keepdim=True).clamp_min(1)
    # rank <= length - 1 (cumsum never exceeds length), so the bucket is < num_buckets; rank is -1 before the response.
    bucket = (rank * num_buckets // length).clamp_min(0)
    sums = torch.zeros(v.shape[0], num_buckets, dtype=torch.float64, device=v.device)
    counts = torch.zeros_like(sums)
    sums.scatter_add_(1, bucket, torch.where(use, v, torch.zeros_like(v)))
    counts.scatter_add_(1, bucket, use.double())
    return sums, counts
