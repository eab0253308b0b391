"""Several trainings at once on one device (bench.train.pool): the same tables as one by one, a dead worker
fails only its training, and the automatic choice of how many."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.config.plan import make_plan
from bench.config.suite import load_suite, suite_for_device
from bench.train.jobs import Trainer
from bench.train.pool import MIN_PACKED_SECONDS, choose_packing

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "suites" / "smoke.toml"
TIMES = {"train_seconds", "seconds"}  # wall-clock columns: the only ones allowed to differ


def run_folder(out: Path, *options: str) -> Path:
    assert main(["run", str(SMOKE), "--out", str(out), "--no-progress", "--no-timing", "--seeds", "2", *options]) == 0
    (folder,) = (out / "smoke").iterdir()
    return folder


def without_times(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[column for column in table.columns if column in TIMES])


def test_packed_trainings_give_the_tables_of_one_by_one(tmp_path):
    """Two trainings at once, one thread each, against all of them in this process with one thread: every
    column of every table but the wall-clock times is identical, and so are the reconstructions."""
    packed = run_folder(tmp_path / "packed", "--concurrent", "2", "--threads", "1", "--no-store")
    alone = run_folder(tmp_path / "alone", "--concurrent", "1", "--threads", "1", "--no-store")
    env = json.loads((packed / "environment.json").read_text())
    assert (env["trainings_at_once"], env["threads_per_training"]) == (2, 1)
    assert "2 trainings at once, 1 thread(s) each" in (packed / "report.html").read_text()
    assert "trainings at once" not in (alone / "report.html").read_text()
    for table in ("quality", "history", "per_image", "summary"):
        pd.testing.assert_frame_equal(
            without_times(pd.read_csv(packed / f"{table}.csv")),
            without_times(pd.read_csv(alone / f"{table}.csv")),
            check_exact=True,
        )
    pictures = sorted(path.name for path in (alone / "reconstructions").iterdir())
    assert pictures and pictures == sorted(path.name for path in (packed / "reconstructions").iterdir())
    for name in pictures:
        assert (packed / "reconstructions" / name).read_bytes() == (alone / "reconstructions" / name).read_bytes()


CRASHING_PLUGIN = """
import multiprocessing
import os
import signal

from bench import register_loss


@register_loss("dies", "mse, but it kills a training worker, as the kernel's OOM killer would")
def _make(context):
    def loss(reconstruction, target):
        if multiprocessing.parent_process() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return (reconstruction - target).pow(2).mean()
    return loss
"""


def test_a_worker_that_dies_fails_only_its_training(tmp_path):
    plugin = tmp_path / "dies.py"
    plugin.write_text(CRASHING_PLUGIN)
    suite = tmp_path / "suite.toml"
    suite.write_text(
        SMOKE.read_text().replace('[[entry]]\nname = "bce"\nloss = "bce"', '[[entry]]\nname = "dies"\nloss = "dies"')
    )
    out = tmp_path / "results"
    assert (
        main(
            [
                "run",
                str(suite),
                "--out",
                str(out),
                "--no-progress",
                "--no-timing",
                "--concurrent",
                "2",
                "-p",
                str(plugin),
            ]
        )
        == 1
    )
    (folder,) = (out / "smoke").iterdir()
    quality = pd.read_csv(folder / "quality.csv").set_index("entry")
    assert quality.loc["dies", "status"] == "failed"
    assert "its training process exited with code -9" in quality.loc["dies", "error"]
    assert (quality.drop(index="dies")["status"] == "ok").all()
    assert set(quality.index) == {"mse", "l1", "dies", "mix", "baseline-mean-colour", "baseline-bicubic"}


@pytest.fixture(scope="module")
def smoke_trainer():
    suite = suite_for_device(load_suite(SMOKE), "cpu")
    return Trainer(suite, "cpu", show_progress=False), make_plan(suite, "cpu")


def test_packing_is_chosen_from_the_measured_work_and_the_cores(smoke_trainer):
    trainer, plan = smoke_trainer
    cores = torch.get_num_threads()
    cheap = {spec.entry.name: 0.0 for spec in plan}
    assert choose_packing(None, None, trainer, plan, cheap).trainings == 1  # not worth starting workers
    steps = plan[0].train.steps
    costly = {name: 2 * MIN_PACKED_SECONDS / steps for name in cheap}
    packing = choose_packing(None, None, trainer, plan, costly)
    assert packing.trainings == min(cores, len(plan)) and packing.threads == max(1, cores // packing.trainings)
    assert choose_packing(3, None, trainer, plan, {}).trainings == 3
    assert choose_packing(None, None, trainer, plan[:1], costly).trainings == 1  # one training: nothing to pack
    assert choose_packing(2, 5, trainer, plan, {}).threads == 5


def test_a_loss_registered_in_this_process_only_keeps_the_run_in_this_process(tmp_path, monkeypatch):
    import bench.train.pool
    from bench import register_loss
    from bench.config.registry import only_in_this_process
    from bench.losses.registry import get_loss_info, loss_names

    if "test_pool_local" not in loss_names():  # a loss a notebook would register: no plugin, not LossBench's own
        register_loss("test_pool_local", "test only: mse")(lambda context: torch.nn.MSELoss())
    assert only_in_this_process(get_loss_info("test_pool_local").source)
    assert not only_in_this_process(get_loss_info("mse").source)
    suite = tmp_path / "local.toml"
    suite.write_text(SMOKE.read_text().replace('loss = "mse"', 'loss = "test_pool_local"', 1))
    out = tmp_path / "out"
    monkeypatch.setattr(bench.train.pool, "MIN_PACKED_SECONDS", 0.0)  # packing would pay off otherwise
    assert main(["run", str(suite), "--out", str(out), "--no-progress", "--no-timing", "--steps", "3"]) == 0
    (folder,) = (out / "smoke").iterdir()
    env = json.loads((folder / "environment.json").read_text())
    assert env["trainings_at_once"] == 1
    assert main(["run", str(suite), "--out", str(out), "--no-progress", "--no-timing", "--concurrent", "2"]) == 2
