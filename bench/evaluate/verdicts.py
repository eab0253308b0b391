"""Verdicts a user can act on, from the result tables alone.

- **Did it learn?** An entry "did not learn", and is never ranked, when its mean held-out PSNR does not beat the
  task's trivial baseline (each crop's mean colour; the degraded input in a restoration task) by
  ``LEARNED_MARGIN_DB`` and it is not significantly better than that baseline on a metric it trained on either
  (paired over (seed, crop) as below, Holm-corrected): every entry is judged on its own objective too, so an
  SSIM-trained denoiser that raised SSIM far above the noisy input's learned whatever its PSNR, and so did an
  MSE-trained one that lowered MSE consistently but by less than the margin.
- **Still improving?** The gain in held-out PSNR over the last 20% of the training steps, mean over seeds.
- **Who is best?** Every pair of ranked entries is compared per metric, paired over every (seed, evaluation crop):
  a paired t-test on the differences, Holm-corrected for the number of pairs, and the winner must be ahead on
  every seed's mean as well (so one lucky seed cannot decide). An entry's rank interval is
  [1 + entries significantly better, entries ranked - entries significantly worse]; "best" is an interval of
  [1, 1], "tied" for best is an interval starting at 1 that does not end there.
- **Trained on the metric**: the metrics an entry's loss optimises (or a term of it does), whose wins are expected.
- **Did it optimise its own measure?** Each trained entry is compared with a reference entry (``mse``, or the
  suite's ``[verdict] reference``) on every metric the entry trained on and the reference did not, paired over
  (seed, crop) as above, Holm-corrected over all these comparisons. Significantly worse there: the entry "did
  not optimise its own measure", an optimisation finding (its own objective was not reached) distinct from "did
  not learn" (nothing beyond the trivial baseline).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

from bench.data.baselines import LEARNED_MARGIN_DB, PREFIX
from bench.evaluate.design import with_sizes
from bench.evaluate.metrics import METRICS
from bench.evaluate.stats import ALPHA
from bench.losses.registry import measure_of

REFERENCE = "mse"  # the entry own measures are compared with, unless the suite names another
IMPROVING_DB = 0.2  # held-out PSNR gain over the last LAST_FRACTION of the steps that counts as still improving
LAST_FRACTION = 0.2


def trained_on(entry) -> str:
    """Space-separated metrics that ``entry`` (a suite Entry) optimises, e.g. "mse psnr"; "" for none.

    The metrics a loss optimises come from its measure record (PSNR is a function of each image's MSE);
    combinations take the union. Losses without a record optimise none: e.g. Barron's robust loss, whose only
    member that is MSE (alpha = 2, scaled) is the mse loss itself.
    """
    metrics = {metric for term in entry.terms for metric in _optimised_by(term.loss)}
    return " ".join(sorted(metrics))


def _optimised_by(loss: str) -> tuple[str, ...]:
    record = measure_of(loss)
    return record.optimises if record else ()


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of ``p_values`` (family-wise error), in the input order."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def _paired_p(differences: np.ndarray) -> float:
    if differences.size < 2:
        return math.nan
    if np.all(differences == differences[0]):  # no spread: identical answers, or a constant offset
        return 1.0 if differences[0] == 0 else 0.0
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


def pairwise(per_image: pd.DataFrame, metric: str, higher_is_better: bool, entries: list[str]) -> pd.DataFrame:
    """Every pair of ``entries`` on ``metric``, paired over (seed, crop): mean difference a - b with a 95%
    t-interval, p-value, Holm-adjusted p-value, whether every seed's mean difference has the overall sign, and
    the verdict "a better" / "b better" / "tie (within noise)"."""
    return _judged(_paired(per_image, metric, list(itertools.combinations(entries, 2))), higher_is_better)


def _paired(per_image: pd.DataFrame, metric: str, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """The paired differences a - b on ``metric`` of each of ``pairs``, before any verdict."""
    names = {name for pair in pairs for name in pair}
    values = per_image[per_image["entry"].isin(names)].pivot_table(
        index=["seed", "crop"], columns="entry", values=metric
    )
    rows = []
    for a, b in [(a, b) for a, b in pairs if a in values and b in values]:
        pair = values[[a, b]].dropna()
        difference = (pair[a] - pair[b]).to_numpy()
        mean = float(difference.mean()) if difference.size else math.nan
        half = (
            stats.t.ppf(1 - ALPHA / 2, difference.size - 1) * difference.std(ddof=1) / math.sqrt(difference.size)
            if difference.size >= 2
            else math.nan
        )
        per_seed = (pair[a] - pair[b]).groupby(level="seed").mean()
        agree = bool(difference.size) and bool((np.sign(per_seed) == np.sign(mean)).all()) and mean != 0
        rows.append(
            {
                "metric": metric,
                "a": a,
                "b": b,
                "seeds": per_seed.size,
                "pairs": difference.size,
                "mean_difference": mean,
                "ci_low": mean - half,
                "ci_high": mean + half,
                "p_value": _paired_p(difference),
                "seeds_agree": agree,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "metric",
            "a",
            "b",
            "seeds",
            "pairs",
            "mean_difference",
            "ci_low",
            "ci_high",
            "p_value",
            "seeds_agree",
        ],
    )


def _judged(frame: pd.DataFrame, higher_is_better) -> pd.DataFrame:
    """``frame`` with Holm-adjusted p-values over all its rows and each row's verdict; ``higher_is_better`` is one
    direction for every row, or one per row."""
    tested = frame["p_value"].notna()
    frame["p_holm"] = math.nan
    frame.loc[tested, "p_holm"] = holm(frame.loc[tested, "p_value"])
    significant = (frame["p_holm"] < ALPHA) & frame["seeds_agree"]
    a_ahead = (frame["mean_difference"] > 0) == higher_is_better
    frame["verdict"] = np.where(
        ~significant, "tie (within noise)", np.where(a_ahead, frame["a"] + " better", frame["b"] + " better")
    )
    return frame


def rank_intervals(pairs: pd.DataFrame, entries: list[str]) -> pd.DataFrame:
    """Per entry: rank_low = 1 + entries significantly better, rank_high = len(entries) - entries worse."""
    better = {entry: 0 for entry in entries}
    worse = {entry: 0 for entry in entries}
    for _, row in pairs.iterrows():
        if row["verdict"].endswith(" better"):
            winner = row["verdict"][: -len(" better")]
            loser = row["b"] if winner == row["a"] else row["a"]
            better[loser] += 1
            worse[winner] += 1
    return pd.DataFrame(
        {
            "entry": entries,
            "rank_low": [1 + better[e] for e in entries],
            "rank_high": [len(entries) - worse[e] for e in entries],
        }
    )


def psnr_gain(history: pd.DataFrame) -> pd.Series:
    """Per entry: held-out PSNR at the last evaluation minus at the last evaluation at or before 80% of the
    steps, mean over seeds; NaN where evaluations were too sparse to tell."""
    if history.empty or "eval_psnr" not in history:
        return pd.Series(dtype=float)
    gains = {}
    for (entry, seed), runs in history.dropna(subset=["eval_psnr"]).groupby(["entry", "seed"], sort=False):
        runs = runs.sort_values("step")
        earlier = runs[runs["step"] <= (1 - LAST_FRACTION) * history.loc[history["entry"] == entry, "step"].max()]
        if len(earlier) and runs["step"].iloc[-1] > earlier["step"].iloc[-1]:
            gains.setdefault(entry, []).append(runs["eval_psnr"].iloc[-1] - earlier["eval_psnr"].iloc[-1])
    return pd.Series({entry: float(np.mean(values)) for entry, values in gains.items()}, dtype=float)


def own_measure_comparisons(summary: pd.DataFrame, per_image: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Each trained entry against ``reference`` on each held-out metric the entry trained on and ``reference``
    did not, paired over (seed, crop), Holm-corrected over all these comparisons (module docstring)."""
    owns = dict(
        zip(
            summary["entry"],
            summary.get("trained_on", pd.Series("", index=summary.index))
            .astype(object)
            .fillna("")
            .astype(str)
            .str.split(),
        )
    )
    trained = summary.loc[summary["kind"] != "baseline", "entry"]
    if per_image.empty or reference not in owns:
        return pd.DataFrame()
    compared = [
        _paired(per_image, metric, [(entry, reference)]).assign(higher=METRICS[metric].higher_is_better)
        for entry in trained
        if entry != reference
        for metric in owns[entry]
        if metric not in owns[reference] and metric in per_image
    ]
    if not compared:
        return pd.DataFrame()
    frame = pd.concat(compared, ignore_index=True)
    return _judged(frame, frame["higher"])


def beat_trivial_on_own_measure(summary: pd.DataFrame, per_image: pd.DataFrame) -> dict[str, list[str]]:
    """Entries that fall short of the PSNR margin, with the metrics they trained on where they are significantly
    better than the trivial baseline (paired over (seed, crop), Holm-corrected over these comparisons)."""
    trained = summary[summary["kind"] != "baseline"]
    baseline = summary.loc[summary["kind"] == "baseline", "entry"].iloc[0]
    short = trained[
        ~trained["psnr"]
        .fillna(-math.inf)
        .ge(summary.loc[summary["entry"] == baseline, "psnr"].iloc[0] + LEARNED_MARGIN_DB)
    ]
    owns = dict(
        zip(
            short["entry"],
            short.get("trained_on", pd.Series("", index=short.index)).astype(object).fillna("").astype(str).str.split(),
        )
    )
    compared = [
        _paired(per_image, metric, [(entry, baseline)]).assign(higher=METRICS[metric].higher_is_better)
        for entry, metrics in owns.items()
        for metric in metrics
        if not per_image.empty and metric in per_image
    ]
    if not compared:
        return {}
    frame = pd.concat(compared, ignore_index=True)
    frame = _judged(frame, frame["higher"])
    beaten: dict[str, list[str]] = {}
    for _, row in frame[frame["verdict"] == frame["a"] + " better"].iterrows():
        beaten.setdefault(row["a"], []).append(row["metric"])
    return beaten


def own_measure_marks(summary: pd.DataFrame, per_image: pd.DataFrame, reference: str) -> tuple[list[str], list[str]]:
    """Per summary row: the own metrics it is significantly worse on than ``reference`` (space-separated), and
    the reference it was compared with ("" where it was not compared)."""
    comparisons = own_measure_comparisons(summary, per_image, reference)
    worse, compared = {}, set()
    for _, row in comparisons.iterrows():
        compared.add(row["a"])
        if row["verdict"] == f"{reference} better":
            worse.setdefault(row["a"], []).append(row["metric"])
    return (
        [" ".join(worse.get(entry, [])) for entry in summary["entry"]],
        [reference if entry in compared else "" for entry in summary["entry"]],
    )


def add_verdicts(
    summary: pd.DataFrame,
    per_image: pd.DataFrame,
    history: pd.DataFrame,
    metrics: dict[str, bool],
    reference: str = REFERENCE,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``summary`` (one row per entry, with ``kind`` and mean metrics) with verdict columns added, and the
    pairwise comparisons behind them (pairwise.csv)."""
    summary = summary.copy()
    trained = summary["kind"] != "baseline"
    trivial = summary.loc[~trained, "psnr"].iloc[0] if (~trained).any() and "psnr" in summary else math.nan
    summary["learned"] = pd.Series(pd.NA, index=summary.index, dtype="boolean")
    summary["learned_on_own_measure"] = ""
    if not math.isnan(trivial):
        summary.loc[trained, "learned"] = summary.loc[trained, "psnr"].fillna(-math.inf) >= trivial + LEARNED_MARGIN_DB
        beaten = beat_trivial_on_own_measure(summary, per_image)
        summary["learned_on_own_measure"] = summary["entry"].map(lambda e: " ".join(beaten.get(e, [])))
        summary.loc[trained & summary["entry"].isin(beaten), "learned"] = True
    summary["did_not_optimise"], summary["own_measure_reference"] = own_measure_marks(summary, per_image, reference)
    gain = psnr_gain(history)
    summary["psnr_gain_last20"] = summary["entry"].map(gain)
    summary["still_improving"] = (summary["psnr_gain_last20"] >= IMPROVING_DB).where(
        summary["psnr_gain_last20"].notna()
    )
    ranked = list(
        summary.loc[
            trained
            & (summary["learned"].fillna(True).astype(bool))
            & summary.get("psnr", pd.Series(0, index=summary.index)).notna(),
            "entry",
        ]
    )
    comparisons = []
    for metric, higher in metrics.items():
        summary[f"rank_{metric}_low"] = pd.Series(pd.NA, index=summary.index, dtype="Int64")
        summary[f"rank_{metric}_high"] = pd.Series(pd.NA, index=summary.index, dtype="Int64")
        summary[f"best_{metric}"] = ""
        if per_image.empty or metric not in per_image or not ranked:
            continue
        pairs = pairwise(per_image, metric, higher, ranked)
        own = {
            entry: metric in str(trained).split()
            for entry, trained in zip(
                summary["entry"],
                summary.get("trained_on", pd.Series("", index=summary.index)).astype(object).fillna(""),
            )
        }
        pairs["a_trained_on_metric"] = pairs["a"].map(own).fillna(False).astype(bool)
        pairs["b_trained_on_metric"] = pairs["b"].map(own).fillna(False).astype(bool)
        comparisons.append(pairs)
        scored = [e for e in ranked if per_image.loc[per_image["entry"] == e, metric].notna().any()]
        intervals = rank_intervals(pairs[pairs["a"].isin(scored) & pairs["b"].isin(scored)], scored)
        intervals = intervals.set_index("entry")
        rows = summary["entry"].isin(scored)
        summary.loc[rows, f"rank_{metric}_low"] = summary.loc[rows, "entry"].map(intervals["rank_low"]).astype("Int64")
        summary.loc[rows, f"rank_{metric}_high"] = (
            summary.loc[rows, "entry"].map(intervals["rank_high"]).astype("Int64")
        )
        low, high = summary[f"rank_{metric}_low"], summary[f"rank_{metric}_high"]
        summary.loc[(low == 1) & (high == 1), f"best_{metric}"] = "best"
        summary.loc[(low == 1) & (high > 1), f"best_{metric}"] = "tied"
    return summary, (pd.concat(comparisons, ignore_index=True) if comparisons else pd.DataFrame())


HEADLINE_METRICS = {name: metric.label for name, metric in METRICS.items() if metric.headline}


def trained_on_by(summary: pd.DataFrame, metric: str) -> list[str]:
    """The trained entries whose loss is (or has a term that is) ``metric``."""
    if "trained_on" not in summary:
        return []
    trained = summary[summary["kind"] != "baseline"]
    return [
        entry
        for entry, own in zip(trained["entry"], trained["trained_on"].astype(object).fillna(""))
        if metric in str(own).split()
    ]


def headline(summary: pd.DataFrame, labels: dict[str, str] = HEADLINE_METRICS) -> list[str]:
    """The run's verdict in a few sentences, for the console and the top of the report: first the metrics no
    entry trained on (named), then those some entries trained on, with who did."""
    if summary.empty or "kind" not in summary:
        return []
    lines = []
    trained = summary[summary["kind"] != "baseline"]
    baselines = summary[summary["kind"] == "baseline"]
    ranked = [metric for metric in labels if f"best_{metric}" in summary]
    neutral = [metric for metric in ranked if not trained_on_by(summary, metric)]
    if neutral and len(neutral) < len(ranked):
        lines.append("ranked on held-out metrics no entry trained on: " + ", ".join(labels[m] for m in neutral))
    elif ranked and not neutral:
        lines.append(
            "every metric ranked here is some entry's own loss: add one no entry trains on to "
            "[metrics] compute (e.g. fsim, gmsd, haarpsi) for a neutral ranking"
        )
    for metric in neutral + [m for m in ranked if m not in neutral]:
        owners = trained_on_by(summary, metric)
        name = labels[metric] + (
            f" (trained on by {', '.join(owners)}: their wins here are expected)" if owners else ""
        )
        best = list(summary.loc[summary[f"best_{metric}"] == "best", "entry"])
        tied = list(summary.loc[summary[f"best_{metric}"] == "tied", "entry"])
        if best:
            lines.append(f"{name}: best is {best[0]} (ahead of every other entry beyond noise)")
        elif tied:
            lines.append(f"{name}: tied for best within noise: {', '.join(tied)}")
    not_optimised = summary.get("did_not_optimise", pd.Series("", index=summary.index)).astype(object).fillna("")
    not_optimised = not_optimised.astype(str)
    if not_optimised.str.strip().astype(bool).any():
        reference = summary.loc[not_optimised.str.strip().astype(bool), "own_measure_reference"].iloc[0]
        lines.append(
            f"did not optimise its own measure (significantly worse on it than {reference}, which did not "
            "train on it): "
            + ", ".join(
                f"{entry} on {', '.join(labels.get(m, m) for m in own.split())}"
                for entry, own in zip(summary["entry"], not_optimised)
                if own
            )
        )
    if "learned" in summary and not baselines.empty:
        missed = list(trained.loc[trained["learned"].eq(False).fillna(False), "entry"])
        trivial = baselines.iloc[0]
        if missed:
            lines.append(
                f"did not learn (held-out PSNR not {LEARNED_MARGIN_DB:g} dB above "
                f"{trivial['entry'][len(PREFIX) :]}, {trivial['psnr']:.2f} dB, nor significantly better "
                f"than it on its own measure): {', '.join(missed)}"
            )
        own = summary.get("learned_on_own_measure", pd.Series("", index=summary.index)).astype(object).fillna("")
        if own.astype(str).str.strip().astype(bool).any():
            lines.append(
                f"learned its own measure but not PSNR (held-out PSNR not {LEARNED_MARGIN_DB:g} dB above "
                f"{trivial['entry'][len(PREFIX) :]}; ranked): "
                + ", ".join(
                    f"{entry} on {', '.join(_label(m, labels) for m in str(metrics).split())}"
                    for entry, metrics in zip(summary["entry"], own)
                    if str(metrics).strip()
                )
            )
        parts = [f"{row['entry'][len(PREFIX) :]} {row['psnr']:.2f} dB" for _, row in baselines.iterrows()]
        if trained["psnr"].notna().any():
            top = trained.loc[trained["psnr"].idxmax()]
            parts.append(f"best trained entry {top['entry']} {top['psnr']:.2f} dB")
        lines.append("held-out PSNR of the baselines: " + ", ".join(parts))
    if "still_improving" in summary and trained["still_improving"].notna().any():
        improving = list(trained.loc[trained["still_improving"].eq(True).fillna(False), "entry"])
        known = int(trained["still_improving"].notna().sum())
        lines.append(
            f"still improving at the end (held-out PSNR up >= {IMPROVING_DB:g} dB over the last "
            f"{LAST_FRACTION:.0%} of steps): {len(improving)} of {known} entries"
            + (
                f" ({', '.join(improving)}): the ranking is partly one of learning speed"
                if improving
                else ": the ranking is of models that had stopped improving"
            )
        )
    return lines + design_flags(summary)


def _label(metric: str, labels: dict[str, str]) -> str:
    return labels.get(metric, METRICS[metric].label if metric in METRICS else metric)


def design_flags(summary: pd.DataFrame) -> list[str]:
    """Which entries trained, and which metrics were scored, on crops smaller than the measure's design size."""
    lines = []
    below = summary.get("trained_below_design", pd.Series("", index=summary.index)).astype(object).fillna("")
    trained = {entry: str(losses).split() for entry, losses in zip(summary["entry"], below)}
    if any(trained.values()):
        lines.append(
            "trained on crops smaller than their loss was designed for: "
            + "; ".join(f"{entry}: {with_sizes(losses)}" for entry, losses in trained.items() if losses)
        )
    scored = summary.get("scored_below_design", pd.Series("", index=summary.index)).astype(object).fillna("")
    metrics = list(dict.fromkeys(metric for names in scored for metric in str(names).split()))
    if metrics:
        lines.append(f"scored on crops smaller than the metric was designed for: {with_sizes(metrics)}")
    return lines
