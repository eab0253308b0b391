"""The exponential moving average of a model's weights that `train.ema` evaluates.

The arithmetic is torch.optim.swa_utils' EMA (``AveragedModel`` with ``get_ema_multi_avg_fn`` and
``use_buffers=True``): the first update copies the model, each later one is ``average += (1 - decay) *
(model - average)`` as one foreach lerp. The tensor pairs are listed once, not regrouped by device and dtype at
every step, and the update count stays a Python int, so an update never copies to or waits on the device.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model)
        self.decay = decay
        self.updates = 0
        averaged = itertools.chain(self.module.parameters(), self.module.buffers())
        current = itertools.chain(model.parameters(), model.buffers())
        pairs = [(mine.detach(), theirs.detach()) for mine, theirs in zip(averaged, current, strict=True)]
        self._floats = tuple(zip(*[pair for pair in pairs if pair[0].is_floating_point()])) or ((), ())
        # Integer buffers (BatchNorm's batch count) are averaged as AveragedModel's EMA does, rounded down.
        self._integers = [pair for pair in pairs if not pair[0].is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        averaged, current = self._floats
        if self.updates == 0:
            torch._foreach_copy_(averaged, current)
            for mine, theirs in self._integers:
                mine.copy_(theirs)
        else:
            torch._foreach_lerp_(averaged, current, 1 - self.decay)
            for mine, theirs in self._integers:
                mine.copy_(mine * self.decay + theirs * (1 - self.decay))
        self.updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]
