"""A suite of several tasks: one whole run per task under one parent folder, the parent's tables holding every
task's rows, a report with one verdict and one table per task, and --resume going on from the unfinished task."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil

import pandas as pd
import pytest

from bench.cli import main
from bench.config.suite import load_suite, task_suites
from bench.errors import BenchInputError
from bench.speed.suite import MODEL_ENTRY

TASKS = ["denoise", "jpeg"]


def suite(small_suite, tasks=TASKS, **changes) -> str:
    """The small suite under the tasks ``tasks``, with entries mse and l1, for 10 steps, and ``changes``."""
    return small_suite(
        ["mse", "l1"], name="two_tasks", task=tasks, data={"jpeg_quality": 15}, train={"steps": 10}, **changes
    )


def run(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["run", *args, "--no-progress", "--no-timing"]) == 0
    return out.getvalue()


def test_each_task_is_a_whole_run_and_the_parent_holds_a_table_and_a_verdict_per_task(tmp_path, small_suite):
    (tmp_path / "suite.toml").write_text(suite(small_suite))
    run(str(tmp_path / "suite.toml"), "--out", str(tmp_path))
    (parent,) = (tmp_path / "two_tasks").iterdir()
    assert sorted(p.name for p in parent.iterdir() if p.is_dir()) == ["denoise", "jpeg"]
    for task, baseline in (("denoise", "baseline-noisy-input"), ("jpeg", "baseline-jpeg-input")):
        quality = pd.read_csv(parent / task / "quality.csv")
        assert set(quality["task"]) == {task}
        assert set(quality["entry"]) == {"mse", "l1", baseline, "baseline-mean-colour"}
        assert (parent / task / "report.html").is_file()
    quality, summary = pd.read_csv(parent / "quality.csv"), pd.read_csv(parent / "summary.csv")
    assert list(summary.columns[:2]) == ["task", "entry"]
    for table in (quality, summary):
        assert table.groupby("task")["entry"].apply(set).to_dict() == {
            "denoise": {"mse", "l1", "baseline-noisy-input", "baseline-mean-colour"},
            "jpeg": {"mse", "l1", "baseline-jpeg-input", "baseline-mean-colour"},
        }
    page = (parent / "report.html").read_text()
    sections = re.findall(r'<section id="task-(\w+)">(.*?)</section>', page, flags=re.S)
    assert [task for task, _ in sections] == ["denoise", "jpeg"]
    for task, body in sections:
        assert f'href="{task}/report.html"' in body
        assert body.count('class="verdict"') == 1 and body.count("<table") == 1
        assert f"above {'noisy' if task == 'denoise' else 'jpeg'}-input" in body  # its own trivial baseline


def test_resume_keeps_the_finished_tasks_and_runs_the_others(tmp_path, small_suite):
    (tmp_path / "suite.toml").write_text(suite(small_suite))
    run(str(tmp_path / "suite.toml"), "--out", str(tmp_path))
    (parent,) = (tmp_path / "two_tasks").iterdir()
    finished = (parent / "denoise" / "quality.csv").read_bytes()
    shutil.rmtree(parent / "jpeg")  # as if stopped before the second task began
    (parent / "quality.csv").unlink()
    output = run(str(tmp_path / "suite.toml"), "--out", str(tmp_path), "--resume", str(parent))
    assert "running 0 of 2 trainings" in output and "running 2 of 2 trainings" in output
    assert (parent / "denoise" / "quality.csv").read_bytes() == finished
    assert set(pd.read_csv(parent / "quality.csv")["task"]) == {"denoise", "jpeg"}
    assert json.loads((parent / "environment.json").read_text())["tasks"] == ["denoise", "jpeg"]


def test_each_task_gets_its_own_default_model_and_a_bad_task_list_is_one_clear_error(tmp_path, small_suite):
    (tmp_path / "suite.toml").write_text(suite(small_suite, ["autoencode", "jpeg"]))
    assert [(s.task, s.model.name) for s in task_suites(load_suite(tmp_path / "suite.toml"))] == [
        ("autoencode", "autoencoder"),
        ("jpeg", "denoiser"),
    ]
    for tasks, message in (
        (["denoise", "denoise"], "tasks repeat"),
        (["denoise", "deblurr"], "unknown task"),
        ([], "task must be"),
    ):
        (tmp_path / "bad.toml").write_text(suite(small_suite, tasks))
        with pytest.raises(BenchInputError, match=f"bad.toml: task.*{message}|{message}"):
            load_suite(tmp_path / "bad.toml")


def test_command_line_overrides_hold_for_every_task(tmp_path, small_suite):
    (tmp_path / "suite.toml").write_text(suite(small_suite))
    run(str(tmp_path / "suite.toml"), "--out", str(tmp_path), "--only", "l1", "--steps", "3", "--seeds", "2")
    (parent,) = (tmp_path / "two_tasks").iterdir()
    for task in ("denoise", "jpeg"):
        trained = pd.read_csv(parent / task / "quality.csv").query("kind == 'trained'")
        assert sorted(zip(trained["entry"], trained["seed"], trained["steps"])) == [("l1", 0, 3), ("l1", 1, 3)]


def test_the_losses_are_timed_once_and_each_task_times_its_own_model(tmp_path, small_suite):
    timing = {"resolution": 32, "batch_size": 1, "min_repeats": 2, "min_time_s": 0.0}
    (tmp_path / "suite.toml").write_text(suite(small_suite, ["denoise", "super_resolution"], timing=timing))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["run", str(tmp_path / "suite.toml"), "--out", str(tmp_path), "--no-progress"]) == 0
    assert out.getvalue().count("timing 2 losses") == 1
    (parent,) = (tmp_path / "two_tasks").iterdir()
    first, second = (pd.read_csv(parent / task / "speed.csv") for task in ("denoise", "super_resolution"))
    losses = lambda table: table[table["entry"].isin(["mse", "l1"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(losses(first), losses(second))  # the same measurements, not new ones
    model_ms = [table.loc[table["entry"] == MODEL_ENTRY, "median_ms"].item() for table in (first, second)]
    assert model_ms[0] != model_ms[1]  # the denoiser's step, then the upsampler's, each timed
