"""Seed statistics: means with 95% t-intervals, and paired comparisons between entries across seeds.

Within one seed every entry shares initial weights and batches, so entries are compared *paired* by seed: the
per-seed difference removes the seed's own luck. The test is a two-sided paired t-test (scipy.stats.ttest_rel);
with fewer than two seeds no interval or test is possible and the columns are NaN.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE


def t_interval(values) -> tuple[float, float, float]:
    """(mean, lower, upper) of a 95% Student-t confidence interval for the mean of ``values``."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean()) if values.size else math.nan
    if values.size < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(1 - ALPHA / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return mean, mean - half, mean + half


def confidence_table(quality: pd.DataFrame, metrics) -> pd.DataFrame:
    """One row per entry x metric: seeds, mean, ci_low, ci_high (failed runs left out)."""
    ok = quality[quality["status"] == "ok"]
    rows = []
    for entry, metric in itertools.product(ok["entry"].unique(), metrics):
        values = ok.loc[ok["entry"] == entry, metric].dropna()
        mean, low, high = t_interval(values)
        rows.append(
            {"entry": entry, "metric": metric, "seeds": len(values), "mean": mean, "ci_low": low, "ci_high": high}
        )
    return pd.DataFrame(rows)


def time_to_quality(history: pd.DataFrame, targets) -> pd.DataFrame:
    """For each entry x seed x PSNR target: the first evaluated step (and training seconds) whose held-out
    PSNR reached the target; NaN where it never did. Resolution is the suite's eval_every."""
    if history.empty or "eval_psnr" not in history or not len(targets):
        return pd.DataFrame()
    evaluated = history.dropna(subset=["eval_psnr"])
    rows = []
    for (entry, seed), runs in evaluated.groupby(["entry", "seed"], sort=False):  # in the history's (plan) order
        for target in targets:
            reached = runs[runs["eval_psnr"] >= target].sort_values("step")
            first = reached.iloc[0] if len(reached) else None
            rows.append(
                {
                    "entry": entry,
                    "seed": seed,
                    "psnr_target": target,
                    "step": first["step"] if first is not None else math.nan,
                    "seconds": first["seconds"] if first is not None else math.nan,
                }
            )
    return pd.DataFrame(rows)
