"""Several of a suite's trainings at once on one device, each in a worker process of its own.

The autoencoder is small: one training leaves most of a GPU idle between kernel launches, and on a CPU one
process with a thread per core spends much of each small convolution synchronising its threads (on a 2-core VM
an mse step took 15 ms with one thread, 28 ms with two). So ``bench run`` starts N single-purpose worker
processes, each with its own ``Trainer`` (loss networks, images and initial models built once per worker) and
its own thread count, hands each the next training as it finishes one (the costliest first, so no long training
is left to run alone at the end), and yields their plain ``JobResult`` records; the driver alone writes the run
folder, as with Ray (bench.train.distributed). A worker's training is the one the driver would run with the
same thread count: same seed, crops and initial weights, bit for bit on a CPU.

Processes rather than threads: the step is Python-bound between kernels, and a process that dies (killed for
memory, a crash in native code) fails only the training it held; a fresh worker takes its place. The standard
library's process tools rather than Ray: no daemon takes a core from the trainings of a 2-core laptop, and a
plain ``pip install`` has all it needs.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from bench.config.plan import RunSpec
from bench.config.registry import only_in_this_process
from bench.errors import BenchInputError
from bench.losses.registry import get_loss_info
from bench.models.registry import get_model_info
from bench.config.suite import Suite
from bench.train.jobs import JobResult, Trainer
from bench.train.live_trackers import LiveTrackers
from bench.train.loop import model_inputs
from bench.train.watch import Event, Note, forward_warnings, ignore, watched_run

# Packing pays once the trainings outlast the workers' start-up: a worker imports torch and builds every loss
# network of the suite again, 6-8 s on a 2-core VM (the CPU profiles of all_losses.toml and of its miniature).
# Below twice that much estimated training a run stays in one process.
MIN_PACKED_SECONDS = 15.0
# Trainings per GPU when the count is chosen automatically: each worker holds a CUDA context and a copy of the
# loss networks; the GPU time-slices the workers' kernels (one H200, GPU settings: 2 at once 1.66x, 4 at once
# 1.75x the steps per second of one; docs/runs/h200-all-losses-seed0.md).
TRAININGS_PER_GPU = 4
MEMORY_HEADROOM = 0.7  # of the memory available now, what the workers may take together


@dataclass(frozen=True)
class Packing:
    """How a run shares its device: ``trainings`` at once, each with ``threads`` CPU threads."""

    trainings: int
    threads: int
    reason: str  # why this many, for the console and environment.json


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def resident_bytes() -> int:
    """This process's resident memory: what a worker holding the same Trainer will need, about."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def step_seconds(trainer: Trainer, spec: RunSpec) -> float:
    """Seconds of one training step of ``spec`` (model and loss forward and backward on a training batch), the
    second of two so that one-off set-up is left out; 0 for a loss that could not be built or that raises (its
    training reports why), or for a model that raises (a model LossBench cannot train stopped the run before:
    Trainer.check_models)."""
    loss_fn = trainer.loss(spec)
    if isinstance(loss_fn, Exception):
        return 0.0
    try:
        model = copy.deepcopy(trainer.initial_model(spec)).to(trainer.device).train()
    except Exception:  # noqa: BLE001 - foreign code may raise anything; its entries fail with it when they run
        return 0.0
    shape = (spec.train.batch_size, 3, spec.data.resolution, spec.data.resolution)
    batch = torch.rand(shape, generator=torch.Generator().manual_seed(spec.seed)).to(trainer.device)
    seconds = 0.0
    for _ in range(2):
        started = time.perf_counter()
        try:
            loss, _ = loss_fn(model(model_inputs(spec, batch, spec.seed)), batch)
            torch.autograd.grad(loss, list(model.parameters()))  # a loss's own parameters keep no gradient
        except Exception:
            return 0.0
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        seconds = time.perf_counter() - started
    return seconds


def choose_packing(
    requested: int | None, threads: int | None, trainer: Trainer, specs: Sequence[RunSpec], costs: dict[str, float]
) -> Packing:
    """``requested`` trainings at once (None: chosen from the device, its memory and the measured ``costs``,
    seconds per step by entry name), each with ``threads`` threads (None: this process's threads shared out
    evenly on a CPU; one per worker on a GPU, whose workers only launch kernels)."""
    cores = torch.get_num_threads()  # what a one-process run uses: the cores PyTorch found, affinity applied
    if requested is not None:
        count, reason = requested, "set with --concurrent"
    elif len(specs) < 2:
        count, reason = 1, "one training to run"
    elif sum(costs[spec.entry.name] * spec.train.steps for spec in specs) < MIN_PACKED_SECONDS:
        count, reason = 1, f"under {MIN_PACKED_SECONDS:.0f} s of training, not worth starting workers"
    else:
        available = available_memory_bytes()
        by_memory = max(1, int(MEMORY_HEADROOM * available // resident_bytes())) if available else cores
        if trainer.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(trainer.device)
            peak = torch.cuda.max_memory_allocated(trainer.device) + (512 << 20)  # and a CUDA context each
            by_device = max(1, min(TRAININGS_PER_GPU, int(MEMORY_HEADROOM * free // peak)))
            count = min(by_device, usable_cores(), by_memory, len(specs))
            reason = (
                f"{by_device} fit the GPU (at most {TRAININGS_PER_GPU}), {usable_cores()} CPU cores, "
                f"{by_memory} fit the memory available"
            )
        else:
            count = min(cores, by_memory, len(specs))
            reason = f"one per core ({cores}); {by_memory} fit the memory available"
    count = max(1, count)
    if threads is None:
        threads = max(1, cores // count) if trainer.device.type == "cpu" or count == 1 else 1
    return Packing(count, threads, reason)


def registered_here(spec: RunSpec) -> list[str]:
    """The losses and the model of ``spec`` that code in this process registered outside any plugin."""
    names = [(term.loss, get_loss_info(term.loss).source) for term in spec.entry.terms]
    names.append((spec.model.name, get_model_info(spec.model.name).source))
    return [name for name, source in names if only_in_this_process(source)]


def plan_packing(
    specs: Sequence[RunSpec], trainer: Trainer, requested: int | None, threads: int | None
) -> tuple[Packing, list[RunSpec]]:
    """The packing for ``specs`` and the order to hand them out: seed by seed as planned (a stopped run still
    compares every entry of the first seed), the costliest first within a seed when several run at once, so the
    cheap ones fill the end. Each entry's step is measured once, in this process, unless one training at a time
    was asked for."""
    local = sorted({name for spec in specs for name in registered_here(spec)})
    if local and requested not in (None, 1):
        raise BenchInputError(
            f"{', '.join(local)} registered in this process only: worker processes cannot build it",
            where="--concurrent",
            fix="register it in a plugin (-p MODULE or --plugin FILE.py), or leave --concurrent unset",
        )
    if local:
        reason = f"{', '.join(local)} registered in this process only"
        return Packing(1, threads or torch.get_num_threads(), reason), list(specs)
    if requested == 1:
        return choose_packing(1, threads, trainer, specs, {}), list(specs)
    first = {}
    for spec in specs:
        first.setdefault(spec.entry.name, spec)
    costs = {name: step_seconds(trainer, spec) for name, spec in first.items()}
    packing = choose_packing(requested, threads, trainer, specs, costs)
    if packing.trainings == 1:
        return packing, list(specs)
    seeds = list(dict.fromkeys(spec.seed for spec in specs))
    return packing, sorted(specs, key=lambda spec: (seeds.index(spec.seed), -costs[spec.entry.name] * spec.train.steps))


def train_all(
    specs: Sequence[RunSpec],
    trainer: Trainer,
    packing: Packing,
    *,
    plugins: Sequence[str],
    deterministic: bool,
    checkpoints: Path | None,
    tell: Callable[[Event], None] = ignore,
    live: LiveTrackers | None = None,
) -> Iterator[JobResult]:
    """Every training of ``specs``, in this process or packed into workers; results in completion order.
    ``tell``: gets each training's progress events (bench.train.watch) in this process; ``live``: the trackers
    each training writes its curves to as it trains."""
    if packing.trainings > 1:
        yield from run_packed(
            specs,
            trainer.suite,
            str(trainer.device),
            packing,
            plugins=plugins,
            deterministic=deterministic,
            checkpoints=checkpoints,
            lost=trainer.lost,
            tell=tell,
            live=live,
        )
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(packing.threads)  # for the trainings alone: loss timing keeps the process's threads
    try:
        for spec in specs:
            yield watched_run(trainer, spec, checkpoints, tell=tell, live=live)
    finally:
        torch.set_num_threads(threads)


def run_packed(
    specs: Sequence[RunSpec],
    suite: Suite,
    device: str,
    packing: Packing,
    *,
    plugins: Sequence[str],
    deterministic: bool,
    checkpoints: Path | None,
    lost: Callable[[RunSpec, str], JobResult],
    tell: Callable[[Event], None] = ignore,
    live: LiveTrackers | None = None,
) -> Iterator[JobResult]:
    """Yields each training's result as it finishes (in completion order; the driver sorts rows by plan).
    ``lost(spec, reason)`` makes the failed result of a training whose worker died. The workers' progress events
    arrive on the same pipes as their results, in the order sent, and go to ``tell`` as they come."""
    context = multiprocessing.get_context("spawn")  # a forked child would inherit torch's thread pools
    settings = (suite, device, packing.threads, tuple(plugins), deterministic, checkpoints, live)
    waiting = list(reversed(specs))
    workers: list[_Worker] = []
    try:
        for _ in range(min(packing.trainings, len(specs))):
            workers.append(_Worker.start(context, settings))
            workers[-1].give(waiting.pop())
        while any(worker.spec is not None for worker in workers):
            busy = [worker for worker in workers if worker.spec is not None]
            ready = set(wait([worker.connection for worker in busy] + [worker.process.sentinel for worker in busy]))
            for index, worker in enumerate(workers):
                if worker.spec is None or not {worker.connection, worker.process.sentinel} & ready:
                    continue
                try:
                    kind, payload = pickle.loads(worker.connection.recv_bytes())
                except EOFError:
                    worker.close()
                    kind, payload = (
                        "lost",
                        lost(
                            worker.spec,
                            f"its training process exited with code {worker.process.exitcode} "
                            "(killed for memory, or a crash in native code)",
                        ),
                    )
                if kind == "progress":  # the training goes on
                    tell(payload)
                    continue
                if kind == "raised":  # what stops a one-process run stops this one (a file it cannot write)
                    raise payload
                worker.spec = None
                yield payload
                if waiting:
                    if not worker.process.is_alive():
                        workers[index] = worker = _Worker.start(context, settings)
                    worker.give(waiting.pop())
    finally:
        for worker in workers:
            worker.close()


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    connection: Connection
    spec: RunSpec | None = None

    @classmethod
    def start(cls, context, settings: tuple) -> _Worker:
        mine, theirs = context.Pipe()
        process = context.Process(target=_serve, args=(theirs, *settings), daemon=True)
        process.start()
        theirs.close()
        return cls(process, mine)

    def give(self, spec: RunSpec) -> None:
        self.spec = spec
        self.connection.send_bytes(pickle.dumps(spec))

    def close(self) -> None:
        """An idle worker reads the closed pipe's end and exits by itself; a busy one (the run stopped) is ended."""
        self.connection.close()
        self.process.join(timeout=0 if self.spec is not None else 10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


def _serve(
    connection: Connection,
    suite: Suite,
    device: str,
    threads: int,
    plugins: Sequence[str],
    deterministic: bool,
    checkpoints: Path | None,
    live: LiveTrackers | None,
) -> None:
    """A worker: trains each RunSpec it is sent, sending ("progress", event) as it trains (bench.train.watch),
    then ("done", JobResult) or ("raised", error)."""
    from bench.config.plugins import load_plugins
    from bench.train.process import make_deterministic

    def tell(event: Event) -> None:
        try:
            message = pickle.dumps(("progress", event))
        except Exception:  # noqa: BLE001 - a warning of a class only this process knows
            message = pickle.dumps(("progress", Note(str(event))))
        connection.send_bytes(message)

    forward_warnings(tell)  # the driver prints them, once a run, between the lines of its display
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the driver ends us
    torch.set_num_threads(threads)
    load_plugins(plugins)
    if deterministic:
        make_deterministic()
    trainer = Trainer(suite, device, show_progress=False, log=lambda message: None)
    while True:
        try:
            spec = pickle.loads(connection.recv_bytes())
        except EOFError:  # the driver is gone
            return
        try:
            reply = ("done", watched_run(trainer, spec, checkpoints, tell=tell, live=live))
        except Exception as error:  # noqa: BLE001 - Trainer.run lets through only what stops the run
            reply = ("raised", error)
        connection.send_bytes(pickle.dumps(reply))
