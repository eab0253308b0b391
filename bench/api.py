"""The Python API (``import bench``): what the command line does, for notebooks and scripts.

The CLI (``bench.cli``) parses flags and calls these functions; they take and return plain data: a
``Suite`` (frozen dataclasses), a ``RunResult`` (the run folder and its tables as pandas DataFrames) and
the speed table as a DataFrame.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import pandas as pd

from bench.errors import BenchInputError
from bench.config.plugins import load_plugins
from bench.results import task_folders
from bench.trackers import check_trackers, export_run
from bench.config.suite import (
    LOSS_NETWORK_PRECISIONS,
    SCHEDULES,
    Suite,
    _parse_seeds,
    load_suite as _load_suite_file,
    model_config,
    parse_suite,
    task_suites,
    without_profile_seeds,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SuiteLike = Union[Suite, str, Path]
EntriesLike = Union[Sequence[Union[str, Mapping[str, Any]]], Mapping[str, Union[str, Mapping[str, Any]]]]


def load_suite(path: str | Path, *, plugins: Iterable[str] = ()) -> Suite:
    """Parse and check a suite file, after loading the installed plugins and ``plugins`` (module names or
    ``.py`` paths) so the suite may use their losses. Bad input raises ``BenchInputError``."""
    load_plugins(plugins)
    return _load_suite_file(path)


def build_suite(
    entries: EntriesLike,
    *,
    name: str = "python_suite",
    base_dir: str | Path = ".",
    plugins: Iterable[str] = (),
    **settings: Any,
) -> Suite:
    """A suite built in Python, checked exactly as a suite file is.

    ``entries``: loss names (``["mse", "ssim"]``), a mapping of entry name to a loss name or to the entry's
    table (``{"ssim7": {"loss": "ssim", "win_size": 7}, "mix": {"terms": [...]}}``), or a list of entry
    tables as in a suite file. ``settings``: the suite file's other keys, sections as dicts, e.g.
    ``seeds=[0, 1], data={"resolution": 32}, train={"steps": 50}``. ``base_dir``: where relative paths
    (a folder data source, weights files) are found. The TOML it amounts to is kept in ``Suite.text`` and
    copied into every run folder.
    """
    import tomli_w

    load_plugins(plugins)
    raw = {"name": name, **settings, "entry": _entry_tables(entries)}
    where = f"<suite {name!r} built in Python>"
    try:
        text = tomli_w.dumps(raw)
    except TypeError as error:
        raise BenchInputError(
            f"a setting is not plain data: {error}",
            where=where,
            fix="use strings, numbers, booleans, lists and dicts only",
        ) from None
    return parse_suite(
        tomllib.loads(text),
        path=Path(base_dir).resolve() / f"{name}.toml",
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        text=text,
    )


def with_overrides(
    suite: Suite,
    *,
    device: str | None = None,
    steps: int | None = None,
    only: Sequence[str] | str | None = None,
    seed: int | None = None,
    seeds: int | None = None,
    schedule: str | None = None,
    loss_networks: str | None = None,
) -> Suite:
    """``suite`` with the command line's overrides applied; they win over device profiles."""
    changes: dict[str, Any] = {}
    if device:
        changes["device"] = device
    if seed is not None and seeds is not None:
        raise BenchInputError("give --seed or --seeds, not both", where="command line", fix="drop one of them")
    if seed is not None:
        changes["seeds"] = _parse_seeds([seed], "--seed")
    if seeds is not None:
        if seeds < 1:
            raise BenchInputError(f"--seeds must be at least 1, got {seeds}", where="--seeds", fix="e.g. --seeds 3")
        changes["seeds"] = tuple(range(seeds))
    if "seeds" in changes:
        suite = without_profile_seeds(suite)  # seeds from the command line hold on every device
    if only:
        wanted = [name.strip() for name in (only.split(",") if isinstance(only, str) else only) if name.strip()]
        known = {entry.name for entry in suite.entries}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise BenchInputError(
                f"--only names unknown entries {unknown}",
                where=f"{suite.path}",
                fix=f"entries of this suite: {', '.join(sorted(known))}",
            )
        changes["entries"] = tuple(entry for entry in suite.entries if entry.name in wanted)
    if steps is not None and steps < 1:
        raise BenchInputError(f"--steps must be at least 1, got {steps}", where="--steps", fix="e.g. --steps 50")
    for flag, value, allowed in (
        ("--schedule", schedule, SCHEDULES),
        ("--loss-networks", loss_networks, LOSS_NETWORK_PRECISIONS),
    ):
        if value is not None and value not in allowed:
            raise BenchInputError(f"unknown {flag} {value!r}", where=flag, fix=f"use one of {', '.join(allowed)}")
    train = {"steps": steps, "schedule": schedule, "loss_networks": loss_networks}
    train = {key: value for key, value in train.items() if value is not None}
    if train:
        changes["profiles"] = {
            name: {**table, "train": {**table.get("train", {}), **train}} for name, table in suite.profiles.items()
        }
        changes["train"] = dataclasses.replace(suite.train, **train)
    return dataclasses.replace(suite, **changes)


class _Table:
    """A ``RunResult`` attribute holding the run table of the same name, read on first use and then kept
    (in the instance's ``__dict__``, which an attribute without ``__set__`` gives way to)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, run: "RunResult | None", owner: type) -> pd.DataFrame:
        if run is None:
            return self
        from bench.results import read_table

        run.__dict__[self.name] = table = read_table(run.folder, self.name)
        return table


@dataclass(frozen=True)
class RunResult:
    """A run folder and its tables, each read on first use (a table the run did not write is an empty
    DataFrame; ``pairwise`` needs two entries that learned)."""

    folder: Path

    @property
    def report(self) -> Path:
        return self.folder / "report.html"

    quality, summary, speed, pairwise, history, per_image = (_Table() for _ in range(6))

    @property
    def failed(self) -> list[str]:
        """Entries with a failed training (reasons in ``quality["error"]``)."""
        quality = self.quality
        return sorted(set(quality.loc[quality["status"] != "ok", "entry"])) if not quality.empty else []


def open_run(folder: str | Path) -> RunResult:
    """The tables of a run folder written earlier (``results/<suite>/<timestamp>/``)."""
    folder = Path(folder)
    if not (folder / "environment.json").is_file():
        raise BenchInputError(
            "not a run folder (no environment.json)",
            where=str(folder),
            fix="pass a folder under results/<suite>/ that a run created",
        )
    return RunResult(folder)


def run(
    suite: SuiteLike,
    *,
    out: str | Path = "results",
    plugins: Iterable[str] = (),
    timing: bool = True,
    progress: bool = True,
    resume: str | Path | None = None,
    force: bool = False,
    fail_fast: bool = False,
    workers: int = 1,
    ray_address: str | None = None,
    gpus: str | None = None,
    deterministic: bool = False,
    concurrent: int | None = None,
    threads: int | None = None,
    store: str | Path | bool | None = None,
    fresh: bool = False,
    report: bool = True,
    model: Callable[..., Any] | None = None,
    log_to: Sequence[str] | None = None,
    tracking_uri: str | None = None,
    argv: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
    **overrides: Any,
) -> RunResult:
    """Train, evaluate and time every entry of ``suite`` (a ``Suite`` or a suite file's path) and write a run
    folder under ``out``, as ``python -m bench run`` does; returns its tables.

    ``overrides``: ``device``, ``steps``, ``only``, ``seed`` or ``seeds`` (as the command line's flags).
    ``plugins``: module names or ``.py`` files that register losses or models (``-p``); Ray workers load them too.
    ``concurrent``: trainings at once on this machine's device, each in a worker process (None: chosen from the
    device, its memory and each entry's measured step); ``threads``: CPU threads per training (None: the cores
    shared out evenly). Results depend on ``threads``, not on ``concurrent``.
    ``store``: the store of finished trainings, which a run asks before it trains and fills after (None: the
    default, ``$LOSSBENCH_STORE`` or the user's cache folder; a path: that folder; False: no store; see
    ``bench.results.store``); ``fresh``: train every entry again, reusing nothing (and store the results).
    ``model``: a factory ``model(context, **params)`` returning the ``nn.Module`` every entry trains instead of
    the suite's model (``context``: a ``bench.ModelContext``; its keyword parameters' defaults are its
    parameters), registered under its function's name; single-process runs only.
    ``log_to``: trackers ("tensorboard", "mlflow") each training writes its curves to as it trains and the
    finished run is also written to, instead of the suite's ``log_to``; ``tracking_uri``: MLflow's, instead of
    the suite's (see ``bench.trackers`` and ``bench.train.live_trackers``). A tracker that fails is reported
    through ``log``; the run's tables stay complete. ``progress``: the run's progress display
    (bench.train.progress.RunDisplay); off, only the result lines are logged.
    ``deterministic``: Ray workers turn on deterministic kernels (call
    ``bench.train.process.make_deterministic()`` for this process, as ``--deterministic`` does).
    Raises ``BenchInputError`` on bad input and ``bench.train.runner.RunStopped`` on Ctrl-C or a file that cannot
    be written (finished entries are saved; pass ``resume=`` that folder to continue)."""
    from bench.train.rates import run_at_rates
    from bench.train.runner import RunOptions
    from bench.train.tasks import run_tasks

    load_plugins(plugins)
    if not isinstance(suite, Suite):
        suite = _load_suite_file(suite)
    suites = [with_overrides(task_suite, **overrides) for task_suite in task_suites(suite)]
    if model is not None:
        if workers > 1 or ray_address is not None or (concurrent or 1) > 1:
            raise BenchInputError(
                "a model factory passed to run() exists in this process only, not in worker processes",
                where="run(model=...)",
                fix="register it in a plugin file (@bench.register_model) and pass plugins=[that "
                "file] and the model's name in [model], or leave concurrent and workers unset",
            )
        concurrent = 1
        name = _registered_factory(model)
        suites = [
            dataclasses.replace(s, model=model_config({"name": name}, s.model, where="run(model=...)")) for s in suites
        ]
    suite = suites[0]
    trackers = check_trackers(log_to, where="--log-to") if log_to is not None else suite.log_to
    if workers < 1:
        raise BenchInputError(f"--workers must be at least 1, got {workers}", where="--workers", fix="e.g. --workers 2")
    for name, value in (("--concurrent", concurrent), ("--threads", threads)):
        if value is not None and value < 1:
            raise BenchInputError(f"{name} must be at least 1, got {value}", where=name, fix=f"e.g. {name} 2")
    if concurrent is not None and (workers > 1 or ray_address is not None):
        raise BenchInputError(
            "--concurrent packs trainings on this machine's device; Ray runs use --workers",
            where="--concurrent",
            fix="drop --concurrent, or drop --workers/--ray-address",
        )
    if force and not resume:
        raise BenchInputError("--force only applies with --resume", where="command line", fix="drop --force")
    if gpus is not None and workers == 1 and ray_address is None:
        raise BenchInputError(
            "--gpus only applies to Ray runs",
            where="--gpus",
            fix="add --workers N (or --ray-address), or pick the GPU with --device cuda:N",
        )
    options = RunOptions(
        timing=timing,
        show_progress=progress,
        fail_fast=fail_fast,
        workers=workers,
        ray_address=ray_address,
        gpus=gpus,
        deterministic=deterministic,
        concurrent=concurrent,
        threads=threads,
        store=store,
        fresh=fresh,
        log_to=tuple(trackers),
        tracking_uri=tracking_uri or suite.tracking_uri,
        tracking_root=Path(out),
    )
    where = dict(
        results_root=Path(out),
        argv=list(argv) if argv is not None else ["run", str(suite.path)],
        options=options,
        resume=Path(resume) if resume else None,
        force=force,
        log=log,
    )
    outcome = run_tasks(suites, **where) if len(suites) > 1 else run_at_rates(suite, **where)
    if report:
        from bench.report import write_report

        write_report(outcome.folder)
    if trackers:
        for folder in task_folders(outcome.folder).values() or [outcome.folder]:
            export_run(folder, trackers, tracking_uri=tracking_uri or suite.tracking_uri, log=log)
    return RunResult(outcome.folder)


def time_losses(
    losses: SuiteLike | EntriesLike,
    *,
    device: str | None = None,
    resolution: int | None = None,
    batch_size: int | None = None,
    variants: Sequence[str] | None = None,
    plugins: Iterable[str] = (),
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Each loss's forward and backward time (``speed.csv``'s rows) on random images, no training.

    ``losses``: a ``Suite``, a suite file's path, or entries as ``build_suite`` takes them (``["mse",
    "ssim"]``). Settings left unset come from the suite's ``[timing]`` (its defaults, 512x512, batch 4,
    fp32, for bare entries) after its device profile; ``device`` defaults to the suite's ("auto")."""
    from bench.train.runner import resolve_device
    from bench.speed.suite import time_suite, with_timing
    from bench.config.suite import suite_for_device, validate_settings

    load_plugins(plugins)
    if isinstance(losses, Suite):
        suite = losses
    elif isinstance(losses, (str, Path)):
        suite = _load_suite_file(losses)
    else:
        suite = build_suite(losses, name="time_losses")
    resolved = resolve_device(device or suite.device)
    suite = with_timing(
        suite_for_device(suite, resolved.type),
        batch_size=batch_size,
        resolution=resolution,
        variants=tuple(variants) if variants else None,
    )
    validate_settings(suite, where="time_losses")
    return time_suite(suite, resolved, log=log)


@dataclass(frozen=True)
class SpeedResult:
    """A speed run's folder (``results/<suite>/<timestamp>/``) and its tables: ``speed`` (speed.csv's rows) and
    ``references`` (other implementations' times, speed_references.csv; empty unless asked for and found)."""

    folder: Path
    speed: pd.DataFrame
    references: pd.DataFrame


@dataclass(frozen=True)
class GateResult:
    """A speed-gate run's folder and its tables: ``verdicts`` (speed_gate.csv: one row per loss, ``verdict``
    SLOWER where the candidate code is slower than the baseline's beyond the gate's settings) and ``samples``."""

    folder: Path
    verdicts: pd.DataFrame
    samples: pd.DataFrame

    @property
    def slower(self) -> list[str]:
        return self.verdicts.loc[self.verdicts["verdict"] == "SLOWER", "entry"].tolist()


def check_speed(
    suite: SuiteLike,
    against: str,
    *,
    candidate: str | None = None,
    out: str | Path = "results",
    plugins: Iterable[str] = (),
    device: str = "cpu",
    settings: Any = None,
) -> GateResult:
    """The speed gate, as ``python -m bench check SUITE --against`` runs it: each loss of ``suite`` timed with the
    code of ``against`` (a commit, or a baseline record's JSON file naming one) and of ``candidate`` (None: this
    checkout), interleaved on this machine; writes speed_gate.csv and its samples to a new folder under ``out``.
    ``settings``: a ``bench.speed.settings.GateSettings`` (None: its defaults)."""
    from bench import results
    from bench.config.suite import suite_for_device
    from bench.speed.check import baseline_commit
    from bench.speed.gate import run_gate
    from bench.speed.settings import GateSettings

    revision = baseline_commit(against) if str(against).endswith(".json") else against
    resolved = load_suite(suite, plugins=plugins) if not isinstance(suite, Suite) else suite
    resolved = suite_for_device(resolved, device.split(":")[0])  # the gate's workers load the same plugins
    folder = results.new_run_folder(Path(out), resolved.name)
    results.copy_suite(resolved, folder)
    verdicts, samples = run_gate(
        resolved,
        revision,
        candidate_ref=candidate,
        device=device,
        settings=settings or GateSettings(),
        log_dir=folder,
    )
    results.write_table(folder, "speed_gate", verdicts)
    results.write_table(folder, "speed_gate_samples", samples)
    return GateResult(folder, verdicts, samples)


def run_speed(
    suite: SuiteLike,
    *,
    out: str | Path = "results",
    plugins: Iterable[str] = (),
    device: str | None = None,
    only: Sequence[str] | str | None = None,
    batch_size: int | None = None,
    resolution: int | None = None,
    variants: Sequence[str] | None = None,
    train_step: bool = False,
    references: bool = False,
    save_baseline: str | Path | None = None,
    argv: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> SpeedResult:
    """Time every entry's loss (fwd, bwd, fwd+bwd; no training) at the suite's timing settings and write
    speed.csv to a new run folder under ``out``, as ``python -m bench speed`` does; the table goes to ``log``.

    Settings left unset come from the suite's ``[timing]`` after its device profile. ``train_step``: also time
    the model's training step at the training size, per variant. ``references``: also time other installed
    implementations of the same losses (speed_references.csv). ``save_baseline``: also write a baseline record
    (the times and the code's commit) to that file, for ``python -m bench check --against``."""
    from bench import results
    from bench.config.suite import profile_name, suite_for_device, validate_settings
    from bench.speed.check import save_baseline as write_baseline
    from bench.speed.suite import format_speed, time_training_step, with_timing
    from bench.train.runner import resolve_device

    load_plugins(plugins)
    if not isinstance(suite, Suite):
        suite = _load_suite_file(suite)
    requested = with_overrides(suite, device=device, only=only)
    torch_device = resolve_device(requested.device)
    variants = tuple(variants) if variants else None
    timed = with_timing(
        suite_for_device(requested, torch_device.type), batch_size=batch_size, resolution=resolution, variants=variants
    )
    validate_settings(timed, where="command line")
    folder = results.new_run_folder(Path(out), timed.name)
    results.copy_suite(timed, folder)
    command = list(argv) if argv is not None else ["speed", str(requested.path)]
    results.write_json(
        folder / "environment.json",
        results.environment(torch_device, timed, profile_name(requested, torch_device.type), command),
    )
    speed = time_losses(
        requested, device=str(torch_device), batch_size=batch_size, resolution=resolution, variants=variants, log=log
    )
    if train_step:
        speed = pd.concat([speed, time_training_step(timed, torch_device, timed.timing.variants)], ignore_index=True)
    results.write_table(folder, "speed", speed)
    log(format_speed(speed))
    others = pd.DataFrame()
    if references:
        from bench.speed.references import time_references

        others = time_references(timed, torch_device, log=log)
        if others.empty:
            log("no other implementation of these losses is installed (or runs here): nothing to compare")
        else:
            results.write_table(folder, "speed_references", others)
            log(others[["loss", "implementation", "median_ms", "ratio_to_fastest"]].to_string(index=False))
    log(f"\nspeed table: {folder / 'speed.csv'}")
    if save_baseline:
        write_baseline(speed, save_baseline, suite=str(requested.path))
        log(f"baseline saved: {save_baseline}")
    return SpeedResult(folder, speed, others)


def _registered_factory(factory: Callable[..., Any]) -> str:
    """The name ``factory`` is registered under as a model (once: run() may be called again with it), with its
    keyword parameters' defaults as the model's parameters."""
    from bench.config.registry import registering_as
    from bench.models.registry import get_model_info, model_names, register_model

    name = getattr(factory, "__name__", "")
    if not callable(factory) or not name.isidentifier():
        raise BenchInputError(
            f"model must be a named function or class, got {factory!r}",
            where="run(model=...)",
            fix="def my_model(context, width=16): return MyNet(context.channels, width)",
        )
    if name in model_names():
        if get_model_info(name).factory is factory:
            return name
        raise BenchInputError(
            f"a model named {name!r} is registered already, by {get_model_info(name).source}",
            where="run(model=...)",
            fix="rename the factory",
        )
    parameters = list(inspect.signature(factory).parameters.values())[1:]  # the first is the context
    defaults = {
        parameter.name: parameter.default
        for parameter in parameters
        if parameter.default is not inspect.Parameter.empty
    }
    summary = (inspect.getdoc(factory) or "a model factory given to bench.run").splitlines()[0]
    with registering_as(f"Python API ({getattr(factory, '__module__', '?')})"):
        register_model(name, summary, **defaults)(factory)
    return name


def _entry_tables(entries: EntriesLike) -> list[dict[str, Any]]:
    if isinstance(entries, Mapping):
        return [
            {"name": name, **({"loss": body} if isinstance(body, str) else dict(body))}
            for name, body in entries.items()
        ]
    if isinstance(entries, str):
        raise BenchInputError(
            f"entries must be a list or a mapping, got the string {entries!r}",
            where="build_suite",
            fix=f"e.g. [{entries!r}]",
        )
    return [{"name": entry, "loss": entry} if isinstance(entry, str) else dict(entry) for entry in entries]


@dataclass(frozen=True)
class RecoveryResult:
    """A recovery folder (``results/<suite>/recover/<timestamp>/``), its table and its page."""

    folder: Path
    table: pd.DataFrame

    @property
    def page(self) -> Path:
        from bench.report.recover_html import PAGE

        return self.folder / PAGE


def recover(
    suite: SuiteLike,
    *,
    out: str | Path = "results",
    plugins: Iterable[str] = (),
    device: str | None = None,
    only: Sequence[str] | str | None = None,
    log: Callable[[str], None] = print,
    **settings: Any,
) -> RecoveryResult:
    """The reference-recovery diagnostic (``python -m bench recover``): each entry's loss minimised over the
    pixels of held-out crops, from white noise, a blurred and a JPEG copy; writes recovery.csv and recovery.html
    under ``out`` and returns them. ``settings``: fields of ``bench.evaluate.recover.RecoverySettings`` (steps,
    lr, images, side, blur_sigma, jpeg_quality, recovered_db, ...)."""
    from bench.config.suite import suite_for_device
    from bench.evaluate.recover import RecoverySettings, recover_suite
    from bench.report.recover_html import FOLDER, PAGE, render
    from bench.results import new_run_folder, write_atomic, write_table
    from bench.train.runner import resolve_device

    load_plugins(plugins)
    if not isinstance(suite, Suite):
        suite = _load_suite_file(suite)
    suite = with_overrides(suite, device=device, only=only)
    unknown = set(settings) - {field.name for field in dataclasses.fields(RecoverySettings)}
    if unknown:
        raise BenchInputError(
            f"unknown recovery settings {sorted(unknown)}",
            where="bench.recover",
            fix=f"use {', '.join(field.name for field in dataclasses.fields(RecoverySettings))}",
        )
    chosen = RecoverySettings(**settings)
    chosen.validate()
    torch_device = resolve_device(suite.device)
    suite = suite_for_device(suite, torch_device.type)
    table, recoveries = recover_suite(suite, chosen, torch_device, log)
    folder = new_run_folder(Path(out) / suite.name, FOLDER)
    write_table(folder, "recovery", table)
    write_atomic(folder / PAGE, render(suite.name, table, recoveries, chosen))
    for row in table.itertuples():
        outcome = "recovered" if pd.notna(row.recovered) and row.recovered else f"NOT RECOVERED {row.error}".rstrip()
        log(f"  {row.entry} from {row.start or '-'}: PSNR {row.psnr_start:.2f} -> {row.psnr_final:.2f} dB {outcome}")
    return RecoveryResult(folder, table)
