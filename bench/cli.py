"""Command line: python -m bench {run, validate, list, speed, check, report, export, compare, doctor, fetch, recover,
publish}, a thin layer over ``bench.api``.

Exit codes: 0 success, 1 some entries failed (or a speed regression), 2 bad input (message, no traceback).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from bench.errors import BenchInputError
from bench.speed.settings import ALPHA, MIN_FACTOR, GateSettings

DEFAULT_RESULTS = Path("results")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args, argv)
    except BenchInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="LossBench: train one autoencoder per reconstruction loss (or mix of losses) and compare "
        "their quality and cost. Results go to results/<suite>/<timestamp>/.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="train, evaluate and time every entry of a suite",
        description="Train an identical autoencoder for every entry (x seed) of SUITE, "
        "evaluate it on held-out images, time each loss, write the tables.",
    )
    run.add_argument("suite", type=Path, help="suite file (.toml), e.g. suites/all_losses.toml")
    _add_suite_overrides(run)
    run.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results root folder (default: results)")
    run.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an interrupted run in RUN_DIR: entries already complete are kept, the rest run",
    )
    run.add_argument("--force", action="store_true", help="with --resume: continue even if the suite changed")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first entry that fails")
    run.add_argument(
        "--deterministic",
        action="store_true",
        help="GPU: deterministic kernels only (slower); CPU runs are deterministic already",
    )
    run.add_argument("--no-timing", action="store_true", help="skip the loss speed measurement")
    run.add_argument(
        "--concurrent",
        type=_at_least_one,
        metavar="N",
        help="trainings at once on this machine's device, each in a worker process (default: chosen "
        "from the device, its memory and each entry's measured step; 1: all in this process)",
    )
    run.add_argument(
        "--threads",
        type=_at_least_one,
        metavar="T",
        help="CPU threads per training (default: the cores shared out among the trainings at once); "
        "results on a CPU depend on this, not on --concurrent",
    )
    scale = run.add_argument_group('scale out with Ray (pip install -e ".[distributed]")')
    scale.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run N trainings at once on a local Ray instance (one GPU each on a GPU machine)",
    )
    scale.add_argument("--gpus", help="with --workers: which GPUs to use, e.g. 0,1")
    scale.add_argument("--ray-address", help="send the trainings to an existing Ray cluster (e.g. auto or HOST:6379)")
    run.add_argument(
        "--no-progress", action="store_true", help="no progress display (bars, periodic lines); results still print"
    )
    reuse = run.add_argument_group(
        "reuse finished trainings (the store: docs/usage.md#the-store-of-finished-trainings)"
    )
    _add_store_option(reuse)
    reuse.add_argument("--no-store", action="store_true", help="neither reuse nor store trainings")
    reuse.add_argument(
        "--fresh", action="store_true", help="train every entry again, reusing nothing (the results are stored)"
    )
    _add_tracker_options(
        run,
        "--log-to",
        "also write each training's curves as it trains, and the finished run, to these trackers, e.g. "
        "tensorboard,mlflow (instead of the suite's log_to)",
    )
    _add_plugin_option(run)
    run.set_defaults(handler=_cmd_run)

    validate = commands.add_parser(
        "validate",
        help="check a suite file without running it",
        description="Parse SUITE and report the first problem (exit 2) or a plan summary.",
    )
    validate.add_argument("suite", type=Path)
    _add_suite_overrides(validate)
    _add_plugin_option(validate)
    validate.set_defaults(handler=_cmd_validate)

    listing = commands.add_parser("list", help="list every loss and model with its parameters, defaults and source")
    _add_plugin_option(listing)
    listing.set_defaults(handler=_cmd_list)

    speed = commands.add_parser(
        "speed",
        help="time each loss's forward and backward pass (no training)",
        description="Time every entry's loss (fwd, bwd, fwd+bwd) at the suite's timing "
        "settings; write speed.csv to a new run folder and print a table.",
    )
    speed.add_argument("suite", type=Path)
    speed.add_argument("--device", help='"auto", "cpu", "cuda" or "cuda:N"')
    speed.add_argument("--only", help="comma-separated entry names")
    speed.add_argument("--variants", help="comma-separated, from: fp32, tf32, bf16, channels_last, compile")
    speed.add_argument("--batch", type=int, help="timing batch size")
    speed.add_argument("--resolution", type=int, help="timing resolution (default: the suite's, 512)")
    speed.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results root folder (default: results)")
    speed.add_argument(
        "--train-step",
        action="store_true",
        help="also time the model's training step (fwd+bwd) at the training size, per variant",
    )
    speed.add_argument(
        "--references",
        action="store_true",
        help="also time other installed implementations (pytorch-msssim, piq, kornia, torchmetrics, "
        "lpips, focal-frequency-loss; on CUDA fussim, fused-ssim) of the same losses; "
        "writes speed_references.csv",
    )
    speed.add_argument(
        "--save-baseline",
        type=Path,
        metavar="FILE",
        help="also save a baseline record (times and the code's commit) to FILE",
    )
    speed.add_argument(
        "--check",
        type=Path,
        metavar="BASELINE",
        help="then run `bench check` against BASELINE, a run folder or speed.csv",
    )
    _add_verdict_options(speed)
    _add_plugin_option(speed)
    speed.set_defaults(handler=_cmd_speed, seed=None, seeds=None, steps=None, schedule=None, loss_networks=None)

    check = commands.add_parser(
        "check",
        help="fail (exit 1) when a loss got slower",
        description="Exit 1 when a loss is slower than its baseline by more than --min-factor AND a one-sided "
        "Mann-Whitney U test says so at --alpha. With --against REV (what CI runs): time SUITE's "
        "losses from the code of git revision REV and from the running code, interleaved on this "
        "machine now. With --baseline: compare two speed tables already timed (both on one machine).",
    )
    check.add_argument(
        "source",
        type=Path,
        help="with --against: a suite file; with --baseline: the candidate's run folder or speed.csv",
    )
    mode = check.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--against",
        metavar="REV",
        help="a git revision (commit, tag, branch), or a baseline record "
        "JSON whose commit to use, e.g. results/baselines/cpu.json",
    )
    mode.add_argument("--baseline", type=Path, help="the baseline's run folder or speed.csv")
    gate = check.add_argument_group("with --against")
    gate.add_argument("--candidate", metavar="REV", help="time this git revision's code instead of the running code")
    defaults = GateSettings()
    gate.add_argument(
        "--rounds",
        type=int,
        default=defaults.rounds,
        help=f"interleaved timing blocks per side and loss (default {defaults.rounds})",
    )
    gate.add_argument(
        "--block-ms",
        type=float,
        default=defaults.target_ms,
        help=f"shortest timing block, ms (default {defaults.target_ms:g})",
    )
    gate.add_argument(
        "--processes",
        type=int,
        default=defaults.processes,
        help=f"worker processes per side (default {defaults.processes})",
    )
    gate.add_argument("--device", default="cpu", help='"cpu" (default), "cuda" or "cuda:N"')
    gate.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results root folder (default: results)")
    _add_verdict_options(check)
    _add_plugin_option(check)
    check.set_defaults(handler=_cmd_check)

    report = commands.add_parser(
        "report",
        help="(re)build report.html of a run folder from its tables",
        description="Write RUN_DIR/report.html from the CSV tables alone (no re-training).",
    )
    report.add_argument("run_dir", type=Path, help="a run folder, results/<suite>/<timestamp>/")
    report.add_argument("--sort-by", default="psnr", help="summary column to sort the table by (default: psnr)")
    report.set_defaults(handler=_cmd_report)

    recover = commands.add_parser(
        "recover",
        help="reference recovery: optimise pixels toward held-out photographs "
        "under each loss, from noise, blur and JPEG",
        description="For each entry of SUITE, minimise its loss over an image's pixels "
        "(Adam, cosine-decaying rate, clamped to [0, 1]) toward held-out "
        "photographs at the loss's design size, from white noise, a blurred "
        "and a JPEG copy; write recovery.csv and recovery.html under "
        "results/<suite>/recover/<timestamp>/.",
    )
    recover.add_argument("suite", type=Path, help="suite file (.toml)")
    recover.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results root folder (default: results)")
    recover.add_argument("--device", help='"auto", "cpu", "cuda" or "cuda:N" (default: the suite\'s, else auto)')
    recover.add_argument("--only", help="comma-separated entry names, e.g. --only mse,ssim")
    settings = recover.add_argument_group("recovery settings (defaults: bench.evaluate.recover.RecoverySettings)")
    settings.add_argument("--steps", type=int, help="optimisation steps per start")
    settings.add_argument("--lr", type=float, help="Adam's initial rate, decayed along a cosine")
    settings.add_argument("--images", type=int, help="held-out photographs to recover")
    settings.add_argument("--side", type=int, help="crop side for every loss (0: each loss's design size)")
    settings.add_argument("--blur-sigma", type=float, help="Gaussian blur of the blurred start, in pixels")
    settings.add_argument("--jpeg-quality", type=int, help="PIL JPEG quality of the JPEG start")
    _add_plugin_option(recover)
    recover.set_defaults(handler=_cmd_recover)
    export = commands.add_parser(
        "export",
        help="write a finished run to TensorBoard or MLflow",
        description="Write RUN_DIR's training curves, held-out metrics, settings and "
        "reconstruction grids to trackers, from its tables alone (pip install "
        '-e ".[trackers]"). TensorBoard: RUN_DIR/tensorboard/; MLflow: the '
        "tracking URI, or results/mlflow.db. Replaces an earlier export.",
    )
    export.add_argument("run_dir", type=Path, help="a run folder, results/<suite>/<timestamp>/")
    _add_tracker_options(export, "--to", "the trackers, e.g. tensorboard,mlflow", required=True)
    export.set_defaults(handler=_cmd_export)

    compare = commands.add_parser(
        "compare",
        help="per-entry differences between two runs",
        description="Quality differences (b - a) and speed ratios (b / a) per entry, "
        "flagging changes larger than the seed-to-seed spread.",
    )
    compare.add_argument("run_a", type=Path)
    compare.add_argument("run_b", type=Path)
    compare.add_argument("--out", type=Path, help="also write the table to this CSV file")
    compare.set_defaults(handler=_cmd_compare)

    doctor = commands.add_parser(
        "doctor",
        help="what a run here would use and what is missing (always exits 0)",
        description="Devices, torch/CUDA/cuDNN versions, cached ImageNet weights, optional "
        "packages and data sources; nothing is downloaded or written.",
    )
    doctor.add_argument(
        "--no-network", action="store_true", help="do not probe whether the weights' download host is reachable"
    )
    doctor.set_defaults(handler=_cmd_doctor)

    fetch = commands.add_parser(
        "fetch",
        help="download named datasets into the cache ahead of a run",
        description="Download (once) and verify the named datasets a suite uses, or datasets "
        "named directly, e.g. on a login node before a GPU job. Cached files "
        "whose hashes match are not downloaded again.",
    )
    fetch.add_argument(
        "targets",
        nargs="+",
        metavar="SUITE_OR_DATASET",
        help="suite files (.toml) and/or dataset names (kodak, div2k, div2k-valid)",
    )
    fetch.add_argument("--no-progress", action="store_true", help="no progress bars")
    fetch.set_defaults(handler=_cmd_fetch)

    publish = commands.add_parser(
        "publish",
        help="one static leaderboard site from run folders",
        description="Leaderboards per comparable setting, loss, speed and runs pages from PATHs (run folders, or "
        "folders holding them); offline, opens from file://.",
    )
    publish.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="e.g. results/published my_results/")
    publish.add_argument("--out", type=Path, default=Path("site"), help="the site folder (default: site)")
    publish.set_defaults(handler=_cmd_publish)

    store = commands.add_parser(
        "store",
        help="list, prune or clear the store of finished trainings",
        description="The store of finished trainings that `bench run` reuses (default: $LOSSBENCH_STORE, else "
        "$XDG_CACHE_HOME/lossbench or ~/.cache/lossbench).",
    )
    actions = store.add_subparsers(title="actions", required=True, metavar="ACTION")
    listing_store = actions.add_parser("list", help="the stored trainings, oldest first")
    listing_store.add_argument("--suite", help="only this suite's")
    listing_store.add_argument("--entry", help="only this entry's")
    prune = actions.add_parser("prune", help="remove old trainings, or the oldest beyond a size")
    prune.add_argument("--older-than", type=float, metavar="DAYS", help="remove trainings stored over DAYS ago")
    prune.add_argument(
        "--max-size", metavar="SIZE", help="then remove the oldest until the store holds SIZE (500M, 2G)"
    )
    clear = actions.add_parser("clear", help="remove every stored training")
    for action, handler in ((listing_store, _cmd_store_list), (prune, _cmd_store_prune), (clear, _cmd_store_clear)):
        _add_store_option(action)
        action.set_defaults(handler=handler)
    return parser


def _add_store_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--store",
        type=Path,
        metavar="DIR",
        help="the store of finished trainings (default: $LOSSBENCH_STORE, else ~/.cache/lossbench)",
    )


def _add_verdict_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--min-factor",
        type=float,
        default=MIN_FACTOR,
        help=f"smallest slowdown that fails, as candidate / baseline (default {MIN_FACTOR})",
    )
    command.add_argument(
        "--alpha", type=float, default=ALPHA, help=f"significance level of the Mann-Whitney U test (default {ALPHA})"
    )


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _add_tracker_options(command: argparse.ArgumentParser, flag: str, meaning: str, required: bool = False) -> None:
    command.add_argument(flag, dest="trackers", metavar="TRACKERS", required=required, help=meaning)
    command.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow's tracking URI, e.g. http://host:5000 (default: the suite's, else results/mlflow.db)",
    )


def _add_plugin_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "-p",
        "--plugin",
        dest="plugins",
        action="append",
        default=[],
        metavar="MODULE_OR_FILE",
        help="load losses or models from a module (-p my_losses) or a .py file (--plugin "
        "path/losses.py); repeatable. Installed plugins (entry point groups lossbench.losses "
        "and lossbench.models) load anyway",
    )


def _add_suite_overrides(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group("override the suite without editing it")
    group.add_argument("--device", help='"auto", "cpu", "cuda" or "cuda:N" (default: the suite\'s, else auto)')
    group.add_argument("--steps", type=int, help="training steps per entry (after any device profile)")
    group.add_argument("--schedule", help="learning-rate schedule: constant, cosine or linear (train.schedule)")
    group.add_argument(
        "--loss-networks", help="precision of frozen loss networks: auto, bf16 or fp32 (train.loss_networks)"
    )
    group.add_argument("--only", help="comma-separated entry names to run, e.g. --only mse,ssim")
    group.add_argument("--seed", type=int, help="run this one seed instead of the suite's seeds")
    group.add_argument("--seeds", type=int, metavar="N", help="run seeds 0..N-1 instead of the suite's seeds")


def load_with_overrides(args: argparse.Namespace):
    """The suite as the user asked for it: plugins, file, then CLI overrides (which win over device profiles)."""
    from bench.api import load_suite, with_overrides

    suite = load_suite(args.suite, plugins=getattr(args, "plugins", ()))
    return with_overrides(
        suite,
        device=args.device,
        steps=args.steps,
        only=args.only,
        seed=args.seed,
        seeds=args.seeds,
        schedule=args.schedule,
        loss_networks=args.loss_networks,
    )


def _cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.train.process import prefer_passive_waits

    prefer_passive_waits()  # before torch loads: spinning OpenMP threads stall training on a shared CPU
    from bench import api
    from bench.trackers import parse_trackers
    from bench.train.runner import RunStopped

    suite = load_with_overrides(args)
    if args.deterministic:
        from bench.train.process import make_deterministic

        make_deterministic()
    trackers = parse_trackers(args.trackers, where="--log-to") if args.trackers is not None else None
    try:
        result = api.run(
            suite,
            out=args.out,
            timing=not args.no_timing,
            progress=not args.no_progress,
            resume=args.resume,
            force=args.force,
            fail_fast=args.fail_fast,
            workers=args.workers,
            ray_address=args.ray_address,
            gpus=args.gpus,
            deterministic=args.deterministic,
            concurrent=args.concurrent,
            threads=args.threads,
            store=False if args.no_store else args.store,
            fresh=args.fresh,
            log_to=trackers,
            tracking_uri=args.tracking_uri,
            argv=argv,
        )
    except RunStopped as stopped:
        print(f"\nerror: {stopped.error}" if stopped.error else "\ninterrupted", file=sys.stderr)
        print(
            f"finished entries are saved in {stopped.folder}\nresume with: {_resume_command(argv, stopped.folder)}",
            file=sys.stderr,
        )
        return 2 if stopped.error else 130
    _print_summary(result.summary)
    print(f"\nreport: {result.report}")
    print(f"run folder: {result.folder}")
    if result.failed:
        print(f"failed entries: {', '.join(result.failed)} (reasons in quality.csv)", file=sys.stderr)
        return 1
    return 0


def _resume_command(argv: list[str], folder) -> str:
    """The command that was run, with its overrides and plugins (a resume must plan the same run), resuming
    ``folder``."""
    kept = [
        arg
        for index, arg in enumerate(argv)
        if not (arg == "--resume" or arg.startswith("--resume=") or index and argv[index - 1] == "--resume")
    ]
    return shlex.join(["python", "-m", "bench", *kept, "--resume", str(folder)])


def _print_summary(summary) -> None:
    import pandas as pd

    columns = [
        c
        for c in (
            "task",
            "entry",
            "psnr",
            "ssim",
            "ms_ssim",
            "lpips",
            "learned",
            "psnr_gain_last20",
            "loss_fwd_bwd_ms",
            "train_seconds",
            "failed",
            "loss_weights",
        )
        if c in summary
    ]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print()
        print(summary[columns].to_string(index=False))


def _cmd_validate(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.config.plan import make_plan
    from bench.config.suite import profile_name, suite_for_device

    suite = load_with_overrides(args)
    for device_type in ("cpu", "cuda"):
        resolved = suite_for_device(suite, device_type)
        plan = make_plan(resolved, profile_name(suite, device_type))
        print(
            f"{suite.path}: on {device_type}: {len(plan)} trainings at {resolved.data.resolution}px, "
            f"{resolved.train.steps} steps; timing at {resolved.timing.resolution}px batch {resolved.timing.batch_size}"
        )
    print(f"  model: {suite.model.description}")
    for entry in suite.entries:
        print(f"  {entry.name}: {entry.formula}")
    print("suite is valid")
    return 0


def _cmd_list(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.losses import get_loss_info, loss_names
    from bench.losses.registry import IMAGE_RANGE
    from bench.models import get_model_info, model_names
    from bench.config.plugins import load_plugins

    load_plugins(args.plugins)
    for name in loss_names():
        info = get_loss_info(name)
        notes = [info.source]
        if info.input_range != IMAGE_RANGE:
            notes.append(f"inputs mapped to [{info.input_range[0]:g}, {info.input_range[1]:g}]")
        if info.pretrained:
            notes.append("pretrained networks")
        _print_listed(name, info.summary, info.defaults, notes)
    print('\nmodels (a suite\'s [model] table: name = "..." and these parameters):')
    for name in model_names():
        info = get_model_info(name)
        _print_listed(name, info.summary, info.defaults, [info.source])
    return 0


def _print_listed(name: str, summary: str, defaults, notes: list[str]) -> None:
    params = ", ".join(f"{key}={value!r}" for key, value in defaults.items()) or "no parameters"
    print(f"{name:16s} {summary}\n{'':16s} {params}\n{'':16s} [{'; '.join(notes)}]")


def _cmd_report(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.report import write_report

    print(write_report(args.run_dir, sort_by=args.sort_by))
    return 0


def _cmd_recover(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.api import recover

    given = {
        key: getattr(args, key)
        for key in ("steps", "lr", "images", "side", "blur_sigma", "jpeg_quality")
        if getattr(args, key) is not None
    }
    result = recover(args.suite, out=args.out, plugins=args.plugins, device=args.device, only=args.only, **given)
    print(result.page)
    return 0


def _cmd_export(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.trackers import export_run, parse_trackers

    failed = export_run(args.run_dir, parse_trackers(args.trackers, where="--to"), tracking_uri=args.tracking_uri)
    return 1 if failed else 0


def _cmd_doctor(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.doctor import report

    print("\n".join(report(network_check=not args.no_network)))
    return 0


def _cmd_fetch(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.data.datasets import DATASETS, fetch

    wanted: dict[tuple[str, Path | None], None] = {}  # (dataset, data.cache resolved), in the order named
    for target in args.targets:
        if target in DATASETS:
            wanted[(target, None)] = None
        elif Path(target).is_file():
            wanted.update(dict.fromkeys(suite_datasets(Path(target))))
        else:
            raise BenchInputError(
                "neither a suite file nor a dataset name",
                where=target,
                fix=f"pass a suite (.toml) or one of: {', '.join(DATASETS)}",
            )
    if not wanted:
        print("no named datasets to fetch: the suites use bundled or folder sources only")
    for name, cache in wanted:
        folder = fetch(name, cache, progress=not args.no_progress)
        print(f"{name}: {len(DATASETS[name].files)} file(s) present and verified in {folder}")
    return 0


def suite_datasets(path: Path) -> list[tuple[str, Path | None]]:
    """(dataset, cache folder from data.cache) for every named dataset a suite's runs would read, on any device
    profile and with any entry's data overrides."""
    from bench.data.datasets import DATASETS
    from bench.config.plan import make_plan
    from bench.config.suite import load_suite, resolve_suite_path, suite_for_device

    suite = load_suite(path)
    found: dict[tuple[str, Path | None], None] = {}
    for device_type in ("cpu", "cuda"):
        for spec in make_plan(suite_for_device(suite, device_type), device_type):
            for source in (spec.data.source, spec.data.eval_source):
                if source in DATASETS:
                    found[(source, resolve_suite_path(suite, spec.data.cache))] = None
    return list(found)


def _cmd_compare(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.report.compare import compare_runs, format_comparison, write_comparison

    table = write_comparison(args.run_a, args.run_b, args.out) if args.out else compare_runs(args.run_a, args.run_b)
    print(format_comparison(table))
    return 0


def _cmd_speed(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.api import run_speed

    variants = tuple(v.strip() for v in args.variants.split(",")) if args.variants else None
    result = run_speed(
        args.suite,
        out=args.out,
        plugins=args.plugins,
        device=args.device,
        only=args.only,
        batch_size=args.batch,
        resolution=args.resolution,
        variants=variants,
        train_step=args.train_step,
        references=args.references,
        save_baseline=args.save_baseline,
        argv=argv,
    )
    if args.check:
        return _check(result.folder, args.check, args.min_factor, args.alpha)
    return 0


def _cmd_check(args: argparse.Namespace, argv: list[str]) -> int:
    if args.baseline:
        return _check(args.source, args.baseline, args.min_factor, args.alpha)
    from bench.api import check_speed
    from bench.speed.stats import format_verdicts

    settings = GateSettings(
        rounds=args.rounds,
        target_ms=args.block_ms,
        processes=args.processes,
        min_factor=args.min_factor,
        alpha=args.alpha,
    )
    result = check_speed(
        args.source,
        args.against,
        candidate=args.candidate,
        out=args.out,
        plugins=args.plugins,
        device=args.device,
        settings=settings,
    )
    verdicts = result.verdicts
    print(format_verdicts(verdicts))
    print(f"tables: {result.folder / 'speed_gate.csv'}")
    return _verdict(verdicts, args.min_factor, args.alpha)


def _check(candidate: Path, baseline: Path, min_factor: float, alpha: float) -> int:
    from bench.speed.check import check_tables
    from bench.speed.stats import format_verdicts

    table, _ = check_tables(candidate, baseline, min_factor=min_factor, alpha=alpha)
    print(format_verdicts(table))
    return _verdict(table, min_factor, alpha)


def _verdict(table, min_factor: float, alpha: float) -> int:
    slower = table.loc[table["verdict"] == "SLOWER", "entry"].tolist()
    if slower:
        print(f"speed check: FAILED: {', '.join(slower)} slower by more than {min_factor:g}x (p < {alpha:g})")
        return 1
    print("speed check: passed")
    return 0


def _cmd_publish(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.report.publish import publish

    site = publish(args.paths, args.out)
    print(f"{len(site.leaderboards)} leaderboards from {len(site.runs)} runs: {site.folder / 'index.html'}")
    print(site.size_line())
    return 0


def _cmd_store_list(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.results.store import human_size, open_store

    store = open_store(args.store)
    listed = store.listed(suite=args.suite, entry=args.entry)
    for item in listed:
        print(
            f"{item.key[:12]}  {item.created.replace('T', ' ')}  {item.suite}  {item.entry} seed {item.seed}  "
            f"{human_size(item.size)}  {item.settings}  from {item.source_run}"
        )
    print(f"{len(listed)} shown; {store.size_line()}")
    return 0


def _cmd_store_prune(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.results.store import open_store, parse_size, trainings

    if args.older_than is None and args.max_size is None:
        raise BenchInputError(
            "prune needs --older-than DAYS or --max-size SIZE", where="bench store prune", fix="e.g. --older-than 30"
        )
    store = open_store(args.store)
    gone = store.prune(args.older_than, parse_size(args.max_size) if args.max_size else None)
    print(f"removed {trainings(len(gone))}; {store.size_line()}")
    return 0


def _cmd_store_clear(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.results.store import open_store, trainings

    store = open_store(args.store)
    print(f"removed {trainings(store.clear())}; {store.size_line()}")
    return 0
