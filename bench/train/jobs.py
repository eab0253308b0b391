"""One training job (a RunSpec) from initial weights to plain result records.

The same ``Trainer`` runs in the driver process or inside a Ray worker (bench.train.distributed); it only returns
records, and the driver alone writes the run folder.
"""

from __future__ import annotations

import copy
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.data.baselines import Baseline
from bench.data.images import EVAL_NOISE_SEED, ImageSet, load_images
from bench.errors import BenchInputError
from bench.losses import LOSS_NETWORK_SEED, WeightedSum, build_suite_losses
from bench.losses.precision import loss_network_precision
from bench.evaluate.metrics import QualityMetrics
from bench.evaluate.design import trained_below_design
from bench.data.degrade import input_scale
from bench.models.registry import ModelContext, build_model, check_output
from bench.config.names import entry_file
from bench.config.plan import RunSpec
from bench.config.suite import Suite, resolve_suite_path
from bench.train.loop import Diverged, model_inputs, reconstruct, train
from bench.evaluate.verdicts import trained_on


@dataclass
class JobResult:
    row: dict  # one quality.csv row
    history: list[dict]  # history.csv rows
    reconstructions: torch.Tensor | None  # held-out reconstructions on the CPU; None if the entry failed
    per_image: list[dict] = field(default_factory=list)  # per_image.csv rows: every metric of every eval crop
    traceback: str = ""  # the full traceback of the exception that failed the entry, if one did
    resumed_from_step: int = 0  # the step of the mid-entry checkpoint this training continued from (0: none)
    png: bytes | None = None  # the reconstructions as the run folder's PNG, for a training taken from the store
    reused_from: str = ""  # "KEY from RUN": the stored training this result was copied from ("": trained now)


def data_columns(spec: RunSpec, images: ImageSet) -> dict:
    """What a result row records of the photographs: their sources, counts and the hash of the exact list."""
    return {
        "data_source": spec.data.source,
        "eval_source": spec.data.eval_source or spec.data.source,
        "images_sha256": images.images_sha256,
        "train_photos": len(images.train),
        "eval_photos": len(images.eval_photos),
        "eval_crops": len(images.eval),
    }


def per_image_rows(entry: str, seed: int, crop_names, values: dict[str, torch.Tensor]) -> list[dict]:
    return [
        {
            "entry": entry,
            "seed": seed,
            "crop": index,
            "crop_name": name,
            **{metric: float(column[index]) for metric, column in values.items()},
        }
        for index, name in enumerate(crop_names)
    ]


def failed(error: str, step: int | None) -> dict:
    """The outcome columns of a failed training, in the order of a finished one's, so every quality.csv has
    its columns in one order whichever entries failed."""
    return {
        "status": "failed",
        "error": error,
        "failed_step": step,
        "train_seconds": None,
        "loss_learned": "",
        "skipped_steps": None,
    }


def warm_up(loss_fn: WeightedSum, spec: RunSpec, channels: int, device: torch.device) -> None:
    """One untimed fwd+bwd of the loss on a training-sized batch of random images, before the entry's clock
    starts: set-up that a loss network's first call does once in a process (kernel selection, cuDNN autotuning,
    lazily built buffers) is then billed to no entry, where it would land on the first entry using it. The
    gradient goes to the images alone, so a loss's own learnable parameters are untouched."""
    generator = torch.Generator().manual_seed(spec.seed)
    shape = (spec.train.batch_size, channels, spec.data.resolution, spec.data.resolution)
    memory_format = torch.channels_last if spec.train.channels_last else torch.contiguous_format
    target, reconstruction = (
        torch.rand(shape, generator=generator).to(device, memory_format=memory_format) for _ in range(2)
    )
    reconstruction.requires_grad_()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.train.bf16):
        loss, _ = loss_fn(reconstruction, target)
    torch.autograd.grad(loss, reconstruction)


@torch.no_grad()
def held_out_loss(loss_fn, reconstructions: torch.Tensor, targets: torch.Tensor, batch_size: int = 8) -> float:
    """The entry's own loss on the held-out crops, the mean over batches as in training (what
    bench.train.rates compares across learning rates)."""
    values = [
        float(loss_fn(reconstructions[i : i + batch_size], targets[i : i + batch_size])[0])
        * len(targets[i : i + batch_size])
        for i in range(0, len(targets), batch_size)
    ]
    return sum(values) / len(targets)


class Trainer:
    """Trains RunSpecs of one suite on one device; builds loss networks, images, metrics and each seed's
    initial model once and reuses them for every job it is given."""

    def __init__(self, suite: Suite, device: str, show_progress: bool = True, log=print) -> None:
        self.suite = suite
        self.device = torch.device(device)
        self.show_progress = show_progress
        metrics = suite.metrics
        self.metrics = QualityMetrics(
            metrics.lpips_net,
            metrics.lpips_weights,
            self.device,
            seed=LOSS_NETWORK_SEED,
            compute=metrics.compute,
            dists_weights=metrics.dists_weights,
            log=log,
        )
        self._losses: dict[tuple[int, str], dict[str, WeightedSum]] = {}
        self._images: dict = {}
        self._initial_models: dict[tuple, torch.nn.Module] = {}

    def losses(self, resolution: int, loss_networks: str) -> dict[str, WeightedSum]:
        """Every entry's loss for ``resolution``, with ``train.loss_networks`` resolved on this device."""
        precision = loss_network_precision(loss_networks, self.device)
        if (resolution, precision) not in self._losses:
            self._losses[resolution, precision] = build_suite_losses(self.suite, resolution, self.device, precision)
        return self._losses[resolution, precision]

    def loss(self, spec: RunSpec) -> WeightedSum | Exception:
        return self.losses(spec.data.resolution, spec.train.loss_networks)[spec.entry.name]

    def images(self, spec: RunSpec) -> ImageSet:
        if spec.data not in self._images:
            path = lambda value: resolve_suite_path(self.suite, value)
            self._images[spec.data] = load_images(
                spec.data,
                path(spec.data.path),
                eval_folder=path(spec.data.eval_path),
                cache=path(spec.data.cache),
                progress=self.show_progress,
            )
        return self._images[spec.data]

    def initial_model(self, spec: RunSpec) -> torch.nn.Module:
        """The seed's initial model, built once and then copied by every entry of the seed. A model whose output
        cannot be trained on (see ``check_output``) is an input error."""
        key = (spec.seed, spec.task, spec.data.resolution, spec.model)
        if key not in self._initial_models:
            eval_images = self.images(spec).eval
            context = ModelContext(
                image_size=spec.data.resolution,
                channels=eval_images.shape[1],
                task=spec.task,
                scale_factor=input_scale(spec.task, spec.data),
            )
            model = build_model(spec.model.name, spec.model.settings, context, spec.seed)
            # One throwaway fwd+bwd on a copy: one-off kernel and allocator set-up is not billed to an entry.
            scratch = copy.deepcopy(model).to(self.device).train()
            targets = eval_images[:2].to(self.device)
            inputs = model_inputs(spec, targets, EVAL_NOISE_SEED)
            output = scratch(inputs)
            check_output(spec.model.name, inputs, output, targets)
            output.mean().backward()
            self._initial_models[key] = model
        return self._initial_models[key]

    def check_models(self, plan: list[RunSpec]) -> None:
        """Builds every initial model of ``plan`` before any training, so that a model LossBench cannot train
        stops the run (``BenchInputError``) before its folder exists. A model that raises anything else is left
        to fail its own entries when they run."""
        for spec in plan:
            try:
                self.initial_model(spec)
            except BenchInputError:
                raise
            except Exception:  # noqa: BLE001 - foreign code may raise anything; run() records it per entry
                pass

    def baseline(self, baseline: Baseline, spec: RunSpec) -> JobResult:
        """A baseline scored like an entry, on ``spec``'s evaluation crops, as a row for ``spec``'s seed."""
        images = self.images(spec)
        eval_images = images.eval.to(self.device)
        reconstructions = baseline.reconstruct(eval_images)
        row = {
            "entry": baseline.name,
            "seed": spec.seed,
            "kind": "baseline",
            "formula": baseline.formula,
            "trained_on": "",
            "task": spec.task,
            "profile": spec.profile,
            "resolution": spec.data.resolution,
            "scale": spec.data.scale,
            "steps": 0,
            "loss_weights": "none",
            "loss_config": "",
            **data_columns(spec, images),
            "status": "ok",
            "error": "",
            "failed_step": None,
            "train_seconds": 0.0,
            **self.metrics(reconstructions, eval_images),
        }
        values, _ = self.metrics.per_image(reconstructions, eval_images)
        return JobResult(
            row, [], reconstructions.cpu(), per_image_rows(baseline.name, spec.seed, images.eval_names, values)
        )

    def _failed(self, row: dict, error: Exception) -> JobResult:
        """``row`` failed by ``error``: its type and first line in ``error``, its traceback (not re-raised here, so
        a factory's error stored once reads the same for every seed) for the run folder."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return JobResult(
            {**row, **failed(reason, None)}, [], None, traceback="".join(traceback.format_exception(error))
        )

    def row(self, spec: RunSpec) -> dict:
        """The quality.csv columns a training of ``spec`` records whatever its outcome."""
        images = self.images(spec)
        loss_fn = self.loss(spec)
        return {
            "entry": spec.entry.name,
            "seed": spec.seed,
            "kind": "trained",
            "formula": spec.entry.formula,
            "trained_on": trained_on(spec.entry),
            "task": spec.task,
            "profile": spec.profile,
            "trained_below_design": trained_below_design(spec.entry, spec.data.resolution),
            "resolution": spec.data.resolution,
            "scale": spec.data.scale,
            "model": spec.model.name,
            "model_config": spec.model.description,
            "steps": spec.train.steps,
            "batch_size": spec.train.batch_size,
            "lr": spec.train.lr,
            "schedule": spec.train.schedule,
            "warmup_steps": spec.train.warmup_steps,
            "final_lr": spec.train.final_lr if spec.train.schedule != "constant" else spec.train.lr,
            "ema": spec.train.ema,
            "on_nan": spec.train.on_nan,
            "bf16": spec.train.bf16,
            "channels_last": spec.train.channels_last,
            "loss_networks": loss_network_precision(spec.train.loss_networks, self.device),
            "deterministic": torch.are_deterministic_algorithms_enabled(),  # --deterministic, in this process
            "loss_weights": getattr(loss_fn, "weights_used", "none"),
            "loss_config": getattr(loss_fn, "loss_config", ""),
            **data_columns(spec, images),
        }

    def lost(self, spec: RunSpec, reason: str) -> JobResult:
        """``spec`` failed outside the loss and model code: its training process died (killed for memory, or a
        crash in native code) with ``reason``."""
        return JobResult({**self.row(spec), **failed(reason, None)}, [], None)

    def run(self, spec: RunSpec, checkpoints: Path | None = None, on_log=None) -> JobResult:
        """``checkpoints``: a folder for mid-entry checkpoints (single-process runs; see train.checkpoint_every).
        ``on_log``: called with each history row as it is logged (bench.train.watch), in place of the training's
        own progress bar.

        Whatever the entry's loss (or its factory) raises fails this entry alone, with the message in ``error``
        and the traceback in the result; a file that cannot be written (BenchInputError), Ctrl-C and
        SystemExit stop the run."""
        images = self.images(spec)
        loss_fn = self.loss(spec)
        row = self.row(spec)
        if isinstance(loss_fn, Exception):  # its factory raised (bench.losses.build_suite_losses), for every seed
            return self._failed(row, loss_fn)
        try:
            checkpoint = checkpoints / entry_file(spec.entry.name, spec.seed, ".pt") if checkpoints else None
            warm_up(loss_fn, spec, images.eval.shape[1], self.device)
            bar = self.show_progress and on_log is None
            result = train(spec, self.initial_model(spec), loss_fn, images, self.device, bar, checkpoint, on_log)
        except Diverged as error:
            return JobResult({**row, **failed(str(error), error.step)}, [], None)
        except BenchInputError:
            raise
        except Exception as error:  # out of memory, kernel errors, bugs in a loss or a plugin: this entry only
            return self._failed(row, error)
        eval_images = images.eval.to(self.device)
        reconstructions = reconstruct(result.model, spec, eval_images)
        row.update(
            status="ok",
            error="",
            failed_step=None,
            train_seconds=result.seconds,
            loss_learned=result.loss.learned,
            skipped_steps=result.skipped_steps,
            eval_loss=held_out_loss(result.loss, reconstructions, eval_images),
            **self.metrics(reconstructions, eval_images),
        )
        history = [{"entry": spec.entry.name, "seed": spec.seed, **h} for h in result.history]
        values, _ = self.metrics.per_image(reconstructions, eval_images)
        return JobResult(
            row,
            history,
            reconstructions.cpu(),
            per_image_rows(spec.entry.name, spec.seed, images.eval_names, values),
            resumed_from_step=result.resumed_from_step,
        )
