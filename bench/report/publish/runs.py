"""The run folders a site is published from: where they are, what setting each ran, and on which machine.

Runs are ranked together only when every field of their ``Setting`` is equal: the same suite, task, model,
training crop side, steps, learning-rate schedule, device profile and device kind (cpu, cuda). Runs of one setting
on different machines share a leaderboard, each row labelled by its machine.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import pandas as pd

from bench.errors import BenchInputError
from bench.report import Run, load_run
from bench.results import task_folders

SCHEDULE_DEFAULT = "constant"  # runs from before learning-rate schedules have no schedule column


@dataclass(frozen=True, order=True)
class Setting:
    suite: str
    task: str
    model: str
    resolution: int
    steps: int
    schedule: str
    profile: str
    device_kind: str

    @property
    def slug(self) -> str:
        """A file name for the leaderboard: readable, plus a hash of every field (two settings never share it)."""
        digest = hashlib.sha256(repr(astuple(self)).encode("utf-8")).hexdigest()[:8]
        return slugify(f"{self.suite}-{self.task}-{self.resolution}px-{self.steps}steps-{self.device_kind}-{digest}")

    @property
    def title(self) -> str:
        return f"{self.suite}, {self.task}, {self.resolution} px, {self.steps} steps, {self.device_kind}"

    def items(self) -> list[tuple[str, str]]:
        return [(field.name.replace("_", " "), str(getattr(self, field.name))) for field in fields(self)]


@dataclass
class PublishedRun:
    run: Run
    id: str  # unique file-name-safe name, from the folder's path under its input
    path: str  # the folder as given on the command line (its input PATH, then the path below it)
    root: Path  # the input PATH it was found under
    prefix: str  # that input's name on the site, unique among the inputs
    setting: Setting
    machine: str
    commit: str
    label: str = ""  # machine and commit, unique among the published runs (set by find_runs)

    @property
    def env(self) -> dict:
        return self.run.env


def slugify(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "run"


def find_runs(paths: list[Path]) -> list[PublishedRun]:
    """Every run folder at or below ``paths``, in path order. A run of several tasks counts as one run per task;
    a run folder's own subfolders (a learning-rate search, reconstructions) are not searched."""
    found: list[PublishedRun] = []
    roots: dict[str, int] = {}
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise BenchInputError(
                "not a folder", where=str(path), fix="give run folders, or folders holding run folders"
            )
        name = slugify(path.resolve().name)
        roots[name] = roots.get(name, 0) + 1
        prefix = name if roots[name] == 1 else f"{name}-{roots[name]}"
        for folder in _run_folders(path):
            relative = folder.relative_to(path).as_posix()
            run_id = slugify(prefix if relative == "." else f"{prefix}-{relative}")
            published = _published(load_run(folder), run_id, (path / relative).as_posix(), path, prefix)
            found.append(published)
    if not found:
        raise BenchInputError(
            "no run folders found (a run folder holds quality.csv)",
            where=", ".join(str(p) for p in paths),
            fix="give run folders, results/<suite>/<timestamp>/, or folders holding them, e.g. results/published",
        )
    ids = [run.id for run in found]
    if len(set(ids)) != len(ids):
        raise BenchInputError("a run folder was given twice", where=", ".join(sorted(ids)), fix="give each once")
    labels = [f"{run.machine} \u00b7 {run.commit}" for run in found]
    for run, text in zip(found, labels):
        run.label = text if labels.count(text) == 1 else f"{text} \u00b7 {run.id}"
    return found


def _run_folders(root: Path) -> list[Path]:
    folders = []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        folder = Path(folder)
        tasks = task_folders(folder) if "environment.json" in files else {}
        if tasks:
            folders += [task for task in tasks.values() if (task / "quality.csv").is_file()]
            subfolders.clear()
        elif "quality.csv" in files:
            folders.append(folder)
            subfolders.clear()
    return folders


def _published(run: Run, run_id: str, path: str, root: Path, prefix: str) -> PublishedRun:
    env = run.env
    quality = run.quality
    trained = quality[quality["kind"] != "baseline"] if "kind" in quality else quality

    def first(column: str):
        values = trained[column].dropna() if column in trained else pd.Series(dtype=object)
        return values.iloc[0] if len(values) else None

    steps = trained["steps"].max() if "steps" in trained else None
    device = str(env.get("device_type") or env.get("device") or "unknown").split(":")[0]
    setting = Setting(
        suite=str(env.get("suite") or run.folder.name),
        task=str(env.get("task") or first("task") or "autoencode"),
        model=_model(env, first),
        resolution=int(first("resolution") or env.get("train_resolution") or 0),
        steps=int(steps) if steps is not None and pd.notna(steps) else 0,
        schedule=str(first("schedule") or SCHEDULE_DEFAULT),
        profile=str(env.get("profile") or first("profile") or "none"),
        device_kind=device,
    )
    machine = str(env.get("device_name") or env.get("device") or "unknown machine")
    if device == "cpu" and env.get("cpu_threads"):
        machine += f", {env['cpu_threads']} threads"
    commit = str(env.get("git_commit") or "unknown commit")
    return PublishedRun(run, run_id, path, root, prefix, setting, machine, commit)


def _model(env: dict, first) -> str:
    """The model as runs record it now, ``name(key=value, ...)``; older runs recorded the autoencoder's fields."""
    if first("model_config"):
        return str(first("model_config"))
    legacy = {key: first(key) for key in ("latent_dim", "bottleneck", "width")}
    if all(value is None for value in legacy.values()) and isinstance(env.get("model"), dict):
        legacy = {key: env["model"].get(key) for key in legacy}
    if all(value is None for value in legacy.values()):
        return "not recorded"
    shown = {
        key: int(value) if isinstance(value, float) and value.is_integer() else value for key, value in legacy.items()
    }
    return "autoencoder(" + ", ".join(f"{key}={value!r}" for key, value in shown.items()) + ")"
