"""Learning-rate schedules fit to the training budget: an optional linear warm-up, then a constant rate, or a
cosine or linear decay to ``min_lr`` by the last step (Li, Yumer and Ramanan, "Budgeted Training", ICLR 2020).

Built from ``torch.optim.lr_scheduler`` (``LinearLR`` for the warm-up, ``ConstantLR``, ``CosineAnnealingLR`` or
``LinearLR`` for what follows, chained by ``SequentialLR``), so their state goes into checkpoints as any
scheduler's does. In closed form, for optimizer step ``k`` (1-based) of ``steps``, ``W`` warm-up steps, peak
rate ``lr`` and ``D = steps - W`` steps after the warm-up, ``t = k - W - 1``:

- warm-up (``k <= W``): ``lr * k / W``;
- constant: ``lr``;
- cosine: ``min_lr + (lr - min_lr) * (1 + cos(pi * t / D)) / 2``;
- linear: ``lr + (min_lr - lr) * t / D``.

A decay reaches ``min_lr`` one step after the last, so the last step still moves the weights.
"""

from __future__ import annotations

import warnings

import torch
from torch.optim import lr_scheduler

from bench.config.suite import SCHEDULES, TrainConfig


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig) -> lr_scheduler.LRScheduler:
    """``train``'s schedule for ``optimizer``, whose rate is the peak rate; ``step()`` it after every step."""
    if train.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {train.schedule!r}")
    lr, warm = optimizer.param_groups[0]["lr"], train.warmup_steps
    decay_steps = train.steps - warm
    if train.schedule == "cosine":
        decay = lr_scheduler.CosineAnnealingLR(optimizer, T_max=decay_steps, eta_min=train.final_lr)
    elif train.schedule == "linear":
        end_factor = train.final_lr / lr
        decay = lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=end_factor, total_iters=decay_steps)
    else:
        decay = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if not warm:
        return decay
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=1 / warm, end_factor=1.0, total_iters=warm - 1)
    with warnings.catch_warnings():
        # SequentialLR starts the next scheduler with step(0), which torch flags as the deprecated epoch argument.
        warnings.simplefilter("ignore", UserWarning)
        return _QuietSequentialLR(optimizer, [ramp, decay], milestones=[warm])


class _QuietSequentialLR(lr_scheduler.SequentialLR):
    def step(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            super().step()
