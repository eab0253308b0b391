"""The speed gate: the baseline code and the candidate code timed on this machine, in this run, interleaved.

A committed table of times (even ones divided by a calibration workload) does not carry from one machine
to another: tiny losses are bound by per-call overhead, large ones by arithmetic, and CPUs differ in the
ratio of the two. So, as ``asv continuous`` does, the gate times both versions of the code side by side:

1. The baseline revision's ``bench`` package is extracted from git (``git archive``) into a temporary
   folder; the candidate is the ``bench`` package running this command (uncommitted changes included).
2. Worker processes (``bench/speed/gate_worker.py``), ``processes`` per side, build every entry's loss
   from their side's code and wait for requests; only one works at a time. Identical code in two
   processes can differ by several percent for good (memory layout, which core, what it shares a cache
   with: 12% seen here for MSE), so rounds go to each side's processes in turn and that spread shows
   up in the samples, as asv's ``processes`` setting does, instead of passing for a code change.
3. Each loss is timed in blocks of back-to-back fwd+bwd calls lasting at least ``target_ms`` (the same
   number of calls on both sides), one block per side per round, the order of the sides alternating
   from one loss and round to the next. Load that comes and goes on a shared machine then falls on both
   sides alike, and a block long enough to span many scheduler ticks averages per-call overhead, so
   even sub-millisecond losses give a steady per-call time.
4. ``bench.speed.stats`` gives each loss a verdict from the two samples of ``rounds`` blocks.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

import pandas as pd

import bench
from bench.errors import BenchInputError
from bench.config.plugins import command_line_plugins
from bench.results import run_git
from bench.speed.settings import ALPHA, MIN_FACTOR, GateSettings
from bench.speed.stats import compare_samples
from bench.config.suite import Suite

WORKER = Path(__file__).with_name("gate_worker.py")
SIDES = ("baseline", "candidate")


def run_gate(
    suite: Suite,
    baseline_ref: str,
    *,
    candidate_ref: str | None = None,
    device: str = "cpu",
    settings: GateSettings = GateSettings(),
    repo: Path = Path("."),
    log_dir: Path,
    log: Callable[[str], None] = print,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time every entry of ``suite`` (fp32, eager, at its timing size and threads) under ``baseline_ref``'s
    code and the candidate's: ``candidate_ref``'s, or the running code's when None. Returns (verdicts,
    samples): one row per entry, one row per timed block."""
    if settings.rounds < 2 or settings.target_ms <= 0 or settings.processes < 1:
        raise BenchInputError(
            f"need at least 2 rounds, 1 process and a positive block time, got {settings}",
            where="command line",
            fix=f"e.g. --rounds {GateSettings.rounds} --processes {GateSettings.processes}",
        )
    with tempfile.TemporaryDirectory(prefix="lossbench-gate-") as checkouts:
        roots = {"baseline": Path(checkouts) / "baseline", "candidate": Path(bench.__file__).parent.parent}
        commits = {"baseline": extract_revision(baseline_ref, repo, roots["baseline"]), "candidate": "running code"}
        if candidate_ref is not None:
            roots["candidate"] = Path(checkouts) / "candidate"
            commits["candidate"] = extract_revision(candidate_ref, repo, roots["candidate"])
        candidate = (
            f"{candidate_ref} ({commits['candidate'][:12]})" if candidate_ref else f"the code in {roots['candidate']}"
        )
        log(
            f"speed gate: baseline {baseline_ref} ({commits['baseline'][:12]}) against {candidate}, "
            f"{settings.rounds} interleaved rounds, blocks of >= {settings.target_ms:g} ms, "
            f"{settings.processes} processes per side"
        )
        workers = {
            side: [
                _Worker(side, roots[side], log_dir / f"speed_gate_{side}_{i}.log") for i in range(settings.processes)
            ]
            for side in SIDES
        }
        try:
            samples = _interleave(suite, workers, device, settings, log)
        finally:
            for worker in (worker for pool in workers.values() for worker in pool):
                worker.close()
    verdicts = verdict_table(
        samples,
        suite_order=[entry.name for entry in suite.entries],
        min_factor=settings.min_factor,
        alpha=settings.alpha,
    )
    verdicts.insert(1, "baseline_commit", commits["baseline"])
    verdicts.insert(2, "candidate_commit", commits["candidate"])
    return verdicts, samples


def verdict_table(
    samples: pd.DataFrame, *, suite_order: list[str], min_factor: float = MIN_FACTOR, alpha: float = ALPHA
) -> pd.DataFrame:
    """One row per entry (in ``suite_order``): ``bench.speed.stats.compare_samples`` of its two sides."""
    rows = []
    for entry in suite_order:
        mine = samples[samples["entry"] == entry]
        side = {name: mine.loc[mine["side"] == name, "ms"].dropna() for name in SIDES}
        calls = mine["calls"].max() if len(mine) else 0
        rows.append(
            {
                "entry": entry,
                "calls_per_block": calls,
                **compare_samples(side["baseline"], side["candidate"], min_factor=min_factor, alpha=alpha),
            }
        )
    return pd.DataFrame(rows)


def extract_revision(ref: str, repo: Path, into: Path) -> str:
    """Put the ``bench`` package of git revision ``ref`` under ``into``; return the full commit hash."""
    commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", what=f"revision {ref!r}").strip()
    archive = _git_run(repo, "archive", "--format=tar", commit, "bench", text=False)
    if archive.returncode:
        raise BenchInputError(
            f"commit {commit[:12]} has no bench package ({archive.stderr.decode().strip()})",
            where=f"--against {ref}",
            fix="name a LossBench commit",
        )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")  # "data": no absolute paths, links out or device files
    return commit


def _git_run(repo: Path, *args: str, text: bool = True) -> subprocess.CompletedProcess:
    done = run_git(repo, *args, text=text)
    if done is None:
        raise BenchInputError(
            "git is not installed",
            where="--against",
            fix="install git; the gate takes the baseline code from the repository's history",
        )
    return done


def _git(repo: Path, *args: str, what: str) -> str:
    done = _git_run(repo, *args)
    if done.returncode:
        raise BenchInputError(
            f"{what} is not in the history of {repo.resolve()}",
            where="--against",
            fix="run from a full clone of the repository (not --depth 1; `git fetch --unshallow` "
            "adds the history), or name another commit",
        ) from None
    return done.stdout


def _interleave(
    suite: Suite, workers: dict[str, list["_Worker"]], device: str, settings: GateSettings, log: Callable[[str], None]
) -> pd.DataFrame:
    timing = suite.timing
    entries = [
        {
            "name": entry.name,
            "terms": [{"loss": t.loss, "weight": t.weight, "params": dict(t.params)} for t in entry.terms],
        }
        for entry in suite.entries
    ]
    errors = {}
    for worker in (worker for pool in workers.values() for worker in pool):
        reply = worker.ask(
            "setup",
            entries=entries,
            resolution=timing.resolution,
            batch_size=timing.batch_size,
            device=device,
            threads=timing.threads,
            seed=settings.seed,
            plugins=command_line_plugins(),
        )
        if Path(reply["bench"]).resolve() != (worker.root / "bench").resolve():
            raise RuntimeError(f"the {worker.side} worker imported bench from {reply['bench']}, not {worker.root}")
        for name, message in reply["errors"].items():
            if name not in errors:
                log(f"  {name}: the {worker.side} code cannot build it ({message}); not gated")
        errors.update(reply["errors"])
    timed = [entry["name"] for entry in entries if entry["name"] not in errors]
    calls = {
        name: workers["candidate"][0].ask("calls", entry=name, target_ms=settings.target_ms)["calls"] for name in timed
    }
    for worker in (worker for pool in workers.values() for worker in pool):
        for name in timed:  # first calls allocate and pick kernels
            worker.ask("time", entry=name, calls=calls[name], blocks=1)
    order = random.Random(settings.seed)
    rows = []
    for round_ in range(settings.rounds):
        for name in timed:
            sides = list(SIDES)
            order.shuffle(sides)  # neither side is always the one that runs after a context switch
            for side in sides:
                worker = workers[side][round_ % settings.processes]
                ms = worker.ask("time", entry=name, calls=calls[name], blocks=1)["ms"][0]
                rows.append(
                    {
                        "entry": name,
                        "side": side,
                        "round": round_,
                        "process": round_ % settings.processes,
                        "calls": calls[name],
                        "ms": ms,
                    }
                )
        log(f"  round {round_ + 1}/{settings.rounds} done")
    return pd.DataFrame(rows, columns=["entry", "side", "round", "process", "calls", "ms"])


class _Worker:
    def __init__(self, side: str, root: Path, log_path: Path) -> None:
        self.side, self.root, self.log_path = side, root, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "w")
        self._process = subprocess.Popen(
            [sys.executable, str(WORKER), str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )

    def ask(self, op: str, **request) -> dict:
        try:
            self._process.stdin.write(json.dumps({"op": op, **request}) + "\n")
            self._process.stdin.flush()
            reply = self._process.stdout.readline()
        except BrokenPipeError:
            reply = ""
        if not reply:
            self._log.flush()
            tail = "\n    ".join(self.log_path.read_text().strip().splitlines()[-8:])
            raise BenchInputError(
                f"the {self.side} code stopped while answering {op!r}:\n    {tail}",
                where=str(self.log_path),
                fix="read the log; a loss that fails to run cannot be timed",
            )
        return json.loads(reply)

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._log.close()
