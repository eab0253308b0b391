"""`bench run`: suite -> plan -> train and evaluate each RunSpec -> time each loss -> tables in the run folder."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from bench import results
from bench.data.baselines import LEARNED_MARGIN_DB, baselines_for
from bench.data.datasets import DATASETS, cache_root
from bench.errors import BenchInputError
from bench.config.plugins import command_line_plugins
from bench.train.jobs import Trainer
from bench.train.live_trackers import LiveTrackers
from bench.train.pool import plan_packing, train_all
from bench.train.progress import RunDisplay
from bench.train.reuse import Reuse, fewer_at_once, key_threads
from bench.results.store import Store, open_store
from bench.config.names import entry_file
from bench.config.plan import RunSpec, make_plan
from bench.speed.suite import MODEL_ENTRY, time_suite, time_training_step
from bench.evaluate.stats import time_to_quality
from bench.config.suite import Suite, profile_name, resolve_suite_path, suite_for_device
from bench.evaluate.tables import metric_table, summarize_with_pairs
from bench.evaluate.stability import rank_stability, stability_summary
from bench.evaluate.verdicts import headline


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise BenchInputError(
            f"unknown device {requested!r}", where="device", fix='use "auto", "cpu", "cuda" or "cuda:N"'
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchInputError(
            "device 'cuda' was requested but no CUDA GPU is available", where="device", fix="use --device cpu (or auto)"
        )
    if device.type not in ("cpu", "cuda"):
        raise BenchInputError(f"device type {device.type!r} is not supported", where="device", fix="use cpu or cuda")
    return device


@dataclass
class RunOutcome:
    folder: Path
    failed: list[str]
    summary: pd.DataFrame


class RunStopped(Exception):
    """A run stopped before its end, by Ctrl-C (``error`` None) or by a file it could not write (a full disk,
    a read-only folder): every table in ``folder`` is whole and holds the entries that finished, so
    ``--resume folder`` continues the run."""

    def __init__(self, folder: Path, error: results.WriteFailed | None = None) -> None:
        super().__init__(str(error or folder))
        self.folder = folder
        self.error = error


def plan_hash(suite: Suite, plan: list[RunSpec]) -> str:
    """What a resumed run must share with the original: every setting that shapes a result."""
    shape = [suite.task, suite.timing, suite.metrics] + [(s.entry, s.seed, s.data, s.model, s.train) for s in plan]
    return hashlib.sha256(repr(shape).encode()).hexdigest()


def run_suite(suite: Suite, **options) -> RunOutcome:
    """Runs ``suite`` (options: see ``_run_suite``). Each warning shows once per run: a run loads a loss network
    for training and again for timing, and an unavailable ImageNet file would otherwise be warned about at
    every load."""
    with warnings.catch_warnings():  # restores showwarning after
        # Not the "once" filter action: it keeps its record in the calling module's registry, which any
        # change of the filters (a library's own catch_warnings) clears.
        shown, show = set(), warnings.showwarning

        def show_once(message, category, *args, **kwargs):
            if (str(message), category) not in shown:
                shown.add((str(message), category))
                show(message, category, *args, **kwargs)

        warnings.showwarning = show_once
        return _run_suite(suite, **options)


@dataclass(frozen=True)
class RunOptions:
    """How a run goes, not what it measures: the command line's options."""

    timing: bool = True  # time each loss (and the model's step) after the trainings
    show_progress: bool = True
    fail_fast: bool = False  # stop at the first failed training
    workers: int = 1  # Ray workers (bench.train.distributed); 1 with no ray_address: this machine
    ray_address: str | None = None
    gpus: str | None = None  # Ray: the GPUs to use
    deterministic: bool = False
    concurrent: int | None = None  # trainings at once on this machine's device (None: chosen, bench.train.pool)
    threads: int | None = None  # CPU threads per training (None: chosen)
    # The store of finished trainings (bench.results.store): None the default folder, a path another, False none.
    store: str | Path | bool | None = None
    fresh: bool = False  # train everything again (and store it), reusing nothing
    log_to: tuple[str, ...] = ()  # trackers each training writes its curves to as it trains
    tracking_uri: str | None = None  # MLflow's (None: the results root's store)
    tracking_root: Path | None = None  # the results root, whose store is the default (None: the run folder's)

    @property
    def distributed(self) -> bool:
        return self.workers > 1 or self.ray_address is not None


@dataclass
class RunTables:
    """A run's rows so far, each table in plan order (baselines after the entries), and its loss timings."""

    order: dict[tuple[str, int], int]  # (entry, seed) -> position
    quality: list[dict] = dataclasses.field(default_factory=list)
    history: list[dict] = dataclasses.field(default_factory=list)
    per_image: list[dict] = dataclasses.field(default_factory=list)
    speed: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    def add(self, quality: list[dict], history: list[dict] = (), per_image: list[dict] = ()) -> None:
        def in_order(rows: list[dict]) -> list[dict]:
            return sorted(rows, key=lambda r: (self.order[(r["entry"], r["seed"])], r.get("step", 0), r.get("crop", 0)))

        self.quality = in_order(self.quality + list(quality))
        self.history = in_order(self.history + list(history))
        self.per_image = in_order(self.per_image + list(per_image))

    def write(self, folder: Path) -> None:
        results.write_table(folder, "history", self.history)
        results.write_table(folder, "per_image", self.per_image)
        results.write_table(folder, "quality", self.quality)  # last: a quality row marks the entry complete


def _run_suite(
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
    """``folder``: the run folder to create (None: a new one under ``results_root``); ``resume``: an existing one
    to continue instead (``force``: even if the plan changed); ``losses_timed``: speed.csv rows of losses timed
    already, on this device (by an earlier task of the same suite), which a new run keeps instead of timing them
    again."""
    if len(suite.tasks) > 1:
        raise ValueError("a suite of several tasks runs one task at a time (bench.train.tasks.run_tasks)")
    device = resolve_device(suite.device)
    profile = profile_name(suite, device.type)
    suite = suite_for_device(suite, device.type)
    if profile != "none":
        log(
            f"[profile.{profile}] applied: training on {suite.data.resolution}x{suite.data.resolution} crops at "
            f"scale {suite.data.scale:g}, {suite.train.steps} steps, batch {suite.train.batch_size}, "
            f"{len(suite.seeds)} seed(s); loss timing at {suite.timing.resolution}x{suite.timing.resolution}, "
            f"batch {suite.timing.batch_size}"
        )
    plan = make_plan(suite, profile)
    trainer = Trainer(suite, str(device), options.show_progress and not options.distributed, log=log)
    for resolution, loss_networks in {(spec.data.resolution, spec.train.loss_networks) for spec in plan}:
        trainer.losses(resolution, loss_networks)  # a bad loss parameter stops the run here, before any folder exists
    trainer.check_models(plan)  # so does a model whose output cannot be trained on
    images = {spec.data: trainer.images(spec) for spec in plan}
    store = open_store(options.store)  # a store that cannot be used stops the run here, before its folder exists
    if store is not None and options.ray_address is not None:
        log("the store of finished trainings is left out: a Ray cluster's machines may differ from this one")
        store = None
    env = _environment(suite, plan, images, device, profile, argv)
    tables = RunTables({(spec.entry.name, spec.seed): index for index, spec in enumerate(plan)})
    if resume is None:
        folder = results.new_run_folder(results_root, suite.name, folder)
        if losses_timed is not None:
            tables.speed = losses_timed[losses_timed["entry"] != MODEL_ENTRY]
    else:
        folder = resume
        planned = {(spec.entry.name, spec.seed) for spec in plan}
        quality, history, per_image, tables.speed, resumes = _completed(folder, env["plan_sha256"], force, planned)
        tables.add(quality, history, per_image)
        env["resumes"] = resumes + [
            {"started": env["started"], "kept": [f"{row['entry']} seed {row['seed']}" for row in quality]}
        ]
    try:
        return _run(folder, suite, plan, trainer, images, env, tables, options, store, log)
    except KeyboardInterrupt:
        raise RunStopped(folder) from None
    except results.WriteFailed as error:
        raise RunStopped(folder, error) from None


def _environment(suite: Suite, plan: list[RunSpec], images: dict, device: torch.device, profile: str, argv) -> dict:
    """environment.json: the machine, the software, the suite and the data a run used."""
    env = results.environment(device, suite, profile, argv)
    env["plan_sha256"] = plan_hash(suite, plan)
    first, data = images[plan[0].data], plan[0].data
    env.update(
        data_source=data.source,
        eval_source=data.eval_source or data.source,
        images_sha256=first.images_sha256,
        train_photos=list(first.train_names),
        eval_photos=list(first.eval_photos),
        eval_crops=len(first.eval),
        model=dataclasses.asdict(plan[0].model),
    )
    if {data.source, data.eval_source} & set(DATASETS):
        env["data_cache"] = str(cache_root(resolve_suite_path(suite, data.cache)))
    return env


def _run(
    folder: Path,
    suite: Suite,
    plan: list[RunSpec],
    trainer: Trainer,
    images: dict,
    env: dict,
    tables: RunTables,
    options: RunOptions,
    store: Store | None,
    log,
) -> RunOutcome:
    """Trains what ``folder`` lacks of ``plan`` and ``store`` does not hold, rewriting its tables after each
    training, then times the losses and writes the summary tables."""
    results.copy_suite(suite, folder)
    done = {(row["entry"], row["seed"]) for row in tables.quality}
    todo = [spec for spec in plan if (spec.entry.name, spec.seed) not in done]
    packing = None
    if not options.distributed:
        packing, todo = plan_packing(todo, trainer, options.concurrent, options.threads)
    deterministic = options.deterministic or torch.are_deterministic_algorithms_enabled()
    reuse = Reuse(
        store,
        trainer,
        suite_name=suite.name,
        run_folder=folder,
        threads=key_threads(packing),
        deterministic=deterministic,
        fresh=options.fresh,
        log=log,
    )
    running = len(todo)  # what this run adds to its folder, whether trained now or taken from the store
    hits, todo = reuse.look_up(todo)
    if packing is not None:
        packing = fewer_at_once(packing, len(todo))
        env.update(trainings_at_once=packing.trainings, threads_per_training=packing.threads)
    env.update(store=str(store.root) if store else None, fresh=options.fresh)
    results.write_json(folder / "environment.json", env)
    log(
        f"running {running} of {len(plan)} trainings ({len(suite.entries)} entries x {len(suite.seeds)} seeds) "
        f"on {env['device_name']} ({trainer.device}); results -> {folder}"
    )
    if store is not None:
        log(f"  {reuse.summary(len(plan))}")
    if packing is not None and packing.trainings > 1:
        log(f"  {packing.trainings} at once, {packing.threads} thread(s) each ({packing.reason})")
    for data, image_set in images.items():
        results.save_png(folder / "reconstructions" / f"original__{data.resolution}px.png", image_set.eval)
    started = time.perf_counter()
    trivial_psnr = _score_baselines(folder, suite, plan, trainer, tables, log)
    _train(folder, suite, todo, hits, reuse, trainer, packing, env, tables, options, trivial_psnr, log)
    tables.write(folder)  # again: a resumed run may have had nothing to train
    if options.timing:
        _time_losses(folder, suite, trainer.device, tables, log)
    summary, quality = _summarise(folder, suite, tables, log)
    env.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S"), train_wall_seconds=round(time.perf_counter() - started, 1))
    env["reused"] = reuse.reused
    results.write_json(folder / "environment.json", env)
    if store is not None:
        log(store.size_line())
    failed = sorted(set(quality.loc[quality["status"] != "ok", "entry"])) if not quality.empty else []
    return RunOutcome(folder=folder, failed=failed, summary=summary)


def _score_baselines(
    folder: Path, suite: Suite, plan: list[RunSpec], trainer: Trainer, tables: RunTables, log
) -> float:
    """The task's baselines, one row per seed on the suite's own crops, after the entries; the trivial one's PSNR."""
    baselines = [
        trainer.baseline(baseline, spec)
        for baseline in baselines_for(suite.task, suite.model.settings.get("latent_dim"), suite.data)
        for spec in plan
        if spec.entry == plan[0].entry
    ]
    for index, outcome in enumerate(baselines):
        row = outcome.row
        tables.order[(row["entry"], row["seed"])] = len(plan) + index
        if row["seed"] == plan[0].seed:
            results.save_png(
                folder / "reconstructions" / entry_file(row["entry"], row["seed"], ".png"), outcome.reconstructions
            )
            log(f"  {row['entry']}: {_scores(row)} ({row['formula']})")
    tables.add([b.row for b in baselines], [], [r for b in baselines for r in b.per_image])
    return baselines[0].row["psnr"]


def _train(
    folder: Path,
    suite: Suite,
    todo: list[RunSpec],
    hits: list,
    reuse: Reuse,
    trainer: Trainer,
    packing,
    env: dict,
    tables: RunTables,
    options: RunOptions,
    trivial_psnr: float,
    log,
) -> None:
    """Takes ``hits`` (trainings found in the store) and trains ``todo`` (here, packed, or on Ray), writing every
    table after each training, with the run's one progress display and its live trackers; ``reuse`` stores each
    training that finishes."""
    display = RunDisplay(
        todo, packing.trainings if packing else options.workers, log=log, enabled=options.show_progress
    )
    log, root = display.log, options.tracking_root or folder.parents[1]
    live = LiveTrackers(options.log_to, folder, suite.name, root, options.tracking_uri) if options.log_to else None
    live = live.prepare(log) if live else None
    if options.distributed:
        from bench.train.distributed import run_on_ray

        outcomes = run_on_ray(
            todo,
            suite,
            str(trainer.device),
            workers=options.workers,
            address=options.ray_address,
            gpus=options.gpus,
            deterministic=options.deterministic,
            log=log,
            tell=display.tell,
            live=live,
        )
    else:
        outcomes = train_all(
            todo,
            trainer,
            packing,
            plugins=command_line_plugins(),
            deterministic=options.deterministic,
            checkpoints=folder / "checkpoints",
            tell=display.tell,
            live=live,
        )
    for outcome in itertools.chain(hits, reuse.storing(display.follow(outcomes))):
        row = outcome.row
        if outcome.png is not None:
            results.write_atomic(
                folder / "reconstructions" / entry_file(row["entry"], row["seed"], ".png"), outcome.png
            )
        elif outcome.reconstructions is not None:
            results.save_png(
                folder / "reconstructions" / entry_file(row["entry"], row["seed"], ".png"), outcome.reconstructions
            )
        traceback_file = Path("errors") / entry_file(row["entry"], row["seed"], ".txt")
        if outcome.traceback:  # before the quality row, which marks the entry complete
            results.write_atomic(folder / traceback_file, outcome.traceback)
        if outcome.resumed_from_step:
            continued = env["resumes"][-1].setdefault("continued", {})
            continued[f"{row['entry']} seed {row['seed']}"] = outcome.resumed_from_step
            log(
                f"  {row['entry']} seed {row['seed']}: continued from its checkpoint at step {outcome.resumed_from_step}"
            )
        tables.add([row], outcome.history, outcome.per_image)
        tables.write(folder)
        if row["status"] != "ok":
            log(
                f"  {row['entry']} seed {row['seed']}: FAILED ({row['error']})"
                + (f"; traceback in {traceback_file}" if outcome.traceback else "")
            )
            if options.fail_fast:
                break
        else:
            own = set(str(row.get("trained_on", "")).split()) - {"psnr"}
            flag = (
                ""
                if row["psnr"] >= trivial_psnr + LEARNED_MARGIN_DB
                else f"  NO PSNR GAIN (the verdict weighs its own {', '.join(sorted(own))} too)"
                if own
                else "  DID NOT LEARN"
            )
            took = f"reused {outcome.reused_from}" if outcome.reused_from else f"{row['train_seconds']:.1f} s"
            log(f"  {row['entry']} seed {row['seed']}: {_scores(row)} ({took}){flag}")


def _time_losses(folder: Path, suite: Suite, device: torch.device, tables: RunTables, log) -> None:
    """Times the losses of the entries that trained and are not timed yet, and the model's training step."""
    speed = tables.speed
    trained = {row["entry"] for row in tables.quality if row["status"] == "ok"}  # a failed loss is not timed
    untimed = [e for e in suite.entries if e.name in trained and (speed.empty or e.name not in set(speed["entry"]))]
    model_untimed = speed.empty or MODEL_ENTRY not in set(speed["entry"])  # a forced resume may have it already
    if not (untimed or model_untimed and trained):
        return
    from bench.speed.references import time_references

    timed = [speed]
    if untimed:
        timed.append(time_suite(dataclasses.replace(suite, entries=tuple(untimed)), device, log=log))
    if model_untimed:  # this run's model: a run of several tasks may train another model per task
        timed.append(time_training_step(suite, device, suite.timing.variants))
    tables.speed = pd.concat([table for table in timed if not table.empty], ignore_index=True)
    results.write_table(folder, "speed", tables.speed)
    references = time_references(suite, device, log=log) if untimed else pd.DataFrame()
    if not references.empty:
        results.write_table(folder, "speed_references", references)


def _summarise(folder: Path, suite: Suite, tables: RunTables, log) -> tuple[pd.DataFrame, pd.DataFrame]:
    """summary.csv, metrics.csv, pairwise.csv and time_to_quality.csv from the run's tables; the verdict."""
    quality = pd.DataFrame(tables.quality)
    history = pd.DataFrame(tables.history)
    summary, pairs = summarize_with_pairs(
        quality, tables.speed, pd.DataFrame(tables.per_image), history, suite.verdict.reference
    )
    results.write_table(folder, "summary", summary)
    results.write_table(folder, "metrics", metric_table(quality))
    if not pairs.empty:
        results.write_table(folder, "pairwise", pairs)
    stability = rank_stability(history) if not history.empty else pd.DataFrame()
    if not stability.empty:
        results.write_table(folder, "rank_stability", stability)
    reached = time_to_quality(history, suite.metrics.psnr_targets)
    if not reached.empty:
        results.write_table(folder, "time_to_quality", reached)
    verdict = headline(summary)
    if verdict:
        log("\nverdict:\n" + "\n".join(f"  {line}" for line in verdict))
    if not stability.empty:
        log(f"ranking during training (held-out, mean over seeds): {stability_summary(stability)}")
    return summary, quality


def _scores(row: dict) -> str:
    """PSNR, and SSIM and LPIPS where they were computed, for the console."""
    shown = [f"PSNR {row['psnr']:.2f} dB"]
    shown += [f"{name} {row[key]:.4f}" for key, name in (("ssim", "SSIM"), ("lpips", "LPIPS")) if key in row]
    return ", ".join(shown)


def _completed(
    folder: Path, expected_hash: str, force: bool, planned: set[tuple[str, int]]
) -> tuple[list[dict], list[dict], list[dict], pd.DataFrame, list]:
    """Rows of the ``planned`` (entry, seed) trainings that finished in an earlier, interrupted run of the same
    plan (baselines are evaluated afresh; with ``force``, trainings the changed plan dropped are left out), with
    every column the tables had, in their order; and the record of earlier resumes."""
    env_path = folder / "environment.json"
    if not env_path.is_file():
        raise BenchInputError(
            "not a run folder (no environment.json)",
            where=str(folder),
            fix="pass a folder under results/<suite>/ that an earlier run created",
        )
    previous = json.loads(env_path.read_text())
    if previous.get("plan_sha256") != expected_hash and not force:
        raise BenchInputError(
            "the suite or its overrides changed since this run started, so results would mix",
            where=str(folder),
            fix="run without --resume, or add --force to mix them anyway",
        )
    quality = results.read_table(folder, "quality")
    ok = (
        quality[(quality["status"] == "ok") & (quality.get("kind", "trained") != "baseline")]
        if not quality.empty
        else quality
    )
    done = set(zip(ok.get("entry", []), ok.get("seed", []))) & planned

    def kept(name: str, frame: pd.DataFrame) -> list[dict]:
        """The rows of ``done`` trainings, typed as if the table held only them: a column whose other rows were
        empty (a failed training's) reads back as numbers with a decimal point, and would be rewritten so."""
        if frame.empty:
            return []
        wanted = [(e, s) in done for e, s in zip(frame["entry"], frame["seed"])]
        if name == "quality":
            wanted = [keep and ok_row for keep, ok_row in zip(wanted, frame.index.isin(ok.index))]
        return results.records_from_text(results.read_table(folder, name, text=True)[wanted])

    speed = results.read_table(folder, "speed")
    if not speed.empty:  # the entries still planned, and the model's training step
        speed = speed[speed["entry"].isin({entry for entry, _ in planned} | {MODEL_ENTRY})]
    return (
        kept("quality", quality),
        kept("history", results.read_table(folder, "history")),
        kept("per_image", results.read_table(folder, "per_image")),
        speed,
        previous.get("resumes", []),
    )
