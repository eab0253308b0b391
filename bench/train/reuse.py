"""Train only what changed: a run asks the store of finished trainings (bench.results.store) for each planned
training before it trains, and stores each training it finishes.

A hit is handed to the run as the ``JobResult`` the training would have returned: its quality row, history,
per-image rows and reconstructions (the PNG's bytes), with ``reused_from`` ("KEY from RUN") on its row; the
entry's name is the one planned (keys leave names out). A miss trains as before and, if it finished, is stored;
a failed training never is. ``fresh``: nothing is looked up, everything trains and is stored again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch

from bench.config.plan import RunSpec
from bench.losses.precision import loss_network_precision
from bench.results import png_bytes
from bench.results.keys import TrainingKey, Unkeyable, training_key
from bench.results.store import Store, StoreWarning
from bench.train.jobs import JobResult, Trainer


class Reuse:
    """The store's side of one run: keys of the planned trainings, hits, and the storing of what trains."""

    def __init__(
        self,
        store: Store | None,
        trainer: Trainer,
        *,
        suite_name: str,
        run_folder: Path,
        threads: int,
        deterministic: bool,
        fresh: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        self.store, self.trainer, self.fresh, self.log = store, trainer, fresh, log
        self.suite_name, self.run_folder = suite_name, str(run_folder)
        self.threads, self.deterministic = threads, deterministic
        self.keys: dict[tuple[str, int], TrainingKey | None] = {}
        self.reused = 0

    def key(self, spec: RunSpec) -> TrainingKey | None:
        """``spec``'s key; None where it has none (its loss could not be built, or its code cannot be read)."""
        name = (spec.entry.name, spec.seed)
        if name not in self.keys:
            loss = self.trainer.loss(spec)
            if isinstance(loss, Exception):  # the training fails: nothing to look up or store
                self.keys[name] = None
            else:
                try:
                    self.keys[name] = training_key(
                        spec,
                        images=self.trainer.images(spec),
                        loss=loss,
                        metrics=self.trainer.metrics,
                        device=self.trainer.device,
                        threads=self.threads,
                        deterministic=self.deterministic,
                        loss_networks=loss_network_precision(spec.train.loss_networks, self.trainer.device),
                    )
                except Unkeyable as reason:
                    self.log(f"  {spec.entry.name} seed {spec.seed}: not stored ({reason})")
                    self.keys[name] = None
        return self.keys[name]

    def look_up(self, specs: Sequence[RunSpec]) -> tuple[list[JobResult], list[RunSpec]]:
        """The stored results of ``specs`` (hits) and the specs left to train, in their order."""
        if self.store is None:
            return [], list(specs)
        hits, misses = [], []
        for spec in specs:
            key = self.key(spec)
            found = None
            if key is not None and not self.fresh:
                with self._warnings_logged():
                    found = self.store.get(key)
            if found is None:
                misses.append(spec)
                continue
            entry = {"entry": spec.entry.name, "seed": spec.seed}
            reused_from = f"{key.short} from {found.source_run}"
            hits.append(
                JobResult(
                    row={**found.row, **entry, "reused_from": reused_from},
                    history=[{**row, **entry} for row in found.history],
                    reconstructions=None,
                    per_image=[{**row, **entry} for row in found.per_image],
                    png=found.png,
                    reused_from=reused_from,
                )
            )
        self.reused += len(hits)
        return hits, misses

    def storing(self, outcomes: Iterable[JobResult]) -> Iterator[JobResult]:
        """``outcomes`` as they come, each finished training stored on its way."""
        for outcome in outcomes:
            self.keep(outcome)
            yield outcome

    def keep(self, outcome: JobResult) -> None:
        row = outcome.row
        if self.store is None or outcome.reused_from or row.get("status") != "ok":
            return
        key = self.keys.get((row["entry"], row["seed"]))
        if key is None:
            return
        with self._warnings_logged():
            self.store.put(
                key,
                suite=self.suite_name,
                row=row,
                history=outcome.history,
                per_image=outcome.per_image,
                png=png_bytes(outcome.reconstructions) if outcome.reconstructions is not None else None,
                source_run=self.run_folder,
                replace=self.fresh,
            )

    @contextlib.contextmanager
    def _warnings_logged(self) -> Iterator[None]:
        """The store's warnings (a damaged folder set aside, a write that failed) as the run's own lines."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StoreWarning)
            yield
        for warning in caught:
            self.log(f"  warning: {warning.message}")

    def summary(self, planned: int) -> str:
        where = "" if self.store is None else f" (store: {self.store.root})"
        return f"{self.reused} of {planned} trainings reused from earlier runs{where}"


def fewer_at_once(packing, misses: int):
    """``packing`` for ``misses`` trainings: no more workers than trainings, the thread count kept (the results
    depend on it, and the keys name it)."""
    count = max(1, min(packing.trainings, misses))
    if count == packing.trainings:
        return packing
    return dataclasses.replace(packing, trainings=count, reason=f"{packing.reason}; {misses} left to train")


def key_threads(packing) -> int:
    """The CPU threads each training uses: the packing's, or (on Ray, which gives each worker the driver's
    count) this process's."""
    return packing.threads if packing is not None else torch.get_num_threads()
