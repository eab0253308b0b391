"""How far a ranking is from settled: within one run, from the held-out scores taken during training, and
between two runs, such as a short run and a long reference.

Within a run (``rank_stability``), for each metric history.csv holds (``eval_psnr``, ``eval_ssim``), the entries'
mean scores over seeds at the evaluation nearest below 50% and 75% of the steps are ranked against the final
evaluation's: Kendall's tau, and the pairs whose order differs from the final one (at 75%: the pairs that swapped
in the last quarter). "Stable since" is the first evaluation from which every later evaluation, the last
included, orders every pair as the last one does.

Between runs (``ranking_agreement``), per metric both scored: Kendall's tau (tau-b, which counts ties) between
the entries' mean scores, and whether the verdict's best-or-tied sets are the same.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from bench.evaluate.metrics import METRICS

CHECKPOINTS = (0.5, 0.75)  # fractions of the steps whose ranking is compared with the final one
COLUMNS = ("metric", "fraction", "step", "final_step", "entries", "kendall_tau", "swapped", "stable_since")


def _trajectories(history: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Step x entry: the entry's held-out ``metric`` at each evaluation, mean over seeds, at the steps every
    entry and seed was evaluated at."""
    column = f"eval_{metric}"
    evals = history.dropna(subset=[column])
    runs = evals.groupby(["entry", "seed"]).ngroups
    counts = evals.groupby("step")[["entry", "seed"]].apply(lambda rows: len(rows.drop_duplicates()))
    shared = counts.index[counts == runs]
    evals = evals[evals["step"].isin(shared)]
    return evals.pivot_table(index="step", columns="entry", values=column, aggfunc="mean").sort_index()


def swapped_pairs(earlier: pd.Series, final: pd.Series, higher_is_better: bool) -> list[tuple[str, str]]:
    """Pairs ``(a, b)``, a ahead of b at the end, that ``earlier`` ordered the other way round (a tie in either
    is no order, so no swap). ``earlier`` and ``final``: scores by entry."""
    sign = 1 if higher_is_better else -1
    pairs = []
    for a, b in itertools.combinations(final.index, 2):
        now, then = sign * (final[a] - final[b]), sign * (earlier[a] - earlier[b])
        if now * then < 0:
            pairs.append((a, b) if now > 0 else (b, a))
    return pairs


def rank_stability(history: pd.DataFrame) -> pd.DataFrame:
    """One row per metric evaluated during training and checkpoint fraction (``COLUMNS``); ``swapped`` lists
    "a > b" (a ahead at the end) joined by "; ". Empty when fewer than two entries were evaluated."""
    rows = []
    metrics = [c.removeprefix("eval_") for c in history if c.startswith("eval_") and c.removeprefix("eval_") in METRICS]
    for metric in metrics:
        scores = _trajectories(history, metric)
        if scores.shape[1] < 2 or len(scores) < 2:
            continue
        higher = METRICS[metric].higher_is_better
        final_step = int(scores.index[-1])
        final = scores.loc[final_step]
        stable_since = final_step
        for step in scores.index[::-1]:
            if swapped_pairs(scores.loc[step], final, higher):
                break
            stable_since = int(step)
        for fraction in CHECKPOINTS:
            earlier = scores.index[scores.index <= fraction * final_step]
            if not len(earlier) or earlier[-1] == final_step:
                continue
            step = int(earlier[-1])
            tau = kendalltau(scores.loc[step], final).statistic
            swapped = swapped_pairs(scores.loc[step], final, higher)
            rows.append(
                {
                    "metric": metric,
                    "fraction": fraction,
                    "step": step,
                    "final_step": final_step,
                    "entries": scores.shape[1],
                    "kendall_tau": float(tau),
                    "swapped": "; ".join(f"{a} > {b}" for a, b in swapped),
                    "stable_since": stable_since,
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def stability_lines(stability: pd.DataFrame) -> list[str]:
    """Per metric, one sentence: "ranking stable since step N" or the pairs that swapped in the last quarter."""
    lines = []
    for metric, rows in stability.groupby("metric", sort=False):
        label = METRICS[metric].label
        last = rows.iloc[-1]  # the latest checkpoint: 75% of the steps where there are enough evaluations
        quarter = f"{last['fraction']:.0%} of the steps (step {last['step']})"
        if last["swapped"]:
            lines.append(
                f"{label} (held-out, during training): these pairs swapped after {quarter}: {last['swapped']} "
                f"(Kendall's tau {last['kendall_tau']:.2f} against the final ranking; stable since step "
                f"{last['stable_since']} of {last['final_step']})"
            )
        else:
            taus = ", ".join(f"{row.kendall_tau:.2f} at {row.fraction:.0%}" for row in rows.itertuples())
            lines.append(
                f"{label} (held-out, during training): ranking stable since step {last['stable_since']} of "
                f"{last['final_step']} (Kendall's tau against the final ranking: {taus})"
            )
    return lines


def stability_summary(stability: pd.DataFrame) -> str:
    """All metrics in one console line, e.g. "PSNR stable since step 900 of 1200; SSIM: 2 pairs swapped in
    the last quarter (ssim > mse; l1 > huber)"."""
    parts = []
    for metric, rows in stability.groupby("metric", sort=False):
        last = rows.iloc[-1]
        label = METRICS[metric].label
        if last["swapped"]:
            count = last["swapped"].count(";") + 1
            parts.append(f"{label}: {count} pair(s) swapped after {last['fraction']:.0%} ({last['swapped']})")
        else:
            parts.append(f"{label} stable since step {last['stable_since']} of {last['final_step']}")
    return "; ".join(parts)


def ranking_agreement(
    summary_a: pd.DataFrame, summary_b: pd.DataFrame, metrics: list[str], pairwise_b: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per metric both summaries scored, over the trained entries in both: Kendall's tau-b between their mean
    scores, the pairs that ``summary_a`` orders otherwise than ``summary_b`` ("x > y": x ahead in b), of those
    the ones run b's verdict separates beyond noise (``pairwise_b``, its pairwise.csv: a verdict other than a
    tie), and the best-or-tied sets of each (the verdicts' ``best_<metric>`` columns) and whether they agree."""
    trained = lambda summary: summary[summary["kind"] != "baseline"].set_index("entry")
    a, b = trained(summary_a), trained(summary_b)
    common = [entry for entry in a.index if entry in set(b.index)]
    rows = []
    for metric in metrics:
        if metric not in a or metric not in b:
            continue
        pairs = pd.DataFrame({"a": a.loc[common, metric], "b": b.loc[common, metric]}).dropna()
        tau = kendalltau(pairs["a"], pairs["b"]).statistic if len(pairs) >= 2 else np.nan
        flipped = swapped_pairs(pairs["a"], pairs["b"], METRICS[metric].higher_is_better)
        best = {}
        for name, summary in (("a", a), ("b", b)):
            marks = summary.get(f"best_{metric}", pd.Series("", index=summary.index)).reindex(common).fillna("")
            best[name] = sorted(marks.index[marks.isin(["best", "tied"])])
        rows.append(
            {
                "metric": metric,
                "entries": len(pairs),
                "kendall_tau": float(tau),
                "flipped": "; ".join(f"{x} > {y}" for x, y in flipped),
                "flipped_beyond_noise": "; ".join(
                    f"{x} > {y}" for x, y in flipped if _separated(pairwise_b, metric, x, y)
                ),
                "best_a": ", ".join(best["a"]),
                "best_b": ", ".join(best["b"]),
                "same_best": best["a"] == best["b"],
            }
        )
    columns = ["metric", "entries", "kendall_tau", "flipped", "flipped_beyond_noise", "best_a", "best_b", "same_best"]
    return pd.DataFrame(rows, columns=columns)


def _separated(pairwise: pd.DataFrame | None, metric: str, x: str, y: str) -> bool:
    """Whether a run's pairwise verdicts hold ``x`` and ``y`` apart on ``metric`` beyond noise."""
    if pairwise is None or pairwise.empty:
        return False
    pair = pairwise[(pairwise["metric"] == metric) & pairwise[["a", "b"]].apply(set, axis=1).eq({x, y})]
    return bool(len(pair)) and not str(pair["verdict"].iloc[0]).startswith("tie")
