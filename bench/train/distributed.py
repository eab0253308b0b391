"""Entries x seeds as Ray jobs: `bench run --workers N` (local Ray) or `--ray-address ADDR` (a cluster).

Each Ray actor loads the driver's loss plugins (``bench.config.plugins``), holds one ``bench.train.jobs.Trainer`` (loss
networks, images and initial models built once per actor) and returns plain ``JobResult`` records; the driver alone writes the run folder, so files stay atomic
and resume works as in a single-process run. Ray is an optional extra: ``pip install -e ".[distributed]"``.

While they train, the actors put their progress events (bench.train.watch) on a Ray queue, which the driver
empties into the run's display twice a second while it waits for results; they write their live tracker curves
themselves (on a cluster, the run folder's TensorBoard files land on the worker's machine, so an MLflow server
is the tracker to watch there).
"""

from __future__ import annotations

import os
from typing import Callable, Iterator, Sequence

import torch

from bench.errors import BenchInputError
from bench.train.jobs import JobResult
from bench.train.live_trackers import LiveTrackers
from bench.train.watch import Event, ignore, watched_run
from bench.config.plan import RunSpec
from bench.config.plugins import command_line_plugins, load_plugins
from bench.config.suite import Suite


def _import_ray():
    try:
        import ray
    except ModuleNotFoundError:
        raise BenchInputError(
            "--workers/--ray-address need Ray, which is not installed",
            where="command line",
            fix='pip install -e ".[distributed]"  (or drop --workers)',
        ) from None
    return ray


def run_on_ray(
    specs: Sequence[RunSpec],
    suite: Suite,
    device: str,
    *,
    workers: int,
    address: str | None,
    gpus: str | None,
    deterministic: bool = False,
    log: Callable[[str], None] = print,
    tell: Callable[[Event], None] = ignore,
    live: LiveTrackers | None = None,
) -> Iterator[JobResult]:
    """Yields each job's result as it finishes (in completion order; the driver sorts rows by plan).
    ``deterministic``: each worker turns on deterministic kernels, as `--deterministic` does in the driver.
    ``tell``: gets the trainings' progress events; ``live``: the trackers they write their curves to."""
    ray = _import_ray()
    on_gpu = device.startswith("cuda")
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus  # before Ray starts, so it only sees and assigns these GPUs
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=workers,
                num_gpus=len(gpus.split(",")) if gpus else None,
                log_to_driver=False,
                include_dashboard=False,
            )
    # One GPU per actor on GPU runs (Ray sets CUDA_VISIBLE_DEVICES per actor, so "cuda" is that actor's GPU).
    resources = {"num_gpus": 1, "num_cpus": 1} if on_gpu else {"num_cpus": 1}
    trainer_actor = ray.remote(**resources)(_TrainerActor)
    # Ray caps each actor at its num_cpus threads (OMP_NUM_THREADS=1); the driver's count keeps CPU float
    # reductions in the order a single-process run uses, so the tables match it exactly.
    threads = torch.get_num_threads()
    plugins = command_line_plugins()  # installed plugins every worker finds itself; these it must be told
    actors = [
        trainer_actor.remote(suite, "cuda" if on_gpu else device, threads, plugins, deterministic)
        for _ in range(max(1, workers))
    ]
    log(f"Ray: {len(actors)} workers ({'1 GPU' if on_gpu else '1 CPU'} each) on {address or 'a local instance'}")
    from ray.util.queue import Queue

    events = Queue(actor_options={"num_cpus": 0})  # takes no CPU a training would need
    pool = ray.util.ActorPool(actors)
    for spec in specs:
        pool.submit(lambda actor, spec: actor.run.remote(spec, events, live), spec)
    try:
        while pool.has_next():
            try:
                result = pool.get_next_unordered(timeout=0.5)
            except TimeoutError:
                result = None
            for event in events.get_nowait_batch(events.qsize()):  # all of a finished training's, before it
                tell(event)
            if result is not None:
                yield result
    finally:
        for actor in [*actors, events.actor]:
            ray.kill(actor)


class _TrainerActor:
    def __init__(self, suite: Suite, device: str, threads: int, plugins: Sequence[str], deterministic: bool) -> None:
        from bench.train.jobs import Trainer
        from bench.train.process import make_deterministic

        load_plugins(plugins)
        torch.set_num_threads(threads)
        if deterministic:
            make_deterministic()
        self.trainer = Trainer(suite, device, show_progress=False)

    def run(self, spec: RunSpec, events=None, live: LiveTrackers | None = None) -> JobResult:
        tell = events.put if events is not None else ignore
        return watched_run(self.trainer, spec, tell=tell, live=live)
