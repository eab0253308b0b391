"""LossBench: which reconstruction loss should an image autoencoder use, and what does it cost?

The public Python API is what ``__all__`` lists (the command line is a thin layer over it); every other
module and name is internal and may change. Names load on first use, so ``import bench`` stays light (the
CLI must set OpenMP's wait policy before torch loads)::

    import bench

    result = bench.run("suites/smoke.toml", steps=20)        # a run folder and its tables
    result.summary[["entry", "psnr", "ssim"]]
    suite = bench.build_suite(["mse", "l1", "ssim"], data={"resolution": 32}, train={"steps": 50})
    bench.time_losses(["mse", "ssim"], resolution=128)     # speed.csv's rows, no training

Add a loss with ``@bench.register_loss`` (README "Benchmark your own loss"), a model with
``@bench.register_model`` (README "Your own model").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "load_suite": "bench.api",
    "build_suite": "bench.api",
    "run": "bench.api",
    "open_run": "bench.api",
    "time_losses": "bench.api",
    "run_speed": "bench.api",
    "SpeedResult": "bench.api",
    "check_speed": "bench.api",
    "GateResult": "bench.api",
    "recover": "bench.api",
    "RecoveryResult": "bench.api",
    "with_overrides": "bench.api",
    "RunResult": "bench.api",
    "Suite": "bench.config.suite",
    "register_loss": "bench.losses.registry",
    "LossContext": "bench.losses.registry",
    "loss_names": "bench.losses.registry",
    "Measure": "bench.losses.measures",
    "DesignSize": "bench.losses.measures",
    "register_model": "bench.models.registry",
    "ModelContext": "bench.models.registry",
    "model_names": "bench.models.registry",
    "load_plugins": "bench.config.plugins",
    "BenchInputError": "bench.errors",
}
__all__ = sorted(_PUBLIC) + ["__version__"]

if TYPE_CHECKING:
    from bench.api import (
        RecoveryResult,
        RunResult,
        SpeedResult,
        GateResult,
        build_suite,
        load_suite,
        open_run,
        recover,
        run,
        run_speed,
        check_speed,
        time_losses,
        with_overrides,
    )
    from bench.errors import BenchInputError
    from bench.losses.measures import DesignSize, Measure
    from bench.losses.registry import LossContext, loss_names, register_loss
    from bench.models.registry import ModelContext, model_names, register_model
    from bench.config.plugins import load_plugins
    from bench.config.suite import Suite


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
