"""The speed regression gate: compare a run's loss timings with a saved baseline.

Raw milliseconds do not carry from one machine to another, so the gate compares each loss's total
(fwd+bwd) time divided by the calibration workload's, measured interleaved with it (``bench.timing``).
A baseline saved on a laptop then still holds on a CI runner of another speed, as long as device type,
batch size and resolution match; those are checked.

The ratio is of minimums (``min_ms / calibration_min_ms``), not medians. When other processes share the
cores, a step's chance of being preempted grows with its length, so the median of a long loss over a
short calibration grows with the load: with a 2-thread job beside it on 2 cores, an SSIM-like loss's
median ratio read anywhere from 0.3 to 10 (2.6 on a quiet machine), while the ratio of the fastest,
undisturbed steps stayed within 5% of 2.6. That holds while some steps do run undisturbed: steps of
a few ms or less, or a machine with a core to spare. Medians stay in the baseline for reading.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from bench.errors import BenchInputError
from bench.results import write_atomic

REGENERATE = "python -m bench speed {suite} --save-baseline {path}"
STATUSES = ("ok", "SLOWER", "new", "missing")
_KEY = ["entry", "variant"]
_REQUIRED = ("entry", "variant", "phase", "min_ms", "calibration_min_ms", "batch_size", "resolution", "device")
_INFORMATIVE = ("min_ms", "calibration_min_ms", "median_ms", "calibration_ms")
_MUST_MATCH = ("device_type", "batch_size", "resolution")  # ratios from different regimes do not compare
_FORMAT = 1

SpeedSource = pd.DataFrame | Iterable[dict[str, Any]] | str | Path


def load_speed(source: SpeedSource) -> pd.DataFrame:
    """A speed table from records, a DataFrame, a ``speed.csv`` path or a run folder containing one."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        csv = path / "speed.csv" if path.is_dir() else path
        if not csv.is_file():
            raise BenchInputError(f"no speed table at {csv}", where=str(source),
                                  fix="pass a run folder made with timing on, or its speed.csv")
        frame = pd.read_csv(csv)
        where = str(csv)
    else:
        frame = source if isinstance(source, pd.DataFrame) else pd.DataFrame(list(source))
        where = "speed table"
    missing = [column for column in _REQUIRED if column not in frame.columns]
    if missing:
        raise BenchInputError(f"speed table lacks columns {', '.join(missing)}", where=where,
                              fix="use a table written by `python -m bench speed` (bench.timing.time_entries)")
    return frame


def save_baseline(speed: SpeedSource, path: str | Path, *, suite: str = "SUITE") -> dict[str, Any]:
    """Write (atomically) and return the baseline JSON: each entry x variant's time / calibration time."""
    totals = _totals(load_speed(speed))
    meta = {column: _single_value(totals, column) for column in
            ("device", "device_name", "threads", "batch_size", "resolution", "torch_version")
            if column in totals.columns}
    baseline = _plain({
        "format": _FORMAT,
        "metric": "total (fwd+bwd) min_ms / calibration_min_ms, per entry and variant",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "regenerate": REGENERATE.format(suite=suite, path=path),
        **meta,
        "entries": [
            {"entry": row["entry"], "variant": row["variant"], "ratio": row["ratio"],
             **{column: row[column] for column in _INFORMATIVE if column in row}}
            for row in totals.to_dict("records")
        ],
    })
    write_atomic(Path(path), json.dumps(baseline, indent=2) + "\n")
    return baseline


def load_baseline(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    fix = f"make one with `{REGENERATE.format(suite='SUITE', path=path)}`"
    if not path.is_file():
        raise BenchInputError("no speed baseline here", where=str(path), fix=fix)
    try:
        baseline = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BenchInputError(f"speed baseline is not valid JSON ({error})", where=str(path), fix=fix) from None
    if not isinstance(baseline, dict) or baseline.get("format") != _FORMAT or "entries" not in baseline:
        raise BenchInputError(f"not a format-{_FORMAT} speed baseline", where=str(path), fix=fix)
    return baseline


def check_against_baseline(
    speed: SpeedSource, baseline_path: str | Path, tolerance: float = 0.25
) -> tuple[pd.DataFrame, bool]:
    """Compare the run's ratios with the baseline's; fail if any entry is more than ``1 + tolerance`` slower.

    Returns the table (columns entry, variant, baseline_ratio, current_ratio, slowdown = current /
    baseline, status in ``STATUSES``) and whether the check passed. Entries on one side only are listed
    as ``new`` or ``missing`` and do not fail the check.
    """
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    baseline = load_baseline(baseline_path)
    current = _totals(load_speed(speed))
    _check_comparable(baseline, current, baseline_path)

    saved = pd.DataFrame(baseline["entries"], columns=[*_KEY, "ratio"]).rename(columns={"ratio": "baseline_ratio"})
    table = saved.merge(current[[*_KEY, "ratio"]].rename(columns={"ratio": "current_ratio"}),
                        on=_KEY, how="outer", sort=False)
    table["slowdown"] = table["current_ratio"] / table["baseline_ratio"]
    table["status"] = "ok"
    table.loc[table["slowdown"] > 1 + tolerance, "status"] = "SLOWER"
    table.loc[table["baseline_ratio"].isna(), "status"] = "new"
    table.loc[table["current_ratio"].isna(), "status"] = "missing"
    return table, not (table["status"] == "SLOWER").any()


def format_check_table(table: pd.DataFrame) -> str:
    """The check table as aligned text, with a count of each status underneath."""
    def number(value: float) -> str:
        return "-" if pd.isna(value) else f"{value:.4g}"

    def factor(value: float) -> str:
        return "-" if pd.isna(value) else f"{value:.2f}x"

    text = table.to_string(index=False, formatters={"baseline_ratio": number, "current_ratio": number,
                                                    "slowdown": factor})
    counts = table["status"].value_counts()
    return text + "\n" + ", ".join(f"{counts.get(status, 0)} {status}" for status in STATUSES)


def _totals(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per entry x variant: the total phase, with ``ratio`` and ``device_type`` added."""
    totals = frame[frame["phase"] == "total"].copy()
    if totals.empty:
        raise BenchInputError("speed table has no total-phase rows", where="speed table",
                              fix="use a table written by `python -m bench speed` (bench.timing.time_entries)")
    duplicated = totals.duplicated(_KEY)
    if duplicated.any():
        twice = ", ".join(f"{e} [{v}]" for e, v in totals.loc[duplicated, _KEY].itertuples(index=False))
        raise BenchInputError(f"speed table times {twice} more than once", where="speed table",
                              fix="check one run's speed table, not several concatenated")
    totals["ratio"] = totals["min_ms"] / totals["calibration_min_ms"]
    totals["device_type"] = totals["device"].astype(str).str.split(":").str[0]
    return totals.reset_index(drop=True)


def _check_comparable(baseline: dict[str, Any], current: pd.DataFrame, baseline_path: str | Path) -> None:
    saved = {"device_type": str(baseline.get("device", "")).split(":")[0],
             "batch_size": baseline.get("batch_size"), "resolution": baseline.get("resolution")}
    for column in _MUST_MATCH:
        now = _single_value(current, column)
        if now != saved[column]:
            raise BenchInputError(
                f"baseline was timed with {column} {saved[column]}, this run with {now}: ratios do not compare",
                where=str(baseline_path),
                fix=f"time with the baseline's settings, or regenerate it: {baseline.get('regenerate')}",
            )


def _single_value(frame: pd.DataFrame, column: str) -> Any:
    values = frame[column].unique()
    if len(values) != 1:
        raise BenchInputError(f"speed table mixes {column} values {sorted(map(str, values))}",
                              where="speed table", fix="check one run's speed table, not several concatenated")
    return _plain(values[0])


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python ones, NaN to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value
