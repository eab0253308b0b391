"""Suite -> plan: one RunSpec per entry x seed, with the device profile and entry overrides applied."""

from __future__ import annotations

from dataclasses import dataclass

from bench.config.suite import DataConfig, Entry, ModelConfig, Suite, TrainConfig, apply_overrides


@dataclass(frozen=True)
class RunSpec:
    entry: Entry
    seed: int
    task: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    profile: str  # "cpu", "cuda" or "none": which [profile.*] table shaped these settings


def make_plan(suite: Suite, profile: str) -> list[RunSpec]:
    """``suite`` already has its device profile applied (see ``suite_for_device``); seeds are the outer loop
    so that a partial run still compares every entry on the first seed."""
    plan = []
    for seed in suite.seeds:
        for entry in suite.entries:
            configured = apply_overrides(suite, entry.overrides, where=f"{suite.path}: entry {entry.name}")
            plan.append(
                RunSpec(
                    entry=entry,
                    seed=seed,
                    task=suite.task,
                    data=configured.data,
                    model=configured.model,
                    train=configured.train,
                    profile=profile,
                )
            )
    return plan
