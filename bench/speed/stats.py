"""Is the candidate slower than the baseline? Two samples of one loss's time, one verdict.

The rule follows asv (``asv continuous``) and codspeed: a change is a regression only when it is both
large (the ratio of medians, candidate / baseline, exceeds ``min_factor``) and unlikely to be noise (a
one-sided Mann-Whitney U test, candidate slower, rejects at ``alpha``). Mann-Whitney needs no assumption
about the shape of timing distributions, which are skewed by preemption, and a few extreme samples
cannot move it. The ratio's confidence interval is the Hodges-Lehmann interval of the log-time shift
(the interval that inverts the same rank test), exponentiated; a geometric shift is what a slower loss
produces, so the interval of ``log(candidate) - log(baseline)`` is the interval of the ratio.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

from bench.evaluate.stats import CONFIDENCE
from bench.speed.settings import ALPHA, MIN_FACTOR

VERDICTS = ("ok", "SLOWER", "faster", "new", "missing")


def compare_samples(
    baseline_ms: Sequence[float], candidate_ms: Sequence[float], *, min_factor: float = MIN_FACTOR, alpha: float = ALPHA
) -> dict[str, float | str | int]:
    """Both medians, ``ratio`` (candidate / baseline) with its CI, the one-sided p-values and the verdict.

    ``p_slower`` tests "candidate slower", ``p_faster`` "candidate faster". The verdict is ``SLOWER`` when
    ``ratio > min_factor`` and ``p_slower < alpha``, ``faster`` for the mirror case, ``ok`` otherwise;
    ``new`` / ``missing`` when the baseline / candidate has no samples.
    """
    if min_factor < 1 or not 0 < alpha < 1:
        raise ValueError(f"need min_factor >= 1 and 0 < alpha < 1, got min_factor={min_factor}, alpha={alpha}")
    baseline = np.asarray(baseline_ms, dtype=float)
    candidate = np.asarray(candidate_ms, dtype=float)
    for name, sample in (("baseline", baseline), ("candidate", candidate)):
        if sample.size and not (np.isfinite(sample).all() and (sample > 0).all()):
            raise ValueError(f"{name} times must be finite and positive, got {sample.tolist()}")
    record: dict[str, float | str | int] = {
        "baseline_n": baseline.size,
        "candidate_n": candidate.size,
        "baseline_median_ms": float(np.median(baseline)) if baseline.size else math.nan,
        "candidate_median_ms": float(np.median(candidate)) if candidate.size else math.nan,
        "ratio": math.nan,
        "ratio_ci_low": math.nan,
        "ratio_ci_high": math.nan,
        "p_slower": math.nan,
        "p_faster": math.nan,
    }
    if not baseline.size or not candidate.size:
        record["verdict"] = "new" if not baseline.size else "missing"
        return record
    record["ratio"] = record["candidate_median_ms"] / record["baseline_median_ms"]
    record["ratio_ci_low"], record["ratio_ci_high"] = ratio_interval(baseline, candidate)
    if baseline.size >= 2 and candidate.size >= 2:
        record["p_slower"] = float(stats.mannwhitneyu(candidate, baseline, alternative="greater").pvalue)
        record["p_faster"] = float(stats.mannwhitneyu(candidate, baseline, alternative="less").pvalue)
    if record["ratio"] > min_factor and record["p_slower"] < alpha:
        record["verdict"] = "SLOWER"
    elif record["ratio"] < 1 / min_factor and record["p_faster"] < alpha:
        record["verdict"] = "faster"
    else:
        record["verdict"] = "ok"
    return record


def ratio_interval(baseline: np.ndarray, candidate: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Hodges-Lehmann ``confidence`` interval of candidate / baseline (normal approximation of U's ranks)."""
    shifts = np.sort((np.log(candidate)[:, None] - np.log(baseline)[None, :]).ravel())
    n, m = candidate.size, baseline.size
    z = stats.norm.ppf(0.5 + confidence / 2)
    k = int(math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12)))
    k = min(max(k, 0), shifts.size - 1)
    return float(math.exp(shifts[k])), float(math.exp(shifts[shifts.size - 1 - k]))


def format_verdicts(table) -> str:
    """A table of ``compare_samples`` records (plus key columns) as console text, counts underneath."""
    keys = [column for column in ("entry", "variant") if column in table]
    shown = table[keys].copy()
    shown["baseline ms"] = table["baseline_median_ms"].map("{:.4g}".format)
    shown["candidate ms"] = table["candidate_median_ms"].map("{:.4g}".format)
    shown["ratio"] = table["ratio"].map("{:.3f}x".format)
    shown["95% CI"] = [f"[{low:.3f}, {high:.3f}]" for low, high in zip(table["ratio_ci_low"], table["ratio_ci_high"])]
    shown["p (slower)"] = table["p_slower"].map("{:.2g}".format)
    shown["verdict"] = table["verdict"]
    counts = table["verdict"].value_counts()
    return (
        shown.to_string(index=False) + "\n" + ", ".join(f"{counts.get(verdict, 0)} {verdict}" for verdict in VERDICTS)
    )
