"""A training's progress: a redrawn bar on a terminal, plain periodic lines anywhere else.

A bar redraws itself with carriage returns many times a second; in a file (a batch job's log, ``> run.log``)
every redraw stays, hundreds of kilobytes per run. Where stderr is not a terminal, progress is instead one
line every tenth of the steps, each flushed at once so a log being tailed is current.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TextIO

from tqdm.auto import tqdm

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
