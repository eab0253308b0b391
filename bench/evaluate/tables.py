"""Result tables derived from the per-run records: the summary that joins quality, speed and verdicts per entry."""

from __future__ import annotations

import pandas as pd

from bench.evaluate.design import below_design
from bench.evaluate.metrics import METRICS
from bench.evaluate.stats import confidence_table
from bench.evaluate.verdicts import REFERENCE, add_verdicts

QUALITY_COLUMNS = tuple(METRICS)  # every metric a run may have computed; a run's own are those in its tables
HIGHER_IS_BETTER = {name: metric.higher_is_better for name, metric in METRICS.items()}


def metric_table(quality: pd.DataFrame) -> pd.DataFrame:
    """metrics.csv: one row per metric the run computed, with its direction, its source, the entries that
    trained on it (whose wins there are expected), its design size with that size's source, and whether the run
    scored it on crops below that size."""
    computed = [name for name in QUALITY_COLUMNS if name in quality]
    trained = quality[quality.get("kind", pd.Series("trained", index=quality.index)) != "baseline"]
    owners = {
        name: sorted(
            {
                entry
                for entry, own in zip(
                    trained["entry"],
                    trained.get("trained_on", pd.Series("", index=trained.index)).astype(object).fillna(""),
                )
                if name in str(own).split()
            }
        )
        for name in computed
    }
    return pd.DataFrame(
        {
            "metric": computed,
            "label": [METRICS[n].table_label for n in computed],
            "higher_is_better": [METRICS[n].higher_is_better for n in computed],
            "source": [METRICS[n].reference for n in computed],
            "trained_on_by": [" ".join(owners[n]) for n in computed],
            "design_px": [METRICS[n].design.side for n in computed],
            "design_source": [METRICS[n].design.source for n in computed],
            "scored_below_design": [n in below_design([n], _smallest_crop(quality)) for n in computed],
        }
    )


def _smallest_crop(quality: pd.DataFrame) -> int:
    """The smallest crop side any row was scored at; 0 (nothing below any design) where none is recorded."""
    sides = quality.get("resolution", pd.Series(dtype=float)).dropna()
    return int(sides.min()) if len(sides) else 0


def summarize(
    quality: pd.DataFrame,
    speed: pd.DataFrame,
    per_image: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
    reference: str = "",
) -> pd.DataFrame:
    return summarize_with_pairs(quality, speed, per_image, history, reference)[0]


def summarize_with_pairs(
    quality: pd.DataFrame,
    speed: pd.DataFrame,
    per_image: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
    reference: str = "",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per entry and baseline: mean quality over seeds with its 95% interval, the loss's fwd+bwd time,
    the verdicts of ``bench.evaluate.verdicts`` and a rank by mean among the entries that learned (1 = best); and the
    pairwise comparisons (pairwise.csv) behind the verdicts. ``reference``: the entry own measures are compared
    with (the suite's ``[verdict] reference``; "": mse)."""
    if quality.empty:
        return pd.DataFrame(), pd.DataFrame()
    quality = quality if "kind" in quality else quality.assign(kind="trained")  # runs from before baselines
    ok = quality[quality["status"] == "ok"]
    columns = {"kind": ("kind", "first"), "formula": ("formula", "first")}
    columns.update({c: (c, "first") for c in ("trained_on", "trained_below_design", "loss_weights") if c in quality})
    summary = quality.groupby("entry", sort=False).agg(
        **columns,
        seeds=("seed", "nunique"),
        failed=("status", lambda s: int((s != "ok").sum())),
    )
    if not ok.empty:
        summary = summary.join(ok.groupby("entry", sort=False)[["train_seconds"]].mean())
        computed = [metric for metric in QUALITY_COLUMNS if metric in ok]
        intervals = confidence_table(ok, computed).pivot(index="entry", columns="metric")
        for metric in computed:
            summary[metric] = intervals[("mean", metric)]
            summary[f"{metric}_ci_low"] = intervals[("ci_low", metric)]
            summary[f"{metric}_ci_high"] = intervals[("ci_high", metric)]
    if not speed.empty:
        total = speed[(speed["phase"] == "total") & (speed["variant"] == speed["variant"].iloc[0])]
        summary = summary.join(total.set_index("entry")[["median_ms"]].rename(columns={"median_ms": "loss_fwd_bwd_ms"}))
    summary = summary.reset_index()
    if "resolution" in quality:
        sides = quality.groupby("entry", sort=False)["resolution"].min()
        computed = [metric for metric in QUALITY_COLUMNS if metric in quality]
        summary["scored_below_design"] = [
            " ".join(below_design(computed, sides[entry])) if pd.notna(sides[entry]) else ""
            for entry in summary["entry"]
        ]
    pairs = pd.DataFrame()
    if "psnr" in summary:
        summary, pairs = add_verdicts(
            summary,
            per_image if per_image is not None else pd.DataFrame(),
            history if history is not None else pd.DataFrame(),
            {m: HIGHER_IS_BETTER[m] for m in QUALITY_COLUMNS if m in summary},
            reference or REFERENCE,
        )
    ranked = (summary["kind"] != "baseline") & summary.get("learned", pd.Series(True, index=summary.index)).fillna(
        True
    ).astype(bool)
    for column, higher in {**HIGHER_IS_BETTER, "loss_fwd_bwd_ms": False}.items():
        if column in summary:
            summary[f"rank_{column}"] = (
                summary[column].where(ranked).rank(ascending=not higher, method="min").astype("Int64")
            )
    return summary, pairs
