"""`bench compare`: what changed between two runs, and whether the change is larger than the noise.

Rankings are compared too (``bench.evaluate.stability.ranking_agreement``): per metric both runs scored, Kendall's
tau between the entries' mean scores and whether the verdict's best-or-tied sets agree, in ``.attrs["ranking"]``;
``bench compare SHORT_RUN REFERENCE`` says how far a short run's answer is from a converged one.

The rule: a quality change (b - a) is flagged when it is larger than the seed-to-seed spread, the larger of
the two runs' std across finished seeds. With fewer than two finished seeds in either run that spread is
unknown and nothing is flagged for the entry (said in the notes). A speed change is flagged when the
difference of the fwd+bwd medians is larger than the larger interquartile range of the two timings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.evaluate.stability import ranking_agreement
from bench.report import Run, load_run
from bench.results import read_table
from bench.results import write_atomic


def compare_runs(run_a: Path, run_b: Path) -> pd.DataFrame:
    """One row per entry present in both runs: ``<metric>_{a,b,diff,spread,changed}`` per quality metric, and
    ``fwd_bwd_ms_{a,b}``, ``speed_ratio`` (b / a) and ``speed_changed``. Caveats go to ``.attrs["notes"]``."""
    a, b = load_run(run_a), load_run(run_b)
    stats_a, stats_b = _entry_stats(a), _entry_stats(b)
    common = [entry for entry in a.entries if entry in set(b.entries)]
    stats_a, stats_b = stats_a.reindex(common), stats_b.reindex(common)
    frame = pd.DataFrame({"ok_seeds_a": stats_a["ok_seeds"], "ok_seeds_b": stats_b["ok_seeds"]}, index=common)
    for metric in [m for m in a.metrics if m in b.metrics]:
        diff = stats_b[metric] - stats_a[metric]
        spread = pd.concat([stats_a[f"{metric}_sd"], stats_b[f"{metric}_sd"]], axis=1).max(axis=1, skipna=False)
        frame[f"{metric}_a"], frame[f"{metric}_b"] = stats_a[metric], stats_b[metric]
        frame[f"{metric}_diff"], frame[f"{metric}_spread"] = diff, spread
        frame[f"{metric}_changed"] = diff.abs() > spread  # False where the spread is unknown (NaN)
    frame["fwd_bwd_ms_a"], frame["fwd_bwd_ms_b"] = stats_a["ms"], stats_b["ms"]
    frame["speed_ratio"] = stats_b["ms"] / stats_a["ms"]
    speed_spread = pd.concat([stats_a["ms_iqr"], stats_b["ms_iqr"]], axis=1).max(axis=1, skipna=False)
    frame["speed_changed"] = (stats_b["ms"] - stats_a["ms"]).abs() > speed_spread
    frame = frame.rename_axis("entry").reset_index()
    metrics = [m for m in a.metrics if m in b.metrics]
    ranking = ranking_agreement(a.summary, b.summary, metrics, read_table(b.folder, "pairwise"))
    frame.attrs.update(run_a=str(a.folder), run_b=str(b.folder), notes=_notes(a, b, frame), ranking=ranking)
    return frame


def _entry_stats(run: Run) -> pd.DataFrame:
    """Per entry: finished seeds, mean and std of each metric over them, and the fwd+bwd median and IQR."""
    grouped = run.ok.groupby("entry")
    stats = pd.DataFrame(index=pd.Index(run.entries, name="entry"))
    stats["ok_seeds"] = grouped["seed"].nunique().reindex(stats.index).fillna(0).astype(int)
    for metric in run.metrics:
        stats[metric], stats[f"{metric}_sd"] = grouped[metric].mean(), grouped[metric].std()
    speed = run.speed_variant()
    total = speed[speed["phase"] == "total"].set_index("entry") if not speed.empty else pd.DataFrame()
    stats["ms"] = total["median_ms"] if "median_ms" in total else np.nan
    stats["ms_iqr"] = total["iqr_ms"] if "iqr_ms" in total else np.nan
    return stats


def _notes(a: Run, b: Run, frame: pd.DataFrame) -> list[str]:
    notes = []
    for key, what in (
        ("suite_sha256", "the suite files differ"),
        ("device_name", "the devices differ"),
        ("timing_resolution", "the timing resolutions differ"),
        ("profile", "the profiles differ"),
    ):
        if a.env.get(key) != b.env.get(key):
            notes.append(f"{what}: a {a.env.get(key)}, b {b.env.get(key)}")
    for run, other, name in ((a, b, "a"), (b, a, "b")):
        only = [e for e in run.entries if e not in set(other.entries)]
        if only:
            notes.append(f"only in run {name}: {', '.join(only)}")
    unknown = frame.loc[(frame["ok_seeds_a"] < 2) | (frame["ok_seeds_b"] < 2), "entry"].tolist()
    if unknown:
        notes.append(
            "seed spread unknown (fewer than 2 finished seeds in a run), so no quality change is flagged "
            f"for: {', '.join(unknown)}"
        )
    return notes


def format_comparison(frame: pd.DataFrame) -> str:
    """The comparison as console text: b - a per metric and the speed ratio, '*' marking flagged changes."""
    header = f"b: {frame.attrs.get('run_b', 'run b')}\na: {frame.attrs.get('run_a', 'run a')}\n"
    if frame.empty:
        return header + "no entries in common"
    metrics = [c.removesuffix("_diff") for c in frame if c.endswith("_diff")]
    table = pd.DataFrame({"entry": frame["entry"]})
    for metric in metrics:
        table[f"d_{metric}"] = [
            _marked(f"{diff:+.3g}", changed)
            for diff, changed in zip(frame[f"{metric}_diff"], frame[f"{metric}_changed"])
        ]
    table["speed b/a"] = [
        _marked(f"{ratio:.3g}x", changed) for ratio, changed in zip(frame["speed_ratio"], frame["speed_changed"])
    ]
    legend = (
        "d_<metric> = b - a (higher is better for psnr/ssim/ms_ssim, lower for lpips/l1/mse); "
        "* = larger than the seed spread (quality) or the timing IQR (speed); nan = failed or not timed"
    )
    notes = "".join(f"\nnote: {note}" for note in frame.attrs.get("notes", []))
    return f"{header}{table.to_string(index=False)}\n{legend}{notes}{format_ranking(frame.attrs.get('ranking'))}"


def format_ranking(ranking: pd.DataFrame | None) -> str:
    """The ranking section: per metric, Kendall's tau between the runs' entry means, the best-or-tied sets, how
    many pairs a orders otherwise than b, and then those of them b's verdict holds apart beyond noise."""
    if ranking is None or ranking.empty:
        return ""
    count = lambda pairs: pairs.map(lambda text: text.count(";") + 1 if text else 0)
    table = pd.DataFrame(
        {
            "metric": ranking["metric"],
            "entries": ranking["entries"],
            "kendall tau": ranking["kendall_tau"].map(lambda tau: f"{tau:.3f}"),
            "pairs flipped": count(ranking["flipped"]),
            "beyond noise in b": count(ranking["flipped_beyond_noise"]),
            "same best-or-tied": ranking["same_best"].map({True: "yes", False: "no"}),
            "best-or-tied in a | in b": ranking["best_a"] + " | " + ranking["best_b"],
        }
    )
    flips = "".join(
        f"\n  {row.metric}: {row.flipped_beyond_noise}" for row in ranking.itertuples() if row.flipped_beyond_noise
    )
    return (
        "\n\nranking (trained entries in both runs, mean over seeds; tau 1: the same order, -1: reversed):\n"
        + table.to_string(index=False)
        + (
            "\npairs run a orders otherwise than run b, which b holds apart beyond noise (x > y: x ahead in b):" + flips
            if flips
            else ""
        )
    )


def _marked(text: str, changed: bool) -> str:
    return text + (" *" if changed else "")


def write_comparison(run_a: Path, run_b: Path, out_path: Path) -> pd.DataFrame:
    """compare_runs(run_a, run_b), written to out_path as CSV (atomically), its ranking section beside it
    (``<stem>_ranking.csv``); returned for printing."""
    frame = compare_runs(run_a, run_b)
    out_path = Path(out_path)
    write_atomic(out_path, frame.to_csv(index=False))
    write_atomic(out_path.with_name(f"{out_path.stem}_ranking.csv"), frame.attrs["ranking"].to_csv(index=False))
    return frame
