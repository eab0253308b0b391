"""A run's training curves, held-out metrics, settings and reconstruction grids in TensorBoard and MLflow.

Written from the run folder's tables alone, so ``--log-to`` (at the end of a run) and ``bench export RUN_DIR``
(any time later) write the same thing. Each trained entry and seed is one tracker run, holding:

- ``history/<column>`` over steps: every history.csv column (``loss``, ``term_<label>``, ``eval_psnr``);
- ``heldout/<metric>`` at the last step: every held-out metric in quality.csv;
- the entry's settings (its quality.csv columns that are not metrics) and the suite file;
- its reconstruction grid (``reconstructions/<entry>__seed<seed>.png``).

TensorBoard event files go to ``RUN_DIR/tensorboard/<entry>__seed<seed>/``. MLflow runs go to the tracking URI
given, or else to a local SQLite store beside the run folders (``results/mlflow.db``; MLflow 3 refuses its old
plain-file store): an experiment per suite, runs tagged with their run folder. An export replaces what an earlier
export of the same run folder wrote, and what its trainings wrote live while they trained
(bench.train.live_trackers). The trackers are optional extras, imported only when asked for.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from bench.config.names import entry_file
from bench.errors import BenchInputError
from bench.train.live_trackers import (
    NOT_CURVES,
    RUN_DIR_TAG,
    TENSORBOARD_FOLDER,
    mlflow_experiment,
    store_uri,
    tag as _tag,
)

TRACKERS = ("tensorboard", "mlflow")
INSTALL = 'pip install -e ".[trackers]"'
MLFLOW_BATCH = {"metrics": 1000, "params": 100}  # the most MLflow's log_batch takes in one call


@dataclass(frozen=True)
class Training:
    """One entry and seed of a run, as the trackers get it."""

    name: str  # e.g. "mse__seed0": the TensorBoard run folder, and the MLflow run's name
    settings: dict[str, str]  # its quality.csv columns that are not metrics
    curves: list[tuple[str, int, float, float]]  # (tag, step, value, wall time in seconds since the epoch)
    finished: bool  # the training finished (otherwise it has no held-out metrics)
    grid: Path | None  # its reconstruction grid, if the run saved one


def check_trackers(names: Iterable[str], *, where: str) -> tuple[str, ...]:
    """``names`` if each is a tracker whose package is installed (found, not imported); otherwise an input error."""
    names = tuple(names)
    for name in names:
        if name not in TRACKERS:
            raise BenchInputError(f"unknown tracker {name!r}", where=where, fix=f"use any of {', '.join(TRACKERS)}")
        if importlib.util.find_spec(name) is None:
            raise BenchInputError(
                f"logging to {name} needs the {name} package, which is not installed",
                where=where,
                fix=f"{INSTALL} (or leave {name} out)",
            )
    return names


def parse_trackers(value: str, *, where: str) -> tuple[str, ...]:
    """A comma-separated list from the command line, e.g. ``tensorboard,mlflow``."""
    return check_trackers([name.strip() for name in value.split(",") if name.strip()], where=where)


def export_run(
    folder: Path, trackers: Iterable[str], *, tracking_uri: str | None = None, log: Callable[[str], None] = print
) -> list[str]:
    """Writes the run in ``folder`` to each of ``trackers``; returns those that failed. A tracker that fails (an
    unreachable server, a full disk) is reported once through ``log`` and the others still run: the run's own
    tables are only read, never changed."""
    from bench.report import load_run

    run = load_run(folder)
    trainings = _trainings(run)
    suite_file = run.folder / "suite.toml"
    failed = []
    for name in trackers:
        try:
            written_to = EXPORTERS[name](
                run.folder, run.env.get("suite", run.folder.parent.name), trainings, suite_file, tracking_uri
            )
        except Exception as error:  # noqa: BLE001 - whatever a tracker raises, the run's tables stay as they are
            failed.append(name)
            reason = str(error).splitlines()[0] if str(error) else ""
            log(
                f"{name}: export failed ({type(error).__name__}: {reason}); the run's tables are complete in "
                f"{run.folder}; retry with: python -m bench export {run.folder} --to {name}"
            )
        else:
            log(f"{name}: {len(trainings)} trainings written to {written_to}")
    return failed


def default_tracking_uri(folder: Path) -> str:
    """The local MLflow store of the results root (``results/<suite>/<timestamp>/`` -> ``results/mlflow.db``)."""
    return store_uri(folder.resolve().parents[1])


def _trainings(run) -> list[Training]:
    started = dt.datetime.fromisoformat(run.env["started"]).timestamp() if "started" in run.env else 0.0
    quality = run.quality[run.quality["kind"] != "baseline"] if "kind" in run.quality else run.quality
    metrics = set(run.metrics)
    trainings = []
    for _, row in quality.iterrows():
        entry, seed = row["entry"], int(row["seed"])
        history = (
            run.history[(run.history["entry"] == entry) & (run.history["seed"] == seed)]
            if not run.history.empty
            else pd.DataFrame()
        )
        curves = [
            (_tag(f"history/{column}"), int(point["step"]), float(point[column]), started + float(point["seconds"]))
            for _, point in history.iterrows()
            for column in history.columns
            if column not in NOT_CURVES and pd.notna(point[column])
        ]
        finished = row.get("status") == "ok"
        if finished:
            last = started + float(row.get("train_seconds", 0.0))
            curves += [
                (f"heldout/{metric}", int(row["steps"]), float(row[metric]), last)
                for metric in run.metrics
                if pd.notna(row[metric])
            ]
        settings = {key: str(value) for key, value in row.items() if key not in metrics and pd.notna(value)}
        grid = run.folder / "reconstructions" / entry_file(entry, seed, ".png")
        trainings.append(
            Training(entry_file(entry, seed, ""), settings, curves, finished, grid if grid.is_file() else None)
        )
    return trainings


def _settings_markdown(settings: dict[str, str]) -> str:
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| {key} | {value} |" for key, value in settings.items())


def _to_tensorboard(
    folder: Path, suite: str, trainings: list[Training], suite_file: Path, tracking_uri: str | None
) -> Path:
    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    root = folder / TENSORBOARD_FOLDER
    shutil.rmtree(root, ignore_errors=True)  # event files only ever grow: an export starts them afresh
    suite_text = suite_file.read_text(encoding="utf-8") if suite_file.is_file() else ""
    for training in trainings:
        with SummaryWriter(log_dir=str(root / training.name)) as writer:
            for tag, step, value, wall_time in training.curves:
                writer.add_scalar(tag, value, step, walltime=wall_time)
            writer.add_text("settings", _settings_markdown(training.settings), 0)
            writer.add_text("suite", f"```toml\n{suite_text}\n```", 0)
            if training.grid is not None:
                step = max((step for _, step, _, _ in training.curves), default=0)
                grid = np.asarray(Image.open(training.grid).convert("RGB"))
                writer.add_image("reconstructions", grid, step, dataformats="HWC")
    return root


def _to_mlflow(folder: Path, suite: str, trainings: list[Training], suite_file: Path, tracking_uri: str | None) -> str:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri(folder)
    client = MlflowClient(tracking_uri=uri)
    experiment_id = mlflow_experiment(client, suite, folder.resolve().parents[1], tracking_uri)
    run_dir = str(folder.resolve())
    for earlier in client.search_runs([experiment_id], filter_string=f"tags.`{RUN_DIR_TAG}` = '{run_dir}'"):
        client.delete_run(earlier.info.run_id)
    for training in trainings:
        run = client.create_run(experiment_id, run_name=training.name, tags={RUN_DIR_TAG: run_dir})
        run_id = run.info.run_id
        metrics = [Metric(tag, value, int(wall_time * 1000), step) for tag, step, value, wall_time in training.curves]
        params = [Param(key, value) for key, value in training.settings.items()]
        client.set_tag(run_id, "status", training.settings["status"])
        for start in range(0, len(metrics), MLFLOW_BATCH["metrics"]):
            client.log_batch(run_id, metrics=metrics[start : start + MLFLOW_BATCH["metrics"]])
        for start in range(0, len(params), MLFLOW_BATCH["params"]):
            client.log_batch(run_id, params=params[start : start + MLFLOW_BATCH["params"]])
        if suite_file.is_file():
            client.log_artifact(run_id, str(suite_file))
        if training.grid is not None:
            client.log_artifact(run_id, str(training.grid))
        client.set_terminated(run_id, "FINISHED" if training.finished else "FAILED")
    return uri


EXPORTERS = {"tensorboard": _to_tensorboard, "mlflow": _to_mlflow}
