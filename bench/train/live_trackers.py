"""A training's curves in TensorBoard and MLflow while it trains (``--log-to``).

Each history row a training logs (bench.train.loop's ``on_log``) goes at once to every tracker asked for, from the
process that trains: the driver's, a packed worker's (bench.train.pool) or a Ray worker's. Each training is one
tracker run, named and placed as ``bench export`` places it (bench.trackers): TensorBoard event files in
``RUN_DIR/tensorboard/<entry>__seed<seed>/``, flushed after every row so that a run still going, or killed, can
be read back; an MLflow run in the suite's experiment, tagged with its run folder, ended FINISHED or FAILED with
its held-out metrics. When the run ends, ``--log-to`` exports the run folder's tables as ``bench export`` does,
replacing these live runs with the complete ones (settings, suite file, reconstructions).

A tracker that raises (an unreachable server, a full disk) is reported once and switched off for that training;
the training and the run's tables go on.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

TENSORBOARD_FOLDER = "tensorboard"
MLFLOW_STORE = "mlflow.db"  # the default store's database and artifact folder, in the results root
MLFLOW_ARTIFACTS = "mlartifacts"
RUN_DIR_TAG = "lossbench.run_dir"  # the run folder an MLflow run came from: an export replaces its runs
NOT_CURVES = ("entry", "seed", "step", "seconds")  # history columns that are not curves


def tag(name: str) -> str:
    """``name`` in the characters MLflow allows in a metric's name (a repeated loss's label is ``mse#2``)."""
    return re.sub(r"[^\w./\- ]", "_", name)


def store_uri(results_root: Path) -> str:
    """The default MLflow store of a results root: ``results/mlflow.db``."""
    return f"sqlite:///{(results_root.resolve() / MLFLOW_STORE).as_posix()}"


def mlflow_experiment(client, name: str, results_root: Path, tracking_uri: str | None) -> str:
    """The id of the experiment ``name``, created if missing; the default store keeps its artifacts beside its
    database, a server given by URI decides for itself."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = None if tracking_uri else (results_root.resolve() / MLFLOW_ARTIFACTS).as_uri()
    return client.create_experiment(name, artifact_location=artifacts)


@dataclass(frozen=True)
class LiveTrackers:
    """Where a run's trainings write their curves as they train; plain data, sent to the workers."""

    trackers: tuple[str, ...]
    folder: Path  # the run folder
    experiment: str  # MLflow's experiment: the suite's name
    results_root: Path
    tracking_uri: str | None = None  # MLflow's; None: the results root's store

    @property
    def uri(self) -> str:
        return self.tracking_uri or store_uri(self.results_root)

    def prepare(self, log: Callable[[str], None]) -> LiveTrackers | None:
        """In the driver, before any training: the MLflow store and experiment made once (workers that all
        found none would race to create them). A tracker that fails here is reported and left out of the live
        curves; what is left, or None."""
        trackers = list(self.trackers)
        if "mlflow" in trackers:
            try:
                from mlflow.tracking import MlflowClient

                mlflow_experiment(
                    MlflowClient(tracking_uri=self.uri), self.experiment, self.results_root, self.tracking_uri
                )
            except Exception as error:  # noqa: BLE001 - a tracker never stops a run
                trackers.remove("mlflow")
                log(f"mlflow: live logging is off for this run ({_reason(error)}); the tables are written as usual")
        return (
            LiveTrackers(tuple(trackers), self.folder, self.experiment, self.results_root, self.tracking_uri)
            if trackers
            else None
        )

    def open(self, name: str, report: Callable[[str], None]) -> Curves:
        """The live curves of the training ``name`` (``mse__seed0``); ``report(text)``: a line for the console."""
        return Curves(self, name, report)


class Curves:
    """One training's writer per tracker. Never raises: a tracker that fails is reported once and dropped."""

    def __init__(self, live: LiveTrackers, name: str, report: Callable[[str], None]) -> None:
        self.name, self.report = name, report
        self.writers: dict[str, object] = {}
        for tracker in live.trackers:
            try:
                self.writers[tracker] = WRITERS[tracker](live, name)
            except Exception as error:  # noqa: BLE001
                self._failed(tracker, error)

    def write(self, row: dict) -> None:
        """Every curve of a history row at its step: ``history/<column>``, as ``bench export`` names them."""
        points = [
            (tag(f"history/{column}"), float(value))
            for column, value in row.items()
            if column not in NOT_CURVES and isinstance(value, (int, float)) and math.isfinite(value)
        ]
        for tracker, writer in list(self.writers.items()):
            try:
                writer.write(points, int(row["step"]))
            except Exception as error:  # noqa: BLE001
                self._failed(tracker, error)

    def close(self, finished: bool, heldout: dict[str, float], step: int) -> None:
        """The training ended (``finished``: it did not fail) with ``heldout`` metrics at ``step``."""
        points = [(f"heldout/{metric}", float(value)) for metric, value in heldout.items() if math.isfinite(value)]
        for tracker, writer in list(self.writers.items()):
            try:
                writer.close(finished, points, step)
            except Exception as error:  # noqa: BLE001
                self._failed(tracker, error)
        self.writers.clear()

    def _failed(self, tracker: str, error: Exception) -> None:
        writer = self.writers.pop(tracker, None)
        try:
            if writer is not None:
                writer.abandon()
        except Exception:  # noqa: BLE001 - it failed already
            pass
        self.report(
            f"  {self.name}: {tracker} live logging failed ({_reason(error)}); switched off for this training, "
            "which goes on (the finished run is still exported)"
        )


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


class _TensorBoard:
    def __init__(self, live: LiveTrackers, name: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(live.folder / TENSORBOARD_FOLDER / name))

    def write(self, points: list[tuple[str, float]], step: int) -> None:
        now = time.time()
        for name, value in points:
            self.writer.add_scalar(name, value, step, walltime=now)
        self.writer.flush()  # on disk now: a reader sees a run still going, or one killed

    def close(self, finished: bool, points: list[tuple[str, float]], step: int) -> None:
        self.write(points, step)
        self.writer.close()

    def abandon(self) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, live: LiveTrackers, name: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=live.uri)
        experiment = mlflow_experiment(self.client, live.experiment, live.results_root, live.tracking_uri)
        tags = {RUN_DIR_TAG: str(live.folder.resolve()), "lossbench.live": "true"}
        self.run_id = self.client.create_run(experiment, run_name=name, tags=tags).info.run_id

    def write(self, points: list[tuple[str, float]], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(name, value, now, step) for name, value in points])

    def close(self, finished: bool, points: list[tuple[str, float]], step: int) -> None:
        if points:
            self.write(points, step)
        self.client.set_terminated(self.run_id, "FINISHED" if finished else "FAILED")

    def abandon(self) -> None:
        self.client.set_terminated(self.run_id, "FAILED")


WRITERS = {"tensorboard": _TensorBoard, "mlflow": _MLflow}
