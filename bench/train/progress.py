"""Progress on the console: a training's own bar or lines (``step_progress``, for a training run on its own),
and the one display of a whole run (``RunDisplay``), whatever trains where.

A bar redraws itself with carriage returns many times a second; in a file (a batch job's log, ``> run.log``)
every redraw stays, hundreds of kilobytes per run. Where stderr is not a terminal, progress is instead plain
lines, each flushed at once so a log being tailed is current.

``RunDisplay`` lives in the driver and gets every training's ``Progress`` events (bench.train.watch), from this
process, from packed workers over their pipes (bench.train.pool) or from Ray workers. On a terminal it draws,
with tqdm, an overall bar of the trainings done out of those planned, with the time left from the measured step
times, and below it one line per running training (entry, seed, step, loss, held-out PSNR when last evaluated),
each redrawn in place. Elsewhere it writes at most one line per training per tenth of its steps, and one line
per training done with its count (``[7/30]``) and the time left. The run's own lines (a training's result)
go through ``RunDisplay.log``, which clears the bars, writes and redraws them. Disabled (``--no-progress``) it
shows nothing but those lines.
"""

from __future__ import annotations

import sys
import time
import warnings
from statistics import mean
from typing import Callable, Iterable, Iterator, Sequence, TextIO

from tqdm.auto import tqdm

from bench.config.plan import RunSpec
from bench.train.watch import Event, Note, Progress, Warned

LINES_PER_TRAINING = 10


def step_progress(iterable: Iterable, *, total: int, desc: str, enabled: bool = True):
    """``tqdm(iterable, total=total, desc=desc)`` on a terminal; ``PlainLines`` elsewhere. Either way
    the result is iterated, told ``set_postfix(...)`` and ``close()``d."""
    if enabled and not sys.stderr.isatty():
        return PlainLines(iterable, total=total, desc=desc, stream=sys.stderr)
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


class PlainLines:
    """Yields ``iterable``'s items, writing ``desc: step N/total (P%), key=value, S s`` to ``stream`` every
    ``total / LINES_PER_TRAINING`` steps and at the last step."""

    def __init__(self, iterable: Iterable, *, total: int, desc: str, stream: TextIO) -> None:
        self.iterable, self.total, self.desc, self.stream = iterable, total, desc, stream
        self.every = max(1, total // LINES_PER_TRAINING)
        self.postfix = ""

    def __iter__(self) -> Iterator:
        started = time.perf_counter()
        for step, item in enumerate(self.iterable, start=1):
            yield item
            if step % self.every == 0 or step == self.total:
                self.stream.write(
                    f"{self.desc}: step {step}/{self.total} ({100 * step // self.total}%)"
                    f"{self.postfix}, {time.perf_counter() - started:.1f} s\n"
                )
                self.stream.flush()

    def set_postfix(self, **values: object) -> None:
        self.postfix = "".join(f", {key}={value}" for key, value in values.items())

    def close(self) -> None:
        """Nothing to clear: every line written stays, as a log's lines should."""


Key = tuple[str, int]  # (entry, seed)


def seconds_left(planned: dict[Key, int], latest: dict[Key, Progress], done: set[Key], at_once: int) -> float | None:
    """The time left to train what is not ``done`` of ``planned`` (steps by training), from the seconds per step
    measured so far: each training's own, else its entry's in another seed, else the mean of all; the work
    shared by ``at_once`` trainings at a time (their step times were measured sharing the device). None before
    any step was measured."""
    rates = {key: event.seconds / event.step for key, event in latest.items() if event.step > 0 and event.seconds > 0}
    if not rates:
        return None
    by_entry: dict[str, list[float]] = {}
    for (entry, _), rate in rates.items():
        by_entry.setdefault(entry, []).append(rate)
    overall = mean(rates.values())
    left = [key for key in planned if key not in done]
    work = sum(
        (planned[key] - (latest[key].step if key in latest else 0))
        * rates.get(key, mean(by_entry.get(key[0], [overall])))
        for key in left
    )
    return work / max(1, min(at_once, len(left)))


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class RunDisplay:
    """The progress of a run's ``specs``, trained ``at_once`` at a time; see the module's docstring.

    ``tell(event)`` for each event, ``finished(entry, seed)`` when a training's result is in, ``log(message)``
    for every other line of the run meanwhile, ``close()`` at the end (or iterate ``follow(outcomes)``)."""

    def __init__(
        self,
        specs: Sequence[RunSpec],
        at_once: int,
        *,
        log: Callable[[str], None] = print,
        enabled: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled and len(specs) > 0
        self.terminal = self.enabled and self.stream.isatty()
        self.at_once = max(1, at_once)
        self.planned = {(spec.entry.name, spec.seed): spec.train.steps for spec in specs}
        self.latest: dict[Key, Progress] = {}
        self.done: set[Key] = set()
        self.tenths: dict[Key, int] = {}  # off a terminal: the tenth of its steps each training last wrote
        self.bars: dict[Key, tqdm] = {}
        self._log = log
        self.width = max((len(f"{entry} seed {seed}") for entry, seed in self.planned), default=0)
        self.overall = None
        if self.terminal:
            self.overall = tqdm(
                total=len(specs),
                desc="trainings",
                position=0,
                leave=False,
                file=self.stream,
                dynamic_ncols=True,
                bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed}{postfix}",
            )

    def log(self, message: str) -> None:
        """One of the run's own lines, on stdout, between the bars or flushed as written."""
        if self.overall is not None:
            with tqdm.external_write_mode():
                self._log(message)
                sys.stdout.flush()
        else:
            self._log(message)
            sys.stdout.flush()

    def tell(self, event: Event) -> None:
        if isinstance(event, Note):
            self.log(event.text)
            return
        if isinstance(event, Warned):
            if self.overall is not None:
                with tqdm.external_write_mode(file=sys.stderr):
                    warnings.warn_explicit(event.message, event.category, event.filename, event.lineno)
            else:
                warnings.warn_explicit(event.message, event.category, event.filename, event.lineno)
            return
        key = (event.entry, event.seed)
        if not self.enabled or key in self.done:
            return
        self.latest[key] = event
        if self.terminal:
            self._draw(key, event)
        else:
            tenth = event.step * LINES_PER_TRAINING // event.steps
            if self.tenths.get(key) != tenth:
                self.tenths[key] = tenth
                psnr = f", eval_psnr={event.eval_psnr:.2f}" if event.eval_psnr is not None else ""
                self._line(
                    f"{event.entry} seed {event.seed}: step {event.step}/{event.steps} "
                    f"({100 * event.step // event.steps}%), loss={event.loss:.4g}{psnr}, {event.seconds:.1f} s"
                )

    def finished(self, entry: str, seed: int) -> None:
        """The result of ``entry``'s ``seed`` is in (finished or failed)."""
        key = (entry, seed)
        self.done.add(key)
        if not self.enabled:
            return
        bar = self.bars.pop(key, None)
        if bar is not None:
            bar.close()
        left = seconds_left(self.planned, self.latest, self.done, self.at_once)
        if self.overall is not None:
            self.overall.update(1)
            self._show_left(left)
        else:
            count = f"[{len(self.done & self.planned.keys())}/{len(self.planned)}]"
            still = len(self.planned.keys() - self.done)
            after = f"; about {duration(left)} left" if still and left is not None else ""
            self._line(f"{count} {entry} seed {seed} finished{after}")

    def follow(self, outcomes: Iterable) -> Iterator:
        """Yields each of ``outcomes`` (``JobResult``s) and, once the run has written it, marks it finished; the
        display closes when the run stops iterating."""
        try:
            for outcome in outcomes:
                yield outcome
                self.finished(outcome.row["entry"], outcome.row["seed"])
        finally:
            self.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
        if self.overall is not None:
            self.overall.close()
            self.overall = None

    def _line(self, text: str) -> None:
        sys.stdout.flush()  # the run's own lines before, in a log that takes both
        self.stream.write(text + "\n")
        self.stream.flush()

    def _draw(self, key: Key, event: Progress) -> None:
        bar = self.bars.get(key)
        if bar is None:
            taken = {abs(bar.pos) for bar in self.bars.values()}  # tqdm keeps a position it was given negated
            position = next(p for p in range(1, len(self.bars) + 2) if p not in taken)
            bar = self.bars[key] = tqdm(
                total=event.steps,
                desc=f"  {event.entry} seed {event.seed}".ljust(self.width + 2),
                position=position,
                leave=False,
                file=self.stream,
                dynamic_ncols=True,
                mininterval=0,
                bar_format="{desc} |{bar}| {n_fmt}/{total_fmt}{postfix}",
            )
        psnr = f", PSNR {event.eval_psnr:.2f} dB" if event.eval_psnr is not None else ""
        bar.n = event.step
        bar.set_postfix_str(f"loss {event.loss:.4g}{psnr}", refresh=False)
        bar.refresh()
        self._show_left(seconds_left(self.planned, self.latest, self.done, self.at_once))

    def _show_left(self, left: float | None) -> None:
        if self.overall is not None:
            self.overall.set_postfix_str(f"about {duration(left)} left" if left is not None else "", refresh=True)
