"""Reports from a run folder: one offline HTML page per run, and a comparison of two runs.

Everything here reads the run folder only (CSV tables, environment.json, reconstruction PNGs): nothing is
re-trained or re-timed, so a report can be made on any machine, long after the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.errors import BenchInputError
from bench.results import read_table
from bench.evaluate.metrics import METRICS
from bench.evaluate.tables import HIGHER_IS_BETTER, QUALITY_COLUMNS, summarize

RUN_FIX = "give a run folder, results/<suite>/<timestamp>/, as printed at the end of `python -m bench run`"

LABELS = {
    **{name: metric.table_label for name, metric in METRICS.items()},
    "train_seconds": "train time (s)",
    "loss_fwd_bwd_ms": "loss fwd+bwd (ms)",
    "psnr_gain_last20": "PSNR gain, last 20% of steps (dB)",
}


def label(column: str) -> str:
    return LABELS.get(column, column)


def higher_is_better(column: str) -> bool | None:
    """Direction of a summary column: True/False, or None where "better" has no meaning (counts, names)."""
    if column in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[column]
    if column.endswith(("_ms", "_seconds", "_s")):
        return False
    return None


@dataclass
class Run:
    folder: Path
    env: dict
    quality: pd.DataFrame
    history: pd.DataFrame
    speed: pd.DataFrame  # empty when timing was skipped
    summary: pd.DataFrame

    @property
    def entries(self) -> list[str]:
        """Entry names in suite order."""
        source = self.summary if "entry" in self.summary else self.quality
        return list(dict.fromkeys(source["entry"]))

    @property
    def ok(self) -> pd.DataFrame:
        """Quality rows of the trainings that finished (failed rows carry NaN metrics)."""
        return self.quality[self.quality["status"] == "ok"] if "status" in self.quality else self.quality

    @property
    def metrics(self) -> list[str]:
        return [m for m in QUALITY_COLUMNS if m in self.quality]

    def speed_variant(self) -> pd.DataFrame:
        """Speed rows of the variant the summary's loss_fwd_bwd_ms comes from (the first one timed)."""
        if self.speed.empty:
            return self.speed
        return self.speed[self.speed["variant"] == self.speed["variant"].iloc[0]]


def load_run(folder: Path) -> Run:
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchInputError("run folder not found", where=str(folder), fix=RUN_FIX)
    quality, summary = read_table(folder, "quality"), read_table(folder, "summary")
    if quality.empty and summary.empty:
        raise BenchInputError("not a run folder: it has no quality.csv or summary.csv", where=str(folder), fix=RUN_FIX)
    env_path = folder / "environment.json"
    try:
        env = json.loads(env_path.read_text(encoding="utf-8")) if env_path.is_file() else {}
    except json.JSONDecodeError as error:
        raise BenchInputError(
            f"environment.json is not valid JSON ({error})",
            where=str(env_path),
            fix="restore it from the run, or delete it to report without run details",
        ) from None
    speed, history = read_table(folder, "speed"), read_table(folder, "history")
    if summary.empty:  # summary.csv is written last: a run stopped early still has its quality rows
        summary = summarize(quality, speed, read_table(folder, "per_image"), history)
    return Run(folder, env, quality, history, speed, summary)


# Imported last: the submodules use the helpers above.
from bench.report.compare import compare_runs, format_comparison, write_comparison  # noqa: E402
from bench.report.html import write_report  # noqa: E402
from bench.report.screenshot import screenshot  # noqa: E402

__all__ = ["Run", "load_run", "write_report", "compare_runs", "format_comparison", "write_comparison", "screenshot"]
