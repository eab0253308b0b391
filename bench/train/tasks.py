"""A suite of several tasks (``task = ["denoise", "deblur", ...]``): each task is a whole run, in its own folder
``<run>/<task>/``, one after the other; the parent folder holds their tables side by side (a ``task`` column),
so that the report gives one table and one verdict per task."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import pandas as pd

from bench import results
from bench.config.suite import Suite
from bench.errors import BenchInputError
from bench.train.rates import run_at_rates
from bench.train.runner import RunOptions, RunOutcome, RunStopped

TABLES = ("quality", "summary")  # the parent's tables: every task's rows, its name in the first column


def run_tasks(
    suites: Sequence[Suite],
    *,
    results_root: Path,
    argv: list[str],
    options: RunOptions = RunOptions(),
    resume: Path | None = None,
    force: bool = False,
    log=print,
) -> RunOutcome:
    """Runs each suite of ``suites`` (one per task, as ``bench.config.suite.task_suites`` gives them) into its own
    folder under one parent; ``resume``: a parent folder, whose finished tasks are kept and whose others go on.
    Ctrl-C or a file that cannot be written raises ``RunStopped`` for the parent folder."""
    first = suites[0]
    if resume is None:
        parent = results.new_run_folder(results_root, first.name)
        results.copy_suite(first, parent)
        results.write_json(
            parent / "environment.json",
            {
                "suite": first.name,
                "tasks": [s.task for s in suites],
                "argv": argv,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
    else:
        parent = resume
        if not results.task_folders(parent):
            raise BenchInputError(
                "not the folder of a run of several tasks (its environment.json lists none)",
                where=str(parent),
                fix="pass the folder that `bench run` printed for this suite",
            )
    outcomes = []
    for suite in suites:
        folder = parent / suite.task
        started = (folder / "environment.json").is_file()
        log(f"\n=== task {suite.task} ===")
        # The losses are timed once, by the first task; each task times its own model's training step.
        timed = results.read_table(outcomes[0].folder, "speed") if outcomes else pd.DataFrame()
        try:
            outcomes.append(
                run_at_rates(
                    suite,
                    results_root=results_root,
                    argv=argv,
                    log=log,
                    resume=folder if started else None,
                    folder=None if started else folder,
                    losses_timed=None if timed.empty else timed,
                    options=options,
                    force=force,
                )
            )
        except RunStopped as stopped:
            raise RunStopped(parent, stopped.error) from None
        if len(outcomes) > 1 and not (folder / "speed_references.csv").is_file():
            references = results.read_table(outcomes[0].folder, "speed_references")
            if not references.empty:
                results.write_table(folder, "speed_references", references)
    for name in TABLES:
        tables = [
            results.read_table(outcome.folder, name).assign(task=suite.task) for suite, outcome in zip(suites, outcomes)
        ]
        tables = [table for table in tables if not table.empty]
        if tables:
            joined = pd.concat(tables, ignore_index=True)
            results.write_table(parent, name, joined[["task", *[c for c in joined.columns if c != "task"]]])
    env = results.read_json(parent / "environment.json")
    results.write_json(parent / "environment.json", {**env, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    summary = pd.concat([o.summary.assign(task=s.task) for s, o in zip(suites, outcomes)], ignore_index=True)
    failed = [f"{suite.task}/{entry}" for suite, outcome in zip(suites, outcomes) for entry in outcome.failed]
    return RunOutcome(folder=parent, failed=failed, summary=summary)
