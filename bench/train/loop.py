"""Train one RunSpec: one entry's loss, one seed. Short enough to read in one sitting."""

from __future__ import annotations

import copy
import io
import time
import warnings
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from bench.data.degrade import degrade
from bench.data.images import EVAL_NOISE_SEED, ImageSet, PhotoPixels, crop_schedule, make_batch
from bench.losses import WeightedSum
from bench.evaluate.metrics import training_scores
from bench.config.plan import RunSpec
from bench.results import write_atomic
from bench.train.average import WeightAverage
from bench.train.progress import step_progress
from bench.train.schedules import build_scheduler


class Diverged(RuntimeError):
    """The loss (or the model's output) became NaN or infinite; ``step`` is where it was seen: the first
    logging interval, or the step whose loss refused a non-finite reconstruction."""

    def __init__(self, step: int, what: str = "loss") -> None:
        super().__init__(f"{what} became NaN/inf at or before step {step}")
        self.step = step


@dataclass
class TrainResult:
    model: nn.Module  # the trained model, or the moving average of its weights with train.ema
    history: list[dict]
    seconds: float
    skipped_steps: int  # steps dropped for a NaN/inf loss under on_nan = "skip"
    loss: nn.Module  # the loss as trained: a copy whose own parameters (if it has any) were learned
    resumed_from_step: int = 0  # the step of the checkpoint training continued from (0: it started afresh)


def model_inputs(spec: RunSpec, clean: torch.Tensor, noise_seed: int) -> torch.Tensor:
    return degrade(spec.task, clean, spec.data, noise_seed)


@torch.no_grad()
def reconstruct(model: nn.Module, spec: RunSpec, images: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    model.eval()
    inputs = model_inputs(spec, images, EVAL_NOISE_SEED)
    outputs = torch.cat([model(chunk) for chunk in inputs.split(batch_size)])
    model.train()
    return outputs


def train(
    spec: RunSpec,
    initial_model: nn.Module,
    loss_fn: WeightedSum,
    images: ImageSet,
    device: torch.device,
    show_progress: bool = True,
    checkpoint: Path | None = None,
    on_log: Callable[[dict], None] | None = None,
) -> TrainResult:
    """``checkpoint``: where to save model and optimizer state every ``train.checkpoint_every`` steps; if the
    file exists, training continues from it, exactly as if it had never stopped. ``on_log``: called with each
    history row as it is logged (live progress and trackers: bench.train.watch); it must not change the row."""
    memory_format = torch.channels_last if spec.train.channels_last else torch.contiguous_format
    model = copy.deepcopy(initial_model).to(device, memory_format=memory_format).train()
    # A loss with parameters of its own (Barron's adaptive loss: its shape and scale) learns them with the model,
    # from their initial values in every run; frozen loss networks have none that require grad.
    if any(parameter.requires_grad for parameter in loss_fn.parameters()):
        loss_fn = copy.deepcopy(loss_fn)
    learnable = [parameter for parameter in loss_fn.parameters() if parameter.requires_grad]
    # The fused kernel updates every parameter in one pass; the per-parameter loop is the fallback elsewhere.
    fused = device.type in ("cpu", "cuda")
    optimizer = torch.optim.Adam([*model.parameters(), *learnable], lr=spec.train.lr, fused=fused or None)
    scheduler = build_scheduler(optimizer, spec.train)
    # With train.ema, an exponential moving average of the weights (and buffers) is what gets evaluated.
    averaged = WeightAverage(model, spec.train.ema) if spec.train.ema else None
    evaluated = averaged.module if averaged is not None else model
    photos, eval_images = PhotoPixels.pack(images.train, spec.data.resolution, device), images.eval.to(device)
    side = spec.data.resolution
    schedule = crop_schedule(
        [tuple(photo.shape[-2:]) for photo in images.train],
        side,
        spec.train.batch_size,
        spec.train.steps,
        spec.seed,
        spec.data.flip,
        spec.data.rotate,
    )
    stateful = dict(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        learned_loss=loss_fn if learnable else None,
        averaged=averaged,
    )
    resumed = restore_checkpoint(checkpoint, device, **stateful)
    history, done_steps, skipped_steps = resumed.history, resumed.step, resumed.skipped_steps
    non_finite = torch.zeros((), dtype=torch.bool, device=device)  # checked at log steps only: no per-step host sync
    started, eval_seconds = time.perf_counter() - resumed.seconds, 0.0  # eval time is left out
    progress = step_progress(
        schedule, total=spec.train.steps, desc=f"{spec.entry.name} seed {spec.seed}", enabled=show_progress
    )
    for step, crops in enumerate(progress, start=1):
        if step <= done_steps:
            continue  # drawn but already trained on before the checkpoint: the crop order stays the seed's
        target = make_batch(photos, crops).contiguous(memory_format=memory_format)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.train.bf16):
            reconstruction = model(model_inputs(spec, target, noise_seed=spec.seed * 1_000_000 + step))
            try:
                loss, terms = loss_fn(reconstruction, target)
            except Exception:
                # A NaN gradient with a finite loss turns the weights NaN; a loss that checks its input (piq's
                # measures assert a range) then raises before the loss check below could say so.
                if not torch.isfinite(reconstruction).all():
                    raise Diverged(step, "the model's output (a NaN/inf gradient turned its weights NaN)") from None
                raise
        if spec.train.on_nan == "skip" and not torch.isfinite(loss).item():
            skipped_steps += 1
            scheduler.step()  # the rate follows the step count, so the schedule still ends at the last step
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        rate = optimizer.param_groups[0]["lr"]  # this step's, before the scheduler moves on
        optimizer.step()
        scheduler.step()
        if averaged is not None:
            averaged.update()
        non_finite |= ~torch.isfinite(loss.detach())

        is_last = step == spec.train.steps
        evaluate = spec.train.eval_every > 0 and (step % spec.train.eval_every == 0 or is_last)
        if step % spec.train.log_every == 0 or step == 1 or is_last or evaluate:
            if non_finite.item():
                raise Diverged(step)
            row = {
                "step": step,
                "seconds": time.perf_counter() - started - eval_seconds,
                "loss": loss.item(),
                "lr": rate,
            }
            row.update({f"term_{label}": value.item() for label, value in terms.items()})
            if evaluate:
                eval_started = time.perf_counter()
                row.update(training_scores(reconstruct(evaluated, spec, eval_images), eval_images))
                eval_seconds += time.perf_counter() - eval_started
            history.append(row)
            if on_log is not None:
                on_log(row)
            progress.set_postfix(loss=f"{row['loss']:.4g}")
        if checkpoint and spec.train.checkpoint_every and step % spec.train.checkpoint_every == 0 and not is_last:
            if non_finite.item():
                raise Diverged(step)  # a checkpoint of NaN weights would only diverge again on resume
            state = CheckpointState(step, history, skipped_steps, time.perf_counter() - started - eval_seconds)
            save_checkpoint(checkpoint, state, **stateful)
    progress.close()
    if checkpoint:
        checkpoint.unlink(missing_ok=True)
    return TrainResult(
        model=evaluated,
        history=history,
        seconds=time.perf_counter() - started - eval_seconds,
        skipped_steps=skipped_steps,
        loss=loss_fn,
        resumed_from_step=resumed.step,
    )


@dataclass
class CheckpointState:
    """Where a training stands: its last step, the history rows logged so far, the steps skipped for a NaN/inf
    loss and the training seconds spent (evaluation left out)."""

    step: int = 0
    history: list[dict] = field(default_factory=list)
    skipped_steps: int = 0
    seconds: float = 0.0


def save_checkpoint(
    path: Path,
    state: CheckpointState,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    learned_loss: nn.Module | None,
    averaged: WeightAverage | None,
) -> None:
    """Write (atomically) all that training needs to continue after ``state.step`` as if it had never
    stopped: the weights, the optimizer's moments, the schedule's place, the loss's learned parameters, the weight average."""
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": state.step,
            "loss": learned_loss.state_dict() if learned_loss is not None else None,
            "averaged": averaged.state_dict() if averaged is not None else None,
            "history": state.history,
            "skipped_steps": state.skipped_steps,
            "seconds": state.seconds,
        },
        buffer,
    )
    write_atomic(path, buffer.getvalue())


def restore_checkpoint(
    path: Path | None,
    device: torch.device,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    learned_loss: nn.Module | None,
    averaged: WeightAverage | None,
) -> CheckpointState:
    """Load what ``save_checkpoint`` wrote at ``path`` into the same objects and return where training stood;
    a fresh start (step 0) when there is no such file, or (with a one-line warning, the file set aside as
    ``*.damaged``) when it cannot be read: a file damaged on disk after a crash, truncated or corrupt."""
    if path is None or not path.is_file():
        return CheckpointState()
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(saved, dict) or not {"model", "optimizer"} <= set(saved):
            raise ValueError("not a LossBench checkpoint")
    except Exception as error:  # noqa: BLE001 - whatever a damaged file makes torch.load raise
        aside = path.with_name(path.name + ".damaged")
        path.replace(aside)
        warnings.warn(
            f"checkpoint {path} cannot be read ({type(error).__name__}: {str(error).splitlines()[0][:120]}); "
            f"set aside as {aside.name}, this training starts again from step 0",
            stacklevel=2,
        )
        return CheckpointState()
    model.load_state_dict(saved["model"])
    if learned_loss is not None:
        learned_loss.load_state_dict(saved["loss"])
    optimizer.load_state_dict(saved["optimizer"])
    if "scheduler" in saved:  # checkpoints written before schedules existed were all at a constant rate
        scheduler.load_state_dict(saved["scheduler"])
    if averaged is not None:
        averaged.load_state_dict(saved["averaged"])
    return CheckpointState(
        saved.get("step", 0), saved.get("history", []), saved.get("skipped_steps", 0), saved.get("seconds", 0.0)
    )
