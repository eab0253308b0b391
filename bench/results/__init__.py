"""The run folder: results/<suite>/<timestamp>/ with tidy CSV tables, environment.json and the suite copy.

Every write is atomic (temp file in the same folder, then os.replace), so a reader, or a run killed mid-write,
never sees a half-written file. Tables are rewritten whole after each entry: they stay small.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import torch

from bench.errors import BenchInputError

TABLES = ("quality", "history", "speed", "summary")
# pandas 3 reads floats back exactly by default (and deprecates the option); pandas 2 must be asked to.
ROUND_TRIP = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


class WriteFailed(BenchInputError):
    """A file could not be written (a full disk, a read-only folder); every file written before is whole."""


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write ``path`` whole or not at all; a full disk or a read-only folder is the user's input error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise WriteFailed(
            f"cannot write here: {error.strerror}", where=str(path.parent), fix="choose a writable folder with --out"
        ) from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content.encode("utf-8") if isinstance(content, str) else content)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes files private; results are meant to be shared and read
        os.replace(temp, path)
    except OSError as error:
        Path(temp).unlink(missing_ok=True)
        raise WriteFailed(
            f"cannot write: {error.strerror}",
            where=str(path),
            fix="free disk space or choose another folder with --out",
        ) from None
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_table(folder: Path, name: str, rows: Iterable[dict[str, Any]] | pd.DataFrame) -> Path:
    frame = rows if isinstance(rows, pd.DataFrame) else _frame(list(rows))
    path = folder / f"{name}.csv"
    write_atomic(path, frame.to_csv(index=False))
    return path


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``rows`` as a table in which a column of whole numbers stays whole where some rows lack it (pandas would
    make it a float column, written ``2.0``), so that the text of a table does not depend on which entries
    failed."""
    import numbers

    frame = pd.DataFrame(rows)
    for column in frame.columns:
        if frame[column].dtype.kind != "f":
            continue
        values = [row[column] for row in rows if column in row and not _missing(row[column])]
        if values and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
            frame[column] = frame[column].astype("Int64")
    return frame


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def read_table(folder: Path, name: str, *, text: bool = False) -> pd.DataFrame:
    """A table of the run folder (empty if there is none); ``text``: every cell as the text written."""
    path = folder / f"{name}.csv"
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        if text:
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        # Entry names stay text (an entry named "1"); numbers read back to the bit, so kept rows stay exact.
        return pd.read_csv(path, dtype={"entry": str}, **ROUND_TRIP)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def records_from_text(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows read as text (``read_table(..., text=True)``) as the records that were written: numbers read back to
    the bit, whole numbers as ints (``write_table`` writes a column of ints as ints, empty cells and all; pandas
    would read such a column back as floats, and a resumed run would then write ``2.0`` for ``2``), empty cells
    as NaN."""
    import io
    import re

    if rows.empty:
        return []
    typed = pd.read_csv(io.StringIO(rows.to_csv(index=False)), dtype={"entry": str}, **ROUND_TRIP)
    whole = re.compile(r"-?[0-9]+")
    for column in typed.columns:
        cells = [cell for cell in rows[column] if cell != ""]
        if typed[column].dtype.kind == "f" and cells and all(whole.fullmatch(cell) for cell in cells):
            typed[column] = pd.array([int(cell) if cell != "" else None for cell in rows[column]], dtype=object)
    return [
        {key: float("nan") if value is None else value for key, value in record.items()}
        for record in typed.to_dict("records")
    ]


def new_run_folder(results_root: Path, suite_name: str, folder: Path | None = None) -> Path:
    """A new, empty run folder: ``results_root/suite_name/<timestamp>``, or ``folder`` where given."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    suffix = 1
    if folder is None:
        folder = results_root / suite_name / stamp
        while folder.exists():  # two runs in one second
            suffix += 1
            folder = results_root / suite_name / f"{stamp}-{suffix}"
    try:
        folder.mkdir(parents=True)
    except OSError as error:
        raise BenchInputError(
            f"cannot create the run folder: {error.strerror}",
            where=str(folder),
            fix="choose a writable folder with --out",
        ) from None
    return folder


def run_git(
    repo: str | Path, *args: str, text: bool = True, timeout: float | None = None
) -> subprocess.CompletedProcess | None:
    """``git -C repo args``, its output captured whatever its exit status (callers read ``returncode``);
    None where git cannot be run (not installed) or outlasts ``timeout`` seconds."""
    try:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=text, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> str:
    """The short commit of the running ``bench`` package, or "unknown" outside a git checkout."""
    done = run_git(Path(__file__).resolve().parent, "rev-parse", "--short", "HEAD", timeout=5)
    return (done.stdout.strip() if done else "") or "unknown"


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name from /proc/cpuinfo where there is one."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or device.type


def environment(device: torch.device, suite, profile: str, argv: list[str]) -> dict[str, Any]:
    return {
        "suite": suite.name,
        "suite_file": str(suite.path),
        "suite_sha256": suite.sha256,
        "task": suite.task,
        "profile": profile,
        "train_resolution": suite.data.resolution,
        "timing_resolution": suite.timing.resolution,
        "device": str(device),
        "device_type": device.type,
        "device_name": device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "command": " ".join(["python -m bench", *argv]),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def task_folders(folder: Path) -> dict[str, Path]:
    """Each task's run folder, in the suite's order, where ``folder`` is the parent folder of a run of several
    tasks (bench.train.tasks); else {}."""
    env = folder / "environment.json"
    tasks = read_json(env).get("tasks", []) if env.is_file() else []
    return {task: folder / task for task in tasks}


def copy_suite(suite, folder: Path) -> None:
    """The suite as it was parsed (a suite built in Python has no file of its own)."""
    write_atomic(folder / "suite.toml", suite.text or suite.path.read_text(encoding="utf-8"))


def save_png(path: Path, images: torch.Tensor) -> None:
    """Images (N x 3 x H x W in [0, 1]) side by side in one PNG, written atomically."""
    write_atomic(path, png_bytes(images))


def png_bytes(images: torch.Tensor) -> bytes:
    """Images (N x 3 x H x W in [0, 1]) side by side, as a PNG file's bytes."""
    import io

    from PIL import Image

    row = torch.cat(list(images.detach().float().clamp(0, 1).cpu()), dim=-1)
    array = (row.permute(1, 2, 0).numpy() * 255 + 0.5).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
