"""A learning rate for each loss (``train.lr = [common, other, ...]``), chosen by a plain grid:

1. the run at the common rate (the list's first), as for a single rate: the run folder's own tables;
2. ``rate_search/``: every entry at every rate of the list, on the first seed, trained on the training
   photographs less ``data.validation_images`` of them and scored on crops of those (``data.split =
   "validation"``), never on the evaluation crops;
3. ``rates.csv``: each entry's rate with the lowest held-out value of its own loss (``eval_loss``);
4. ``best_rate/``: every entry at its own rate, every seed, scored on the evaluation crops like step 1.

Each step is a whole run (bench.train.runner) in its own folder, so a stopped run resumes step by step.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd

from bench import results
from bench.config.suite import Entry, Suite, suite_for_device
from bench.train.runner import RunOptions, RunOutcome, RunStopped, resolve_device, run_suite

SEARCH, BEST = "rate_search", "best_rate"  # the sub-folders of steps 2 and 4
TABLE = "rates"


def _at_rate(entry: Entry, rate: float, name: str) -> Entry:
    """``entry`` at ``rate``, named ``name`` (an entry's own setting wins over any profile)."""
    train = {**entry.overrides.get("train", {}), "lr": rate}
    return dataclasses.replace(entry, name=name, overrides={**entry.overrides, "train": train})


def at_rates(suite: Suite, rates: dict[str, float]) -> Suite:
    """``suite`` with each entry at its rate in ``rates``."""
    entries = tuple(_at_rate(entry, rates[entry.name], entry.name) for entry in suite.entries)
    return dataclasses.replace(suite, entries=entries)


def search_name(entry: str, rate: float) -> str:
    return f"{entry} @ lr {rate:g}"


def search_suite(suite: Suite, rates: tuple[float, ...]) -> Suite:
    """Every entry at every rate, the first seed, trained and scored on the validation split."""
    entries = tuple(_at_rate(entry, rate, search_name(entry.name, rate)) for entry in suite.entries for rate in rates)
    profiles = {
        device: {**table, "seeds": table["seeds"][:1]} if "seeds" in table else table
        for device, table in suite.profiles.items()
    }
    return dataclasses.replace(
        suite,
        entries=entries,
        seeds=suite.seeds[:1],
        profiles=profiles,
        data=dataclasses.replace(suite.data, split="validation"),
    )


def choose_rates(suite: Suite, rates: tuple[float, ...], search: pd.DataFrame) -> pd.DataFrame:
    """One row per entry and rate: its validation loss and PSNR, and whether it is the entry's choice (the
    lowest finite validation loss; the earlier rate of the list on a tie; the common rate if none finished)."""
    rows = []
    for entry in suite.entries:
        tried = []
        for rate in rates:
            found = search[search["entry"] == search_name(entry.name, rate)] if not search.empty else search
            row = found.iloc[0].to_dict() if not found.empty else {}
            loss = row.get("eval_loss", float("nan")) if row.get("status") == "ok" else float("nan")
            tried.append(
                {
                    "entry": entry.name,
                    "lr": rate,
                    "common": rate == rates[0],
                    "status": row.get("status", "not run"),
                    "validation_loss": loss,
                    "validation_psnr": row.get("psnr", float("nan")) if math.isfinite(loss) else float("nan"),
                }
            )
        finished = [t for t in tried if math.isfinite(t["validation_loss"])]
        best = min(finished, key=lambda t: t["validation_loss"]) if finished else tried[0]
        rows += [{**t, "chosen": t is best} for t in tried]
    return pd.DataFrame(rows)


def run_at_rates(
    suite: Suite,
    *,
    results_root: Path,
    argv: list[str],
    options: RunOptions = RunOptions(),
    resume: Path | None = None,
    force: bool = False,
    folder: Path | None = None,
    losses_timed: pd.DataFrame | None = None,
    log=print,
) -> RunOutcome:
    """``run_suite``, and with several rates the four steps above; the outcome is the common rate's run."""
    rates = suite_for_device(suite, resolve_device(suite.device).type).train.lr  # a device profile may set it
    where = dict(results_root=results_root, argv=argv, force=force, log=log)
    first = dict(resume=resume, folder=folder, losses_timed=losses_timed, options=options, **where)
    if not isinstance(rates, tuple):
        return run_suite(suite, **first)
    common_rates = dict.fromkeys([entry.name for entry in suite.entries], rates[0])
    common = run_suite(at_rates(suite, common_rates), **first)
    if len(rates) == 1:
        return common
    untimed = dataclasses.replace(options, timing=False)
    try:
        search = _step(search_suite(suite, rates), common.folder / SEARCH, untimed, **where)
        chosen = choose_rates(suite, rates, results.read_table(search.folder, "quality"))
        results.write_table(common.folder, TABLE, chosen)
        best = chosen[chosen["chosen"]].set_index("entry")["lr"].astype(float).to_dict()
        _step(at_rates(suite, best), common.folder / BEST, untimed, **where)
    except RunStopped as stopped:
        raise RunStopped(common.folder, stopped.error) from None
    return common


def _step(suite: Suite, folder: Path, options: RunOptions, *, log, **where) -> RunOutcome:
    started = (folder / "environment.json").is_file()
    log(f"\n--- {folder.name.replace('_', ' ')} ---")
    return run_suite(
        suite, options=options, resume=folder if started else None, folder=None if started else folder, log=log, **where
    )
