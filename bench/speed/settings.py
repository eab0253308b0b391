"""The speed verdict's thresholds and the gate's settings, with their defaults.

The gate, the baseline check and the command line's options all read them here. This module imports nothing
heavy (no torch, numpy or scipy), so the command line can build its parser before the process settings that
must come before torch's import are made.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_FACTOR = 1.25
ALPHA = 0.01  # the gate's level: a false alarm fails CI, so it asks for stronger evidence than a verdict


@dataclass(frozen=True)
class GateSettings:
    rounds: int = 15  # blocks per side and loss: Mann-Whitney's one-sided p can reach 1e-8 at 15 + 15
    target_ms: float = 40.0  # shortest block; see README "Loss speed" for how it was chosen
    processes: int = 2  # worker processes per side, taking rounds in turn (as asv's ``processes``)
    min_factor: float = MIN_FACTOR
    alpha: float = ALPHA
    seed: int = 0
