"""Result tables derived from the per-run records: the summary that joins quality and speed per entry."""

from __future__ import annotations

import pandas as pd

from bench.stats import confidence_table

QUALITY_COLUMNS = ("psnr", "ssim", "ms_ssim", "lpips", "l1", "mse")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "ms_ssim": True, "lpips": False, "l1": False, "mse": False}


def summarize(quality: pd.DataFrame, speed: pd.DataFrame) -> pd.DataFrame:
    """One row per entry: mean quality over seeds, the loss's fwd+bwd time, and a rank per column (1 = best)."""
    if quality.empty:
        return pd.DataFrame()
    ok = quality[quality["status"] == "ok"]
    summary = quality.groupby("entry", sort=False).agg(
        formula=("formula", "first"), loss_weights=("loss_weights", "first"),
        seeds=("seed", "nunique"), failed=("status", lambda s: int((s != "ok").sum())),
    )
    if not ok.empty:
        summary = summary.join(ok.groupby("entry", sort=False)[["train_seconds"]].mean())
        intervals = confidence_table(ok, QUALITY_COLUMNS).pivot(index="entry", columns="metric")
        for metric in QUALITY_COLUMNS:
            summary[metric] = intervals[("mean", metric)]
            summary[f"{metric}_ci_low"] = intervals[("ci_low", metric)]
            summary[f"{metric}_ci_high"] = intervals[("ci_high", metric)]
    if not speed.empty:
        total = speed[(speed["phase"] == "total") & (speed["variant"] == speed["variant"].iloc[0])]
        summary = summary.join(total.set_index("entry")[["median_ms"]].rename(columns={"median_ms": "loss_fwd_bwd_ms"}))
    for column, higher in {**HIGHER_IS_BETTER, "loss_fwd_bwd_ms": False}.items():
        if column in summary:
            summary[f"rank_{column}"] = summary[column].rank(ascending=not higher, method="min").astype("Int64")
    return summary.reset_index()
