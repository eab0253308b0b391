"""Loss timing for a suite: each entry's loss, built at the timing resolution, through the timing engine."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Sequence

import pandas as pd
import torch

from bench.losses import build_suite_losses
from bench.losses.precision import loss_network_precision
from bench.data.degrade import input_scale
from bench.models.registry import ModelContext, build_model
from bench.config.suite import Suite
from bench.speed.timing import COLUMNS, time_entries


def time_suite(
    suite: Suite, device: torch.device, *, log: Callable[[str], None] = print, variants: Sequence[str] | None = None
) -> pd.DataFrame:
    """speed.csv rows: entry x variant x phase at ``suite.timing`` settings (profile already applied)."""
    timing = suite.timing
    variants = tuple(variants or timing.variants)
    log(
        f"timing {len(suite.entries)} losses at {timing.resolution}x{timing.resolution}, batch {timing.batch_size}, "
        f"variants {', '.join(variants)} on {device}"
    )
    losses, rows = {}, []
    precision = loss_network_precision(suite.train.loss_networks, device)  # as the trainings run them
    for name, loss in build_suite_losses(suite, timing.resolution, device, precision).items():
        if isinstance(loss, Exception):
            log(f"  {name}: not timed, its loss could not be built ({type(loss).__name__}: {loss})")
        else:
            losses[name] = loss
    with timing_threads(timing.threads):
        for name, loss in losses.items():
            try:
                rows += time_entries(
                    [(name, loss)],
                    batch_size=timing.batch_size,
                    resolution=timing.resolution,
                    device=device,
                    variants=variants,
                    log=lambda line: log(f"  {line}"),
                    warmup=timing.warmup,
                    min_repeats=timing.min_repeats,
                    min_time_s=timing.min_time_s,
                )
            except Exception as error:  # noqa: BLE001 - a loss that raises (a plugin's, say) is left out, not fatal
                log(f"  {name}: not timed ({type(error).__name__}: {error})")
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame.insert(1, "loss_weights", frame["entry"].map({name: loss.weights_used for name, loss in losses.items()}))
    frame.insert(2, "loss_config", frame["entry"].map({name: loss.loss_config for name, loss in losses.items()}))
    frame.insert(3, "loss_networks", precision)
    return frame


@contextlib.contextmanager
def timing_threads(threads: int):
    """CPU threads for a timed region (0: torch's default), restored afterwards."""
    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    try:
        yield
    finally:
        torch.set_num_threads(default)


MODEL_ENTRY = "__model__"  # speed.csv's name for the training step; underscores keep it apart from entries


class _TrainingStep(torch.nn.Module):
    """The model's fwd+bwd under an MSE loss, shaped like a loss so the timing engine can time it: the
    engine's forward is the model's forward plus the loss, its backward reaches every model parameter."""

    def __init__(self, model: torch.nn.Module, input_scale: int = 1) -> None:
        super().__init__()
        self.model = model
        self.input_scale = input_scale  # super-resolution: the model's input is this many times smaller

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        inputs = target[..., :: self.input_scale, :: self.input_scale]
        return torch.nn.functional.mse_loss(self.model(inputs), target)


def time_training_step(suite: Suite, device: torch.device, variants: Sequence[str]) -> pd.DataFrame:
    """speed.csv rows (entry ``MODEL_ENTRY``, phase "train_step") for the suite's model at its training size:
    images/s of the fwd+bwd step in each variant, so fp32 eager can be compared with the fast paths."""
    scale = input_scale(suite.task, suite.data)
    context = ModelContext(image_size=suite.data.resolution, channels=3, task=suite.task, scale_factor=scale)
    model = build_model(suite.model.name, suite.model.settings, context, seed=0).to(device).train()
    rows = time_entries(
        [(MODEL_ENTRY, _TrainingStep(model, scale))],
        batch_size=suite.train.batch_size,
        resolution=suite.data.resolution,
        device=device,
        variants=variants,
        warmup=suite.timing.warmup,
        min_repeats=suite.timing.min_repeats,
        min_time_s=suite.timing.min_time_s,
    )
    frame = pd.DataFrame([row for row in rows if row["phase"] == "total"]).assign(phase="train_step")
    frame.insert(1, "loss_weights", "none")
    frame.insert(2, "loss_config", "")
    return frame


def with_timing(suite: Suite, **changes) -> Suite:
    """``suite`` with timing settings changed (CLI --batch / --resolution)."""
    changes = {key: value for key, value in changes.items() if value is not None}
    return dataclasses.replace(suite, timing=dataclasses.replace(suite.timing, **changes)) if changes else suite


def format_speed(speed: pd.DataFrame) -> str:
    """speed.csv's rows as the table ``python -m bench speed`` prints: median ms per phase, images/s and peak
    memory per entry x variant, then one line per timed training step."""
    steps = speed[speed["phase"] == "train_step"]
    speed = speed[speed["phase"] != "train_step"]
    table = speed.pivot_table(index=["entry", "variant"], columns="phase", values="median_ms", sort=False)
    totals = speed[speed["phase"] == "total"].set_index(["entry", "variant"])
    table = table.rename(columns=lambda phase: f"{phase}_ms")
    table["images_per_s"] = totals["images_per_s"]
    table["peak_mem_mb"] = totals["peak_mem_mb"]
    first = speed.iloc[0]
    with pd.option_context("display.width", 200, "display.float_format", "{:.4g}".format):
        lines = [
            f"\nmedian ms at {first['batch_size']}x3x{first['resolution']}x{first['resolution']} on "
            f"{first['device_name']} ({first['threads']} threads); memory: {first['memory_method']}",
            table[["forward_ms", "backward_ms", "total_ms", "images_per_s", "peak_mem_mb"]].to_string(),
        ]
    lines += [
        f"training step ({step['variant']}, batch {step['batch_size']} at {step['resolution']}px): "
        f"{step['median_ms']:.4g} ms, {step['images_per_s']:.4g} images/s"
        for _, step in steps.iterrows()
    ]
    return "\n".join(lines)
