"""What a training tells while it trains: a ``Progress`` event at each history row, and its curves in the live
trackers (bench.train.live_trackers).

``watched_run`` is ``Trainer.run`` with both attached, the same wherever the training runs: in the driver, in a
packed worker (which sends the events to the driver over its pipe, bench.train.pool) or in a Ray worker. The
driver shows the events in its one display (bench.train.progress.RunDisplay). Events and trackers only read
the rows the loop has logged: the training and its results are the same with or without them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Union

from bench.config.names import entry_file
from bench.config.plan import RunSpec
from bench.evaluate.metrics import METRICS

if TYPE_CHECKING:  # the loop's module imports the display's, which imports the events from here
    from bench.train.jobs import JobResult, Trainer
    from bench.train.live_trackers import LiveTrackers


@dataclass(frozen=True)
class Progress:
    """A training at a logged step: its loss there and its held-out PSNR when last evaluated (None: not yet)."""

    entry: str
    seed: int
    step: int
    steps: int
    loss: float
    eval_psnr: float | None
    seconds: float  # training seconds so far, evaluation left out


@dataclass(frozen=True)
class Note:
    """A line for the driver's console from a training in progress (a live tracker that failed)."""

    text: str


@dataclass(frozen=True)
class Warned:
    """A warning a worker process raised: the driver shows it as one of its own (so once a run, however many
    workers raise it), between the lines of its display."""

    message: str
    category: type[Warning]
    filename: str
    lineno: int


Event = Union[Progress, Note, Warned]


def forward_warnings(tell: Callable[[Event], None]) -> None:
    """In a worker process: each warning it would print is told to the driver instead."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        tell(Warned(str(message), category, filename, lineno))

    warnings.showwarning = show


def ignore(event: Event) -> None:
    """A ``tell`` for a training no one watches."""


def watched_run(
    trainer: Trainer,
    spec: RunSpec,
    checkpoints: Path | None = None,
    *,
    tell: Callable[[Event], None] = ignore,
    live: LiveTrackers | None = None,
) -> JobResult:
    """``trainer.run(spec, checkpoints)``, telling a ``Progress`` at each history row and writing the row to
    ``live``'s trackers (none: None)."""
    curves = live.open(entry_file(spec.entry.name, spec.seed, ""), lambda text: tell(Note(text))) if live else None
    psnr = None

    def on_log(row: dict) -> None:
        nonlocal psnr
        psnr = row.get("eval_psnr", psnr)
        seconds = float(row["seconds"])
        tell(
            Progress(spec.entry.name, spec.seed, int(row["step"]), spec.train.steps, float(row["loss"]), psnr, seconds)
        )
        if curves is not None:
            curves.write(row)

    try:
        result = trainer.run(spec, checkpoints, on_log)
    except BaseException:
        if curves is not None:
            curves.close(False, {}, 0)
        raise
    if curves is not None:
        finished = result.row.get("status") == "ok"
        heldout = {metric: result.row[metric] for metric in METRICS if finished and metric in result.row}
        curves.close(finished, heldout, spec.train.steps)
    return result
