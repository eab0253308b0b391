"""A suite file (TOML) parsed once into frozen dataclasses; every later stage takes these.

Every error names the file and the key at fault and says how to fix it (``BenchInputError``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pandas._libs.parsers import STR_NA_VALUES  # the default na_values of read_csv (no public name)

from bench.data.datasets import DATASETS
from bench.errors import BenchInputError, did_you_mean
from bench.losses.registry import resolve_params
from bench.models.registry import resolve_model_params
from bench.evaluate.metrics import DEFAULT_METRICS, METRICS
from bench.config.names import check_distinct_stems, check_entry_name, check_suite_name
from bench.speed.timing import VARIANTS as TIMING_VARIANTS
from bench.trackers import check_trackers

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DECODER_BASE = 8  # the decoder starts from an 8x8x512 map and doubles per stage
LATENT_SIDE = 8  # a conv bottleneck's latent is an 8x8 map
BASELINE_PREFIX = "baseline-"  # names of the rows that need no training (bench.data.baselines)
BOTTLENECKS = ("conv", "linear")
# Every task but autoencode is a restoration task: its input is degraded (bench.data.degrade).
TASKS = ("autoencode", "denoise", "deblur", "jpeg", "super_resolution")
# The model of a [model] table without a name: the restoration nets start from the degraded input.
DEFAULT_MODELS = {
    "autoencode": "autoencoder",
    "denoise": "denoiser",
    "deblur": "denoiser",
    "jpeg": "denoiser",
    "super_resolution": "upsampler",
}
SOURCES = ("bundled", "folder", *DATASETS)  # what data.source and data.eval_source accept
LOSS_NETWORK_PRECISIONS = ("auto", "bf16", "fp32")
SCHEDULES = ("constant", "cosine", "linear")  # train.schedule (bench.train.schedules builds them)
NA_LIKE_NAMES = {value.lower() for value in STR_NA_VALUES}  # what pandas.read_csv reads back as missing


@dataclass(frozen=True)
class DataConfig:
    source: str = "bundled"  # "bundled" (offline sample photos), "folder", or a named dataset (bench.data.datasets)
    path: str | None = None  # folder of png/jpg images (source = "folder"), relative to the suite file
    eval_source: str | None = None  # evaluate on every photograph of this source instead of holding some out
    eval_path: str | None = None  # folder of images (eval_source = "folder"), relative to the suite file
    cache: str | None = None  # named datasets' cache folder, relative to the suite file ($LOSSBENCH_DATA_DIR wins)
    resolution: int = 512  # side of the square training and evaluation crops
    scale: float = 1.0  # photographs are resized by this factor before cropping (0.5: half their native size)
    images: int = 10  # how many bundled photographs to use: held-out ones, then colour, then grayscale (max 19)
    eval_images: int = 4  # photographs held out from training (without eval_source); evaluation crops come from these
    eval_crops: int = 24  # fixed evaluation crops, taken round-robin from the held-out photographs
    flip: bool = True  # random horizontal flips of training crops, drawn from the seed
    rotate: bool = True  # random quarter turns of training crops, drawn from the seed
    noise_std: float = 0.1  # Gaussian noise added to inputs when task = "denoise"
    blur_sigma: float = 2.0  # Gaussian blur of the inputs (px) when task = "deblur"
    jpeg_quality: int = 10  # PIL JPEG quality of the inputs when task = "jpeg"
    scale_factor: int = 4  # task = "super_resolution": inputs are shrunk by this factor
    # With several train.lr: training photographs held out of the trainings that choose each entry's rate, whose
    # crops score them (the evaluation photographs never do).
    validation_images: int = 1
    split: str = "test"  # "test": score on the evaluation crops; "validation": on the validation_images' crops


@dataclass(frozen=True)
class ModelConfig:
    """The model every entry trains (bench.models): a registered name and every parameter, defaults included."""

    name: str
    params: tuple[tuple[str, Any], ...]  # (key, value) pairs, so the config can key a cache of initial models

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def description(self) -> str:
        """e.g. ``autoencoder(latent_dim=256, bottleneck='conv', width=512)``."""
        return f"{self.name}({', '.join(f'{key}={value!r}' for key, value in self.params)})"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 300
    batch_size: int = 8
    # Adam's learning rate; a list [common, other, ...]: every entry trains at the first (the common rate), and
    # also at the rate of the list that gives it the lowest loss on validation crops (bench.train.rates).
    lr: float | tuple[float, ...] = 2e-4
    log_every: int = 10
    eval_every: int = 50  # held-out PSNR and SSIM every this many steps (0: never during training)
    on_nan: str = "stop"  # a NaN/inf loss: "stop" fails the entry; "skip" drops that step (a host sync per step)
    bf16: bool = False  # bf16 autocast for the model's forward (losses that need float32 keep it themselves)
    channels_last: bool = False  # channels-last memory format for the model and its batches
    checkpoint_every: int = 0  # save model + optimizer every N steps so --resume continues mid-entry (0: never)
    ema: float = 0.0  # evaluate an exponential moving average of the weights with this decay, e.g. 0.99 (0: off)
    # The learning rate over the steps (bench.train.schedules): "constant", or a "cosine" or "linear" decay from
    # train.lr to min_lr by the last step; warmup: a linear ramp over this many steps (or this fraction of them).
    schedule: str = "constant"
    warmup: float = 0.0
    min_lr: float = 0.0  # the rate a decay ends at
    min_lr_rate: float = 0.0  # or: this fraction of the entry's train.lr (not with min_lr)
    # Frozen loss networks (VGG features, LPIPS): "bf16" runs their forward under bfloat16 autocast, "fp32" in
    # float32, "auto" picks bf16 on a CPU that computes it natively (oneDNN's check) and fp32 elsewhere.
    loss_networks: str = "auto"

    @property
    def warmup_steps(self) -> int:
        """``warmup`` in steps: a whole number is steps, a number in (0, 1) a fraction of ``steps``."""
        return round(self.warmup * self.steps) if 0 < self.warmup < 1 else int(self.warmup)

    @property
    def final_lr(self) -> float:
        """The rate a decay ends at: ``min_lr``, or ``min_lr_rate`` times the (single) peak rate."""
        return self.min_lr_rate * self.lr if self.min_lr_rate else self.min_lr


@dataclass(frozen=True)
class TimingConfig:
    resolution: int = 512
    batch_size: int = 4
    variants: tuple[str, ...] = ("fp32",)
    min_repeats: int = 5
    min_time_s: float = 1.0
    warmup: int = 1
    threads: int = 0  # CPU threads while timing; 0 keeps torch's default (recorded in every row either way)


@dataclass(frozen=True)
class MetricsConfig:
    compute: tuple[str, ...] = DEFAULT_METRICS  # held-out metrics (bench.evaluate.metrics.METRICS); PSNR always
    lpips_net: str = "alex"
    lpips_weights: str = "auto"
    dists_weights: str = "auto"  # "auto": DISTS only where its trained weights load; "random" or a path: always
    psnr_targets: tuple[float, ...] = ()  # time-to-quality: step and seconds when eval PSNR first reaches each


@dataclass(frozen=True)
class VerdictConfig:
    # The entry whose scores on each entry's own measures that entry must not fall below significantly (else it
    # "did not optimise its own measure"); "": the entry named mse, where there is one.
    reference: str = ""


SECTIONS: dict[str, type] = {  # the tables of settings; [model] is the model's own (see model_config)
    "data": DataConfig,
    "train": TrainConfig,
    "timing": TimingConfig,
    "metrics": MetricsConfig,
    "verdict": VerdictConfig,
}
ENTRY_OVERRIDABLE = ("data", "model", "train")  # an entry may change how it is trained, not how it is measured


@dataclass(frozen=True)
class Term:
    loss: str
    weight: float
    params: Mapping[str, Any]
    label: str  # unique within its entry, e.g. "mse" or "perceptual"


@dataclass(frozen=True)
class Entry:
    name: str
    terms: tuple[Term, ...]
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # section -> key -> value

    @property
    def formula(self) -> str:
        return " + ".join(f"{t.weight:g}*{t.label}" for t in self.terms)


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    sha256: str
    task: str
    device: str
    seeds: tuple[int, ...]
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    timing: TimingConfig
    metrics: MetricsConfig
    entries: tuple[Entry, ...]
    profiles: Mapping[str, Mapping[str, Mapping[str, Any]]]  # device type -> section -> key -> value
    description: str = ""
    requires: tuple[str, ...] = ()  # plugins the suite needs (bench.config.plugins); a suite never loads code
    log_to: tuple[str, ...] = ()  # trackers a run also writes to: "tensorboard", "mlflow" (bench.trackers)
    tracking_uri: str | None = None  # MLflow's tracking URI (None: a local store beside the run folders)
    text: str = ""  # the TOML the suite was parsed from, copied into every run folder
    verdict: VerdictConfig = field(default_factory=VerdictConfig)
    # Every task of the suite file (task = [...]); the fields above are its first task's (see task_suites).
    tasks: tuple[str, ...] = ()
    task_models: Mapping[str, ModelConfig] = field(default_factory=dict)  # each task's model, with several tasks


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise BenchInputError(
            "suite file not found", where=where, fix="pass the path of a .toml suite, e.g. suites/smoke.toml"
        )
    raw_bytes = path.read_bytes()
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise BenchInputError(
            f"not valid TOML: {error}", where=where, fix="correct the syntax at the line shown"
        ) from None
    return parse_suite(raw, path=path, sha256=hashlib.sha256(raw_bytes).hexdigest(), text=raw_bytes.decode("utf-8"))


def parse_suite(raw: Mapping[str, Any], *, path: Path, sha256: str = "", text: str = "") -> Suite:
    where = str(path)
    allowed = {
        "name",
        "description",
        "task",
        "device",
        "seeds",
        "requires",
        "profile",
        "entry",
        "model",
        "log_to",
        "tracking_uri",
        *SECTIONS,
    }
    _reject_unknown(raw, allowed, where)
    name = check_suite_name(_typed(raw, "name", str, where, default=path.stem), where=f"{where}: name")
    tasks = _parse_tasks(raw.get("task", "autoencode"), f"{where}: task")
    task_models = {}
    if len(tasks) > 1:  # each task's own suite must be valid (its default model, a scale factor, ...)
        task_models = {
            task: parse_suite({**raw, "task": task}, path=path, sha256=sha256, text=text).model for task in tasks
        }
        raw = {**raw, "task": tasks[0]}
    task = tasks[0]
    seeds = _parse_seeds(raw.get("seeds", [0]), f"{where}: seeds")
    sections = {key: _parse_section(key, raw.get(key, {}), where) for key in SECTIONS}
    sections["model"] = model_config(
        _table(raw.get("model", {}), "model", f"{where}: model"),
        ModelConfig(DEFAULT_MODELS[task], ()),
        where=f"{where}: model",
    )
    metrics = sections["metrics"]
    sections["metrics"] = dataclasses.replace(
        metrics,
        lpips_weights=resolve_weights_path(metrics.lpips_weights, path.parent),
        dists_weights=resolve_weights_path(metrics.dists_weights, path.parent),
    )
    profiles = _parse_profiles(raw.get("profile", {}), where)
    requires = _parse_requires(raw.get("requires", []), f"{where}: requires")  # before entries name their losses
    entries = _parse_entries(raw.get("entry"), path)
    suite = Suite(
        name=name,
        path=path,
        sha256=sha256,
        task=task,
        device=_typed(raw, "device", str, where, default="auto"),
        seeds=seeds,
        entries=entries,
        profiles=profiles,
        description=_typed(raw, "description", str, where, default=""),
        requires=requires,
        log_to=_parse_log_to(raw.get("log_to", []), f"{where}: log_to"),
        tracking_uri=_typed(raw, "tracking_uri", str, where, default="") or None,
        text=text,
        tasks=tasks,
        task_models=task_models,
        **sections,
    )
    for profile in profiles:  # a profile must yield a valid suite too
        validate_settings(suite_for_device(suite, profile), where=f"{where}: profile.{profile}")
    validate_settings(suite, where=where)
    for entry in entries:  # so must an entry's own settings
        validate_settings(
            apply_overrides(suite, entry.overrides, where=f"{where}: entry {entry.name}"),
            where=f"{where}: entry {entry.name}",
        )
    return suite


def task_suites(suite: Suite) -> list[Suite]:
    """One suite per task of ``suite``, each as if its file named that task alone (a [model] table without a
    name gives each task its own default model); every other setting, command-line overrides too, is kept."""
    if len(suite.tasks) < 2:
        return [suite]
    return [
        dataclasses.replace(suite, task=task, tasks=(task,), task_models={}, model=suite.task_models[task])
        for task in suite.tasks
    ]


def model_config(values: Mapping[str, Any], base: ModelConfig, *, where: str) -> ModelConfig:
    """``base`` changed by a [model] table: ``name`` picks another model (from its defaults), the other keys are
    parameters of the model picked."""
    values = dict(values)
    name = values.pop("name", base.name)
    if not isinstance(name, str):
        raise BenchInputError(
            f"name must be a model name, got {name!r}",
            where=f"{where}.name",
            fix='e.g. name = "autoencoder" (see `python -m bench list` for the models)',
        )
    params = {**(base.settings if name == base.name else {}), **values}
    return ModelConfig(name, tuple(resolve_model_params(name, params, where=where).items()))


def apply_overrides(suite: Suite, overrides: Mapping[str, Mapping[str, Any]], *, where: str) -> Suite:
    """A copy of ``suite`` with section values replaced, e.g. ``{"train": {"steps": 5}}``."""
    changed = {}
    for section, values in overrides.items():
        current = getattr(suite, section)
        if section == "model":
            changed[section] = model_config(values, current, where=f"{where}.model")
            continue
        checked = {
            key: _check_field(type(current), key, value, f"{where}.{section}.{key}") for key, value in values.items()
        }
        changed[section] = dataclasses.replace(current, **checked)
    return dataclasses.replace(suite, **changed)


def _overlap(a: Path, b: Path) -> bool:
    """Either folder is, or lies inside, the other: folders are read with their subfolders."""
    a, b = a.resolve(), b.resolve()
    return a.is_relative_to(b) or b.is_relative_to(a)


def validate_settings(suite: Suite, *, where: str) -> None:
    """Checks that need several settings at once, or the file system."""
    for section_name, resolution in (("data", suite.data.resolution), ("timing", suite.timing.resolution)):
        if suite.model.name == "autoencoder":  # the other models are fully convolutional
            check_resolution(resolution, where=f"{where}: {section_name}.resolution")
        elif resolution < 8:
            raise BenchInputError(
                f"{section_name}.resolution must be at least 8, got {resolution}",
                where=f"{where}: {section_name}.resolution",
                fix="use e.g. 64",
            )
    data = suite.data
    for key, source in (("data.source", data.source), ("data.eval_source", data.eval_source)):
        if source is not None and source not in SOURCES:
            hint = did_you_mean(source, SOURCES)
            raise BenchInputError(
                f"unknown data source {source!r}",
                where=f"{where}: {key}",
                fix=f'{hint}use "bundled" (offline sample images), "folder" with a path, or a named '
                f"dataset: {', '.join(DATASETS)}",
            )
    folders = {"path": resolve_suite_path(suite, data.path), "eval_path": resolve_suite_path(suite, data.eval_path)}
    if folders["eval_path"] is not None and data.eval_source != "folder":
        raise BenchInputError(
            'data.eval_path is only read with eval_source = "folder"',
            where=f"{where}: data.eval_path",
            fix='add eval_source = "folder", or drop eval_path',
        )
    for source, path_key in ((data.source, "path"), (data.eval_source, "eval_path")):
        if source != "folder":
            continue
        if folders[path_key] is None:
            raise BenchInputError(
                "a folder source needs a path", where=f"{where}: data.{path_key}", fix=f'add {path_key} = "my_images/"'
            )
        if not folders[path_key].is_dir():
            raise BenchInputError(
                f"image folder {str(folders[path_key])!r} does not exist",
                where=f"{where}: data.{path_key}",
                fix=f"point data.{path_key} at a folder of .png/.jpg images (relative to the suite file)",
            )
    if data.eval_source == data.source and (data.source != "folder" or _overlap(folders["path"], folders["eval_path"])):
        overlap = (
            " and eval_path is, holds or lies inside path (subfolders are read)" if data.source == "folder" else ""
        )
        raise BenchInputError(
            f"eval_source is the training source {data.source!r}{overlap}: the model would be "
            "evaluated on photographs it trained on",
            where=f"{where}: data.eval_source",
            fix="drop eval_source (then data.eval_images photographs are held out of the source) "
            "or name another source",
        )
    positive = [
        ("data.images", data.images),
        ("data.eval_images", data.eval_images),
        ("data.eval_crops", data.eval_crops),
        ("train.steps", suite.train.steps),
        ("train.batch_size", suite.train.batch_size),
        ("train.log_every", suite.train.log_every),
        ("timing.batch_size", suite.timing.batch_size),
        ("timing.min_repeats", suite.timing.min_repeats),
    ]
    for key, value in positive:
        if value < 1:
            raise BenchInputError(
                f"{key} must be at least 1, got {value}", where=f"{where}: {key}", fix="use a positive integer"
            )
    if data.source == "bundled" and data.eval_source is None and data.eval_images >= data.images:
        raise BenchInputError(
            f"eval_images ({data.eval_images}) must be fewer than images ({data.images})",
            where=f"{where}: data.eval_images",
            fix="hold out fewer images or use more",
        )
    if not (data.scale > 0 and math.isfinite(data.scale)):
        raise BenchInputError(
            f"data.scale must be a positive number, got {data.scale}",
            where=f"{where}: data.scale",
            fix="use e.g. 1.0 (native size) or 0.5 (half size)",
        )
    if suite.model.name == "autoencoder":
        _validate_autoencoder(suite.model.settings, where)
    if suite.train.on_nan not in ("stop", "skip"):
        raise BenchInputError(
            f"unknown on_nan policy {suite.train.on_nan!r}",
            where=f"{where}: train.on_nan",
            fix='use "stop" (fail the entry) or "skip" (drop the step and count it)',
        )
    if suite.timing.min_repeats < 2:
        raise BenchInputError(
            f"timing.min_repeats must be at least 2, got {suite.timing.min_repeats}",
            where=f"{where}: timing.min_repeats",
            fix="an IQR needs two samples; use e.g. 5",
        )
    rates = suite.train.lr if isinstance(suite.train.lr, tuple) else (suite.train.lr,)
    if not rates or not all(rate > 0 and math.isfinite(rate) for rate in rates) or len(set(rates)) != len(rates):
        raise BenchInputError(
            f"train.lr must be a positive number or a list of distinct ones, got "
            f"{list(rates) if isinstance(suite.train.lr, tuple) else suite.train.lr}",
            where=f"{where}: train.lr",
            fix="use e.g. 2e-4, or [1e-3, 3e-4, 3e-3] (the first is common)",
        )
    _validate_schedule(suite.train, rates, where)
    if suite.train.loss_networks not in LOSS_NETWORK_PRECISIONS:
        raise BenchInputError(
            f"unknown train.loss_networks {suite.train.loss_networks!r}",
            where=f"{where}: train.loss_networks",
            fix='use "auto" (bf16 where the CPU computes it natively), "bf16" or "fp32"',
        )
    if data.split not in ("test", "validation"):
        raise BenchInputError(
            f"unknown data.split {data.split!r}",
            where=f"{where}: data.split",
            fix='use "test" (the evaluation crops) or "validation" (crops of held-out training photographs)',
        )
    if data.validation_images < 1:
        raise BenchInputError(
            f"data.validation_images must be at least 1, got {data.validation_images}",
            where=f"{where}: data.validation_images",
            fix="use e.g. 1",
        )
    if not 0 <= suite.train.ema < 1:
        raise BenchInputError(
            f"train.ema must be in [0, 1), got {suite.train.ema}",
            where=f"{where}: train.ema",
            fix="use e.g. 0.99 (an average over about 100 steps), or 0 for the last weights",
        )
    if data.noise_std < 0:
        raise BenchInputError("data.noise_std must be >= 0", where=f"{where}: data.noise_std", fix="use e.g. 0.1")
    if not (data.blur_sigma > 0 and math.isfinite(data.blur_sigma)):
        raise BenchInputError(
            f"data.blur_sigma must be a positive number, got {data.blur_sigma}",
            where=f"{where}: data.blur_sigma",
            fix="use e.g. 2.0 (pixels)",
        )
    if not 1 <= data.jpeg_quality <= 95:
        raise BenchInputError(
            f"data.jpeg_quality must be from 1 to 95, got {data.jpeg_quality}",
            where=f"{where}: data.jpeg_quality",
            fix="use e.g. 10 (PIL's quality scale)",
        )
    if data.scale_factor < 2 or data.resolution % data.scale_factor:
        raise BenchInputError(
            f"data.scale_factor must be at least 2 and divide data.resolution "
            f"({data.resolution}), got {data.scale_factor}",
            where=f"{where}: data.scale_factor",
            fix="use e.g. 2 or 4",
        )
    for name in suite.metrics.compute:
        if name not in METRICS:
            hint = did_you_mean(name, list(METRICS))
            raise BenchInputError(
                f"unknown metric {name!r}",
                where=f"{where}: metrics.compute",
                fix=f"{hint}known metrics: {', '.join(METRICS)}",
            )
    names = [entry.name for entry in suite.entries]
    if suite.verdict.reference and suite.verdict.reference not in names:
        raise BenchInputError(
            f"the reference {suite.verdict.reference!r} is not an entry of this suite",
            where=f"{where}: verdict.reference",
            fix=f"name one of its entries ({', '.join(names)}), or drop it to compare with mse",
        )
    for variant in suite.timing.variants:
        if variant not in TIMING_VARIANTS:
            raise BenchInputError(
                f"unknown timing variant {variant!r}",
                where=f"{where}: timing.variants",
                fix=f"use any of {', '.join(TIMING_VARIANTS)}",
            )


def _validate_schedule(train: TrainConfig, rates: tuple[float, ...], where: str) -> None:
    if train.schedule not in SCHEDULES:
        hint = did_you_mean(train.schedule, list(SCHEDULES))
        raise BenchInputError(
            f"unknown train.schedule {train.schedule!r}",
            where=f"{where}: train.schedule",
            fix=f"{hint}use one of {', '.join(SCHEDULES)}",
        )
    warmup = train.warmup
    if not (math.isfinite(warmup) and warmup >= 0 and (warmup < 1 or warmup == int(warmup))):
        raise BenchInputError(
            f"train.warmup must be a whole number of steps or a fraction in (0, 1), got {warmup:g}",
            where=f"{where}: train.warmup",
            fix="use e.g. 100 (steps) or 0.05 (5% of train.steps), or 0 for none",
        )
    if train.warmup_steps >= train.steps:
        raise BenchInputError(
            f"train.warmup ({train.warmup_steps} steps) leaves none of train.steps ({train.steps})",
            where=f"{where}: train.warmup",
            fix="warm up over fewer steps than the training has, e.g. 0.05",
        )
    if train.min_lr and train.min_lr_rate:
        raise BenchInputError(
            "train.min_lr and train.min_lr_rate are both set",
            where=f"{where}: train.min_lr_rate",
            fix="give the final rate once: min_lr (a rate) or min_lr_rate (a fraction of train.lr)",
        )
    if train.schedule == "constant" and (train.min_lr or train.min_lr_rate):
        key = "min_lr" if train.min_lr else "min_lr_rate"
        raise BenchInputError(
            f"train.{key} is set but a constant schedule never decays",
            where=f"{where}: train.{key}",
            fix='use schedule = "cosine" or "linear", or drop the key',
        )
    if not 0 <= train.min_lr_rate < 1:
        raise BenchInputError(
            f"train.min_lr_rate must be in [0, 1), got {train.min_lr_rate:g}",
            where=f"{where}: train.min_lr_rate",
            fix="use e.g. 0.01 (the decay ends at 1% of train.lr)",
        )
    if not (math.isfinite(train.min_lr) and 0 <= train.min_lr < min(rates)):
        raise BenchInputError(
            f"train.min_lr must be at least 0 and below every train.lr ({min(rates):g}), got {train.min_lr:g}",
            where=f"{where}: train.min_lr",
            fix="use e.g. 0 (decay to zero) or 1e-6",
        )


def _validate_autoencoder(model: Mapping[str, Any], where: str) -> None:
    """The built-in autoencoder's constraints, checked with the suite rather than when the model is first built."""
    for key in ("latent_dim", "width"):
        if model[key] < 1:
            raise BenchInputError(
                f"model.{key} must be at least 1, got {model[key]}",
                where=f"{where}: model.{key}",
                fix="use a positive integer",
            )
    if model["bottleneck"] not in BOTTLENECKS:
        raise BenchInputError(
            f"unknown bottleneck {model['bottleneck']!r}",
            where=f"{where}: model.bottleneck",
            fix=f"use one of {', '.join(BOTTLENECKS)}",
        )
    if model["bottleneck"] == "conv" and model["latent_dim"] % LATENT_SIDE**2:
        raise BenchInputError(
            f"a conv bottleneck is an {LATENT_SIDE}x{LATENT_SIDE} map, so latent_dim must be a "
            f"multiple of {LATENT_SIDE**2}, got {model['latent_dim']}",
            where=f"{where}: model.latent_dim",
            fix=f'use e.g. 256 ({LATENT_SIDE}x{LATENT_SIDE}x4), or bottleneck = "linear"',
        )


def check_resolution(resolution: int, *, where: str) -> None:
    """The decoder doubles an 8x8 map per stage, so it reaches 16, 32, ..., 512, 1024, ... only."""
    stages = math.log2(resolution / DECODER_BASE) if resolution > 0 else -1
    if stages < 1 or stages != int(stages):
        reachable = [DECODER_BASE * 2**k for k in range(1, 9)]
        nearest = min(reachable, key=lambda r: abs(r - resolution))
        raise BenchInputError(
            f"resolution {resolution} cannot be reached by the decoder (8x8 doubled per stage)",
            where=where,
            fix=f"use one of {', '.join(map(str, reachable))}; nearest: {nearest}",
        )


def resolve_suite_path(suite: Suite, value: str | None) -> Path | None:
    """A path named in a suite (data.path, data.eval_path, data.cache): relative to the suite file."""
    if value is None:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else (suite.path.parent / path).resolve()


def resolve_weights_path(weights: Any, suite_dir: Path) -> Any:
    """A weights file named in a suite is relative to the suite file; policy names pass through."""
    if not isinstance(weights, str) or weights in ("auto", "imagenet", "random") or Path(weights).is_absolute():
        return weights
    return str((suite_dir / weights).resolve())


def profile_name(suite: Suite, device_type: str) -> str:
    """Which [profile.*] table applies on this device type: "cpu", "cuda", or "none"."""
    return device_type if device_type in suite.profiles else "none"


def suite_for_device(suite: Suite, device_type: str) -> Suite:
    """The suite with the profile of this device type (``cpu`` / ``cuda``) applied, if it has one: its
    section settings and, if it names them, its seeds."""
    overrides = dict(suite.profiles.get(device_type, {}))
    if "seeds" in overrides:
        suite = dataclasses.replace(suite, seeds=tuple(overrides.pop("seeds")))
    return apply_overrides(suite, overrides, where=f"{suite.path}: profile.{device_type}") if overrides else suite


def without_profile_seeds(suite: Suite) -> Suite:
    """``suite`` with the seeds of its profiles dropped, so that seeds given on the command line hold everywhere."""
    profiles = {
        name: {key: value for key, value in table.items() if key != "seeds"} for name, table in suite.profiles.items()
    }
    return dataclasses.replace(suite, profiles=profiles)


# --- parsing helpers -------------------------------------------------------------------------------------


def _reject_unknown(table: Mapping[str, Any], allowed, where: str) -> None:
    for key in table:
        if key not in allowed:
            hint = did_you_mean(key, list(allowed))
            raise BenchInputError(
                f"unknown key {key!r}", where=f"{where}: {key}", fix=f"{hint}allowed here: {', '.join(sorted(allowed))}"
            )


def _typed(table: Mapping[str, Any], key: str, kind: type, where: str, *, default: Any) -> Any:
    value = table.get(key, default)
    if not isinstance(value, kind):
        raise BenchInputError(
            f"{key} must be a {kind.__name__}, got {value!r}", where=f"{where}: {key}", fix=f"e.g. {key} = {default!r}"
        )
    return value


def _parse_tasks(value: Any, where: str) -> tuple[str, ...]:
    tasks = [value] if isinstance(value, str) else value
    if not isinstance(tasks, list) or not tasks or not all(isinstance(task, str) for task in tasks):
        raise BenchInputError(
            f"task must be a task name or a list of them, got {value!r}",
            where=where,
            fix=f'e.g. task = "denoise" or task = ["denoise", "deblur"]; tasks: {", ".join(TASKS)}',
        )
    for task in tasks:
        if task not in TASKS:
            raise BenchInputError(
                f"unknown task {task!r}", where=where, fix=f"{did_you_mean(task, TASKS)}use one of {', '.join(TASKS)}"
            )
    if len(set(tasks)) != len(tasks):
        raise BenchInputError(f"tasks repeat: {tasks}", where=where, fix="list each task once")
    return tuple(tasks)


def _parse_seeds(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    ):
        raise BenchInputError(
            f"seeds must be a non-empty list of non-negative integers, got {value!r}",
            where=where,
            fix="e.g. seeds = [0, 1, 2]",
        )
    if len(set(value)) != len(value):
        raise BenchInputError(f"seeds repeat: {value}", where=where, fix="list each seed once")
    return tuple(value)


def _parse_requires(value: Any, where: str) -> tuple[str, ...]:
    from bench.config.plugins import check_required

    if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
        raise BenchInputError(
            f"requires must be a list of plugin names, got {value!r}",
            where=where,
            fix='e.g. requires = ["lossbench-wavelet"]',
        )
    check_required(value, where=where)
    return tuple(value)


def _parse_log_to(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise BenchInputError(
            f"log_to must be a list of trackers, got {value!r}",
            where=where,
            fix='e.g. log_to = ["tensorboard", "mlflow"]',
        )
    return check_trackers(value, where=where)


def _check_field(config_type: type, key: str, value: Any, where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(config_type)}
    if key not in fields:
        hint = did_you_mean(key, list(fields))
        raise BenchInputError(f"unknown key {key!r}", where=where, fix=f"{hint}allowed here: {', '.join(fields)}")
    default = fields[key].default
    if config_type is TrainConfig and key == "lr" and isinstance(value, list):  # several rates to choose from
        default = ()
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, tuple):
        numbers = "float" in str(fields[key].type)
        item_ok = (
            (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
            if numbers
            else (lambda v: isinstance(v, str))
        )
        ok = isinstance(value, list) and all(map(item_ok, value))
        value = tuple(float(v) for v in value) if ok and numbers else tuple(value) if ok else value
    else:  # str, or str | None
        ok = isinstance(value, str)
    if not ok:
        example = list(default) if isinstance(default, tuple) else default
        raise BenchInputError(
            f"expected a value like {example!r}, got {value!r}",
            where=where,
            fix=f"give {key} a {type(default).__name__ if default is not None else 'str'} value",
        )
    return value


def _table(table: Any, name: str, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise BenchInputError(f"{name} must be a table", where=where, fix=f"write it as [{name}] with keys below")
    return table


def _parse_section(name: str, table: Any, where: str) -> Any:
    config_type = SECTIONS[name]
    _table(table, name, f"{where}: {name}")
    values = {key: _check_field(config_type, key, value, f"{where}: {name}.{key}") for key, value in table.items()}
    return config_type(**values)


def _parse_profiles(table: Any, where: str) -> dict[str, dict[str, dict[str, Any]]]:
    if not isinstance(table, dict):
        raise BenchInputError(
            "profile must be a table of device types", where=f"{where}: profile", fix="use [profile.cpu]"
        )
    profiles = {}
    for device_type, overrides in table.items():
        key = f"{where}: profile.{device_type}"
        if device_type not in ("cpu", "cuda"):
            raise BenchInputError(
                f"unknown profile {device_type!r}", where=key, fix="profiles are [profile.cpu] and [profile.cuda]"
            )
        if not isinstance(overrides, dict):
            raise BenchInputError(
                "a profile must be a table", where=key, fix="e.g. [profile.cpu] with data.resolution = 128"
            )
        _reject_unknown(overrides, {*SECTIONS, "model", "seeds"}, key)
        for section, values in overrides.items():
            if section == "seeds":  # a profile may run another number of seeds, e.g. fewer on a CPU
                _parse_seeds(values, f"{key}.seeds")
                continue
            if not isinstance(values, dict):
                raise BenchInputError(
                    f"{section} must be a table of settings",
                    where=f"{key}.{section}",
                    fix=f"e.g. {section}.some_key = value",
                )
            if section == "model":
                continue  # the model's parameters are checked when the profile is applied (parse_suite)
            for field_name, value in values.items():
                _check_field(SECTIONS[section], field_name, value, f"{key}.{section}.{field_name}")
        profiles[device_type] = overrides
    return profiles


def _parse_entries(raw_entries: Any, path: Path) -> tuple[Entry, ...]:
    where = str(path)
    if not raw_entries:
        raise BenchInputError(
            "a suite needs at least one [[entry]]",
            where=f"{where}: entry",
            fix='add [[entry]] with name = "mse" and loss = "mse"',
        )
    if not isinstance(raw_entries, list):
        raise BenchInputError(
            "entries must be an array of tables", where=f"{where}: entry", fix="write each as [[entry]]"
        )
    entries, seen = [], set()
    for index, raw in enumerate(raw_entries):
        key = f"{where}: entry[{index}]"
        if not isinstance(raw, dict):
            raise BenchInputError("an entry must be a table", where=key, fix="write it as [[entry]]")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise BenchInputError("every entry needs a name", where=f"{key}.name", fix='add name = "my-loss"')
        check_entry_name(name, where=f"{key}.name")
        key = f"{where}: entry[{index}] ({name})"
        if name.strip().lower() in NA_LIKE_NAMES:
            raise BenchInputError(
                f"entry name {name!r} would read back from CSV as a missing value",
                where=f"{key}.name",
                fix="choose another name, e.g. 'nan-loss'",
            )
        if name in seen:
            raise BenchInputError(
                f"duplicate entry name {name!r}", where=f"{key}.name", fix="give each entry a unique name"
            )
        if name.startswith(BASELINE_PREFIX):
            raise BenchInputError(
                f"entry names starting with {BASELINE_PREFIX!r} are reserved for the baselines",
                where=f"{key}.name",
                fix=f"rename it, e.g. {name[len(BASELINE_PREFIX) :] or 'mine'!r}",
            )
        seen.add(name)
        entries.append(_parse_entry(name, raw, key, path.parent))
    check_distinct_stems([entry.name for entry in entries], where=f"{where}: entry")
    return tuple(entries)


def _parse_entry(name: str, raw: Mapping[str, Any], key: str, suite_dir: Path) -> Entry:
    overrides = {}
    for section in ENTRY_OVERRIDABLE:
        if section in raw:
            table = _table(raw[section], section, f"{key}.{section}")
            overrides[section] = (
                table
                if section == "model"
                else {  # a model's parameters: see parse_suite
                    k: _check_field(SECTIONS[section], k, v, f"{key}.{section}.{k}") for k, v in table.items()
                }
            )
    rest = {k: v for k, v in raw.items() if k not in ("name", *ENTRY_OVERRIDABLE)}
    if "terms" in rest:
        if "loss" in rest:
            raise BenchInputError(
                "an entry has either loss or terms, not both",
                where=f"{key}.terms",
                fix="put the single loss into terms, or drop terms",
            )
        if set(rest) != {"terms"}:
            extra = sorted(set(rest) - {"terms"})
            raise BenchInputError(
                f"unexpected keys {extra} beside terms", where=key, fix="loss parameters go inside each term's table"
            )
        raw_terms = rest["terms"]
        if not isinstance(raw_terms, list) or not raw_terms or not all(isinstance(t, dict) for t in raw_terms):
            raise BenchInputError(
                "terms must be a non-empty array of tables",
                where=f"{key}.terms",
                fix='e.g. terms = [{ loss = "mse", weight = 0.2 }]',
            )
        terms = [_parse_term(term, f"{key}.terms[{i}]", suite_dir) for i, term in enumerate(raw_terms)]
    elif "loss" in rest:
        terms = [_parse_term({"weight": 1.0, **rest}, key, suite_dir)]
    else:
        raise BenchInputError("entry has neither loss nor terms", where=key, fix='add loss = "mse" (or terms = [...])')
    return Entry(name=name, terms=tuple(_label_terms(terms)), overrides=overrides)


def _parse_term(raw: Mapping[str, Any], key: str, suite_dir: Path) -> Term:
    loss = raw.get("loss")
    if not isinstance(loss, str):
        raise BenchInputError(f"loss must be a loss name, got {loss!r}", where=f"{key}.loss", fix='e.g. loss = "mse"')
    weight = raw.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
        raise BenchInputError(
            f"weight must be a positive number, got {weight!r}",
            where=f"{key}.weight",
            fix="e.g. weight = 0.8 (drop a term rather than weighting it 0)",
        )
    params = {k: v for k, v in raw.items() if k not in ("loss", "weight")}
    params = resolve_params(loss, params, where=f"{key}")
    if "weights" in params:
        params["weights"] = resolve_weights_path(params["weights"], suite_dir)
    return Term(loss=loss, weight=float(weight), params=params, label=loss)


def _label_terms(terms: list[Term]) -> list[Term]:
    """Labels are loss names, numbered when a loss appears twice (``mse``, ``mse#2``)."""
    counts: dict[str, int] = {}
    labelled = []
    for term in terms:
        counts[term.loss] = counts.get(term.loss, 0) + 1
        label = term.loss if counts[term.loss] == 1 else f"{term.loss}#{counts[term.loss]}"
        labelled.append(dataclasses.replace(term, label=label))
    return labelled
