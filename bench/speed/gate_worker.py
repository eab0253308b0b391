"""One side of the speed gate: times losses from the ``bench`` package under ROOT, on request.

Run as a script, ``python gate_worker.py ROOT``, by ``bench.speed.gate``, once for the baseline code
(an extracted git revision) and once for the candidate. Both sides run this same file, so the timing loop
is identical and only the loss code differs. It uses nothing of ``bench`` but the loss registry's stable
surface (``build_loss``, ``LossContext``, ``WeightedSum``), so an older revision can be the baseline. Both
sides load the same loss plugins (the installed ones, and those passed with -p/--plugin) through their own
``bench.config.plugins`` (``bench.plugins`` in revisions before the packages); a revision without it cannot,
and its plugin entries are reported as such ("new").

Protocol: one JSON object per line on stdin, one reply per line on stdout.
  {"op": "setup", "entries": [{"name", "terms": [{"loss", "weight", "params"}]}], "resolution",
   "batch_size", "device", "threads", "seed", "plugins": [module or file]}  ->  {"bench": path, "errors": {entry: message}}
  {"op": "calls", "entry", "target_ms"}  ->  {"calls": n}: fwd+bwd calls that take at least target_ms
  {"op": "time", "entry", "calls", "blocks"}  ->  {"ms": [...]}: each block's median per-call ms
Anything else a loss prints goes to stderr, so stdout carries only replies.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time


def main(root: str) -> None:
    sys.path[0] = root  # ROOT's bench, found before any installed one; this file's own folder off the path
    sys.meta_path.insert(0, _OnlyFrom(root))
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    state: dict = {}
    for line in sys.stdin:
        request = json.loads(line)
        reply = {"setup": setup, "calls": calls_for, "time": time_blocks}[request.pop("op")](state, **request)
        replies.write(json.dumps(reply) + "\n")


class _OnlyFrom:
    """Finds ``bench`` and its submodules in ROOT alone. An editable install's finder would otherwise hand a
    baseline that lacks a module (a newer loss file, bench.config.plugins) the checked-out code's one."""

    def __init__(self, root: str) -> None:
        self.root = root

    def find_spec(self, name, path=None, target=None):
        if name != "bench" and not name.startswith("bench."):
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path or [self.root], target)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r} under {self.root}", name=name)
        return spec


def setup(state: dict, *, entries, resolution, batch_size, device, threads, seed, plugins=()) -> dict:
    import torch

    import bench
    from bench.losses import LossContext, WeightedSum, build_loss

    plugin_problem = plugins_problem(plugins)

    if threads:
        torch.set_num_threads(threads)
    state["device"] = device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    shape = (batch_size, 3, resolution, resolution)
    reconstruction, target = (torch.rand(shape, generator=generator, device=device) for _ in range(2))
    state["inputs"] = reconstruction.requires_grad_(True), target
    context = LossContext(image_size=resolution, seed=0)
    state["losses"], errors = {}, {}
    for entry in entries:
        try:
            terms = [build_loss(term["loss"], term["params"], context) for term in entry["terms"]]
            state["losses"][entry["name"]] = WeightedSum(
                [f"t{i}" for i in range(len(terms))], [term["weight"] for term in entry["terms"]], terms
            ).to(device)
        except Exception as error:  # noqa: BLE001 - a loss this revision cannot build is reported, not fatal
            errors[entry["name"]] = f"{type(error).__name__}: {error}".splitlines()[0] + plugin_problem
    return {"bench": os.path.dirname(bench.__file__), "errors": errors}


def plugins_problem(plugins) -> str:
    """Load the loss plugins with this side's ``bench``; what went wrong, as a note for the entries it costs."""
    try:
        from bench.config.plugins import load_plugins as load
    except ImportError:
        # The baseline is often a revision from before bench/ was grouped into packages, where this module was
        # bench.plugins; both layouts must work, since the gate times old commits against the running code.
        try:
            from bench.plugins import load_plugins as load
        except ImportError:
            return "; this revision of bench cannot load loss plugins (it predates bench.plugins)"
    try:
        load(plugins)
    except Exception as error:  # noqa: BLE001 - reported with the entries that need the plugin
        return f"; its plugins did not load: {str(error).splitlines()[0]}"
    return ""


def calls_for(state: dict, *, entry: str, target_ms: float) -> dict:
    """The number of calls whose block lasts at least ``target_ms`` (after warming up), as timeit's autorange."""
    calls = 1
    _block(state, entry, 2)  # warm-up: first calls allocate and pick kernels
    while (elapsed := sum(_block(state, entry, calls))) < target_ms and calls < 1_000_000:
        calls = max(calls * 2, int(calls * 1.2 * target_ms / max(elapsed, 1e-6)))
    return {"calls": calls}


def time_blocks(state: dict, *, entry: str, calls: int, blocks: int) -> dict:
    """One number per block: the median of its calls' times, so a call that lost the CPU to another
    process (one in a block of hundreds, on a busy machine) does not move it."""
    _block(state, entry, 1)  # the other side ran last: refill caches before timing
    return {"ms": [statistics.median(_block(state, entry, calls)) for _ in range(blocks)]}


def _block(state: dict, entry: str, calls: int) -> list[float]:
    """ms of each of ``calls`` fwd+bwd steps. On CUDA the block is timed whole, synchronised before and
    after (a sync per call would time the host), and each call gets the block's mean."""
    import torch

    loss, (reconstruction, target) = state["losses"][entry], state["inputs"]

    def step() -> None:
        reconstruction.grad = None
        loss(reconstruction, target)[0].backward()

    if state["device"].type == "cuda":
        torch.cuda.synchronize(state["device"])
        start = time.perf_counter()
        for _ in range(calls):
            step()
        torch.cuda.synchronize(state["device"])
        return [1e3 * (time.perf_counter() - start) / calls] * calls
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        step()
        times.append(1e3 * (time.perf_counter() - start))
    return times


if __name__ == "__main__":
    main(sys.argv[1])
