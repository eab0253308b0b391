"""Speed tables compared, and the baseline record.

``check_tables`` compares two ``speed.csv`` tables (a user's own runs, e.g. before and after a change) per
entry x variant with ``bench.speed.stats.compare_samples`` on their fwd+bwd repeats (``samples_ms``). The
two runs were not interleaved, so time them on the same quiet machine; CI's gate (``bench.speed.gate``)
times both code versions interleaved instead.

``save_baseline`` writes a record of one run (the commit, each loss's times and its ratio to the
calibration workload) for reports and for the gate, which takes its baseline commit from it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from bench.errors import BenchInputError
from bench.results import run_git, write_atomic
from bench.speed.settings import ALPHA, MIN_FACTOR
from bench.speed.stats import compare_samples

REGENERATE = "python -m bench speed {suite} --device cpu --save-baseline {path}"
_KEY = ["entry", "variant"]
_REQUIRED = ("entry", "variant", "phase", "min_ms", "calibration_min_ms", "batch_size", "resolution", "device")
_INFORMATIVE = ("min_ms", "calibration_min_ms", "median_ms", "calibration_ms")
_MUST_MATCH = ("device_type", "batch_size", "resolution")  # times from different regimes do not compare
_FORMAT = 2

SpeedSource = pd.DataFrame | Iterable[dict[str, Any]] | str | Path


def load_speed(source: SpeedSource) -> pd.DataFrame:
    """A speed table from records, a DataFrame, a ``speed.csv`` path or a run folder containing one."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        csv = path / "speed.csv" if path.is_dir() else path
        if not csv.is_file():
            raise BenchInputError(
                f"no speed table at {csv}",
                where=str(source),
                fix="pass a run folder made with timing on, or its speed.csv",
            )
        frame = pd.read_csv(csv)
        where = str(csv)
    else:
        frame = source if isinstance(source, pd.DataFrame) else pd.DataFrame(list(source))
        where = "speed table"
    missing = [column for column in _REQUIRED if column not in frame.columns]
    if missing:
        raise BenchInputError(
            f"speed table lacks columns {', '.join(missing)}",
            where=where,
            fix="use a table written by `python -m bench speed` (bench.speed.timing.time_entries)",
        )
    return frame


def save_baseline(speed: SpeedSource, path: str | Path, *, suite: str = "SUITE") -> dict[str, Any]:
    """Write (atomically) and return the baseline record: the commit of the running code (CI's gate
    compares against that code) and each entry x variant's times and time / calibration time."""
    totals = _totals(load_speed(speed))
    meta = {
        column: _single_value(totals, column)
        for column in ("device", "device_name", "threads", "batch_size", "resolution", "torch_version")
        if column in totals.columns
    }
    baseline = _plain(
        {
            "format": _FORMAT,
            "metric": "total (fwd+bwd) min_ms / calibration_min_ms, per entry and variant",
            **_code_commit(),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "regenerate": REGENERATE.format(suite=suite, path=path),
            **meta,
            "entries": [
                {
                    "entry": row["entry"],
                    "variant": row["variant"],
                    "ratio": row["ratio"],
                    **{column: row[column] for column in _INFORMATIVE if column in row},
                }
                for row in totals.to_dict("records")
            ],
        }
    )
    write_atomic(Path(path), json.dumps(baseline, indent=2) + "\n")
    return baseline


def _code_commit() -> dict[str, Any]:
    """``commit`` (None outside a git checkout) and ``commit_dirty`` of the running ``bench`` package."""
    import bench

    root = Path(bench.__file__).parent.parent

    def git(*args: str) -> str | None:
        done = run_git(root, *args)
        return done.stdout.strip() if done and done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--", "bench")
    return {"commit": commit, "commit_dirty": bool(dirty) if commit else None}


def baseline_commit(path: str | Path) -> str:
    """The commit a baseline record was made from: the code CI's speed gate compares against."""
    path = Path(path)
    fix = f"make one with `{REGENERATE.format(suite='SUITE', path=path)}` in a git checkout"
    try:
        baseline = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BenchInputError(f"cannot read the baseline record ({error})", where=str(path), fix=fix) from None
    if not isinstance(baseline, dict) or not baseline.get("commit"):
        raise BenchInputError("baseline record names no commit", where=str(path), fix=fix)
    return baseline["commit"]


def check_tables(
    candidate: SpeedSource, baseline: SpeedSource, *, min_factor: float = MIN_FACTOR, alpha: float = ALPHA
) -> tuple[pd.DataFrame, bool]:
    """Each entry x variant of two speed tables compared on their fwd+bwd repeats; passed = none SLOWER.

    Columns: entry, variant, then ``bench.speed.stats.compare_samples``'s. Entries in one table only are
    ``new`` or ``missing`` and do not fail the check.
    """
    tables = {"candidate": _totals(load_speed(candidate)), "baseline": _totals(load_speed(baseline))}
    for column in _MUST_MATCH:
        values = {side: _single_value(table, column) for side, table in tables.items()}
        if values["candidate"] != values["baseline"]:
            raise BenchInputError(
                f"the baseline was timed with {column} {values['baseline']}, the candidate with "
                f"{values['candidate']}: times do not compare",
                where="bench check",
                fix="time both with the same settings (--batch, --resolution, --device)",
            )
    samples = {
        side: {tuple(key): _samples(text, side) for *key, text in table[[*_KEY, "samples_ms"]].itertuples(index=False)}
        for side, table in tables.items()
    }
    keys = list(dict.fromkeys([*samples["baseline"], *samples["candidate"]]))
    rows = [
        {
            "entry": entry,
            "variant": variant,
            **compare_samples(
                samples["baseline"].get((entry, variant), []),
                samples["candidate"].get((entry, variant), []),
                min_factor=min_factor,
                alpha=alpha,
            ),
        }
        for entry, variant in keys
    ]
    table = pd.DataFrame(rows)
    return table, not (table["verdict"] == "SLOWER").any()


def _totals(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per entry x variant: the total phase, with ``ratio`` and ``device_type`` added."""
    totals = frame[frame["phase"] == "total"].copy()
    if totals.empty:
        raise BenchInputError(
            "speed table has no total-phase rows",
            where="speed table",
            fix="use a table written by `python -m bench speed` (bench.speed.timing.time_entries)",
        )
    duplicated = totals.duplicated(_KEY)
    if duplicated.any():
        twice = ", ".join(f"{e} [{v}]" for e, v in totals.loc[duplicated, _KEY].itertuples(index=False))
        raise BenchInputError(
            f"speed table times {twice} more than once",
            where="speed table",
            fix="check one run's speed table, not several concatenated",
        )
    totals["ratio"] = totals["min_ms"] / totals["calibration_min_ms"]
    totals["device_type"] = totals["device"].astype(str).str.split(":").str[0]
    return totals.reset_index(drop=True)


def _samples(text: Any, side: str) -> list[float]:
    if not isinstance(text, str) or not text.strip():
        raise BenchInputError(
            f"the {side} speed table has no per-repeat times (samples_ms)",
            where="bench check",
            fix="time it again with this version of `python -m bench speed`",
        )
    return [float(value) for value in text.split()]


def _single_value(frame: pd.DataFrame, column: str) -> Any:
    values = frame[column].unique()
    if len(values) != 1:
        raise BenchInputError(
            f"speed table mixes {column} values {sorted(map(str, values))}",
            where="speed table",
            fix="check one run's speed table, not several concatenated",
        )
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
