"""A whole smoke suite through the CLI: the run folder, its tables and their values."""

from __future__ import annotations

import contextlib
import io
import json
import re
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cli import main

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "suites" / "smoke.toml"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results")
    assert main(["run", str(SMOKE), "--out", str(out), "--no-progress"]) == 0
    (folder,) = (out / "smoke").iterdir()
    return folder


def test_run_folder_has_every_file(smoke_run):
    for name in ("quality.csv", "history.csv", "speed.csv", "summary.csv", "environment.json", "suite.toml"):
        assert (smoke_run / name).is_file(), name
    assert (smoke_run / "suite.toml").read_text() == SMOKE.read_text()
    assert not list(smoke_run.glob(".*"))  # no temp files left behind


def test_environment_records_device_profile_and_suite_hash(smoke_run):
    import hashlib

    env = json.loads((smoke_run / "environment.json").read_text())
    assert env["suite_sha256"] == hashlib.sha256(SMOKE.read_bytes()).hexdigest()
    assert env["device_type"] == "cpu" and env["train_resolution"] == 32
    for key in ("torch", "device_name", "git_commit", "command", "profile", "cpu_threads"):
        assert env[key] not in (None, ""), key


def test_quality_table_is_sane(smoke_run):
    quality = pd.read_csv(smoke_run / "quality.csv")
    assert sorted(quality["entry"]) == ["baseline-bicubic", "baseline-mean-colour", "bce", "l1", "mix", "mse"]
    assert (quality["status"] == "ok").all()
    assert (quality["resolution"] == 32).all() and (quality.loc[quality["kind"] == "trained", "steps"] == 12).all()
    for metric in ("psnr", "ssim", "ms_ssim", "lpips", "l1", "mse"):
        assert quality[metric].map(math.isfinite).all(), metric
    assert quality["psnr"].between(5, 60).all()
    assert quality["ssim"].between(-1, 1).all() and quality["lpips"].ge(0).all()
    assert quality["loss_weights"].notna().all()


def test_history_shows_loss_decreasing(smoke_run):
    history = pd.read_csv(smoke_run / "history.csv")
    for entry, rows in history.groupby("entry"):
        rows = rows.sort_values("step")
        assert rows["step"].iloc[-1] == 12
        assert rows["loss"].iloc[-1] < rows["loss"].iloc[0], entry
    mix = history[history["entry"] == "mix"]
    assert {"term_l1", "term_mse"} <= set(mix.columns)
    assert (mix["loss"] - (0.8 * mix["term_l1"] + 0.2 * mix["term_mse"])).abs().max() < 1e-5
    assert history["eval_psnr"].notna().any()


def test_summary_has_one_row_per_entry_with_ranks(smoke_run):
    summary = pd.read_csv(smoke_run / "summary.csv")
    assert sorted(summary["entry"]) == ["baseline-bicubic", "baseline-mean-colour", "bce", "l1", "mix", "mse"]
    ranked = summary[summary["rank_psnr"].notna()]  # the entries that learned; never the baselines
    assert set(ranked["entry"]) <= {"bce", "l1", "mix", "mse"}
    if not ranked.empty:
        assert set(ranked["rank_psnr"]) <= {1, 2, 3, 4} and ranked["rank_psnr"].min() == 1
        best = ranked.loc[ranked["psnr"].idxmax(), "entry"]
        assert summary.set_index("entry").loc[best, "rank_psnr"] == 1


def test_entries_share_initial_weights_and_batches(tmp_path):
    """Two entries with the same loss under different names train to bit-identical results: same initial
    weights, same batches in the same order, nothing else differs."""
    suite = SMOKE.read_text().replace('name = "l1"\nloss = "l1"', 'name = "mse_again"\nloss = "mse"')
    path = tmp_path / "twins.toml"
    path.write_text(suite)
    assert (
        main(["run", str(path), "--out", str(tmp_path), "--no-progress", "--no-timing", "--only", "mse,mse_again"]) == 0
    )
    (folder,) = (tmp_path / "smoke").iterdir()
    history = pd.read_csv(folder / "history.csv").set_index(["entry", "step"])
    assert history.loc["mse"]["loss"].tolist() == history.loc["mse_again"]["loss"].tolist()
    quality = pd.read_csv(folder / "quality.csv").set_index("entry")
    assert quality.loc["mse", "psnr"] == quality.loc["mse_again", "psnr"]


def test_same_seed_on_cpu_gives_bit_identical_tables(smoke_run, tmp_path):
    assert main(["run", str(SMOKE), "--out", str(tmp_path), "--no-progress", "--no-timing"]) == 0
    (again,) = (tmp_path / "smoke").iterdir()
    wall_clock = ["train_seconds", "seconds"]
    for table in ("quality", "history"):
        a, b = (
            pd.read_csv(folder / f"{table}.csv").drop(columns=wall_clock, errors="ignore")
            for folder in (smoke_run, again)
        )
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_seeds_change_initial_weights_and_batches(tmp_path):
    assert (
        main(
            [
                "run",
                str(SMOKE),
                "--out",
                str(tmp_path),
                "--no-progress",
                "--no-timing",
                "--only",
                "mse",
                "--seeds",
                "2",
                "--steps",
                "2",
            ]
        )
        == 0
    )
    (folder,) = (tmp_path / "smoke").iterdir()
    history = pd.read_csv(folder / "history.csv")
    first_loss = history[history["step"] == 1].set_index("seed")["loss"]
    assert first_loss[0] != first_loss[1]
    summary = pd.read_csv(folder / "summary.csv").set_index("entry")
    assert summary.loc["mse", "seeds"] == 2 and summary.loc["mse", "psnr_ci_low"] < summary.loc["mse", "psnr_ci_high"]


def test_every_entry_of_a_seed_trains_on_the_same_crops(tmp_path, monkeypatch):
    """The crops (and their flips and turns) come from the seed alone: two different losses see identical
    batches in the same order; another seed sees other crops."""
    import bench.train.jobs
    import bench.train.loop

    batches: dict[tuple[str, int], list] = {}
    running = {}
    real_train, real_make_batch = bench.train.jobs.train, bench.train.loop.make_batch

    def train(spec, *args, **kwargs):
        running["job"] = (spec.entry.name, spec.seed)
        return real_train(spec, *args, **kwargs)

    def make_batch(*args):
        batch = real_make_batch(*args)
        batches.setdefault(running["job"], []).append(batch.clone())
        return batch

    monkeypatch.setattr(bench.train.jobs, "train", train)
    monkeypatch.setattr(bench.train.loop, "make_batch", make_batch)
    assert (
        main(
            [
                "run",
                str(SMOKE),
                "--out",
                str(tmp_path),
                "--no-progress",
                "--no-timing",
                "--only",
                "mse,l1",
                "--seeds",
                "2",
                "--steps",
                "3",
            ]
        )
        == 0
    )
    assert set(batches) == {("mse", 0), ("l1", 0), ("mse", 1), ("l1", 1)}
    for seed in (0, 1):
        assert len(batches[("mse", seed)]) == 3
        assert all(torch.equal(a, b) for a, b in zip(batches[("mse", seed)], batches[("l1", seed)]))
    assert not torch.equal(batches[("mse", 0)][0], batches[("mse", 1)][0])


def test_baselines_are_scored_in_every_table(smoke_run):
    """Mean colour and bicubic rows in quality.csv (one per seed), per_image.csv and summary.csv; the mean-colour
    PSNR is checked against skimage on the suite's own held-out crops."""
    from skimage.metrics import peak_signal_noise_ratio

    from bench.data.images import load_images
    from bench.config.suite import load_suite

    quality = pd.read_csv(smoke_run / "quality.csv").set_index("entry")
    assert quality.loc["baseline-mean-colour", "kind"] == "baseline" and quality.loc["mse", "kind"] == "trained"
    assert quality.loc["baseline-bicubic", "formula"].startswith("bicubic down to 5x5")  # 3 * 5 * 5 ~ latent 64
    crops = load_images(load_suite(SMOKE).data).eval.numpy()
    means = crops.mean(axis=(2, 3), keepdims=True) * np.ones_like(crops)
    expected = np.mean([peak_signal_noise_ratio(c, m, data_range=1.0) for c, m in zip(crops, means)])
    assert quality.loc["baseline-mean-colour", "psnr"] == pytest.approx(expected, abs=1e-3)
    assert quality.loc["baseline-bicubic", "psnr"] > quality.loc["baseline-mean-colour", "psnr"]
    per_image = pd.read_csv(smoke_run / "per_image.csv")
    assert len(per_image[per_image["entry"] == "baseline-bicubic"]) == len(crops)
    assert set(per_image["entry"]) == set(quality.index)
    summary = pd.read_csv(smoke_run / "summary.csv").set_index("entry")
    assert summary.loc["baseline-bicubic", "kind"] == "baseline" and pd.isna(
        summary.loc["baseline-bicubic", "rank_psnr"]
    )
    assert (smoke_run / "reconstructions" / "baseline-bicubic__seed0.png").is_file()


def test_bicubic_baseline_keeps_smooth_images_and_mean_colour_is_per_crop():
    from bench.data.baselines import bicubic, mean_colour

    axis = torch.linspace(0, 1, 64)
    smooth = (0.5 + 0.3 * torch.sin(3 * axis)[None, :] * torch.cos(2 * axis)[:, None]).expand(2, 3, 64, 64)
    error = (bicubic(smooth, 9) - smooth).abs()
    assert bicubic(smooth, 9).shape == smooth.shape and error.mean() < 0.01 and error.max() < 0.05
    images = torch.rand(2, 3, 8, 8)
    assert torch.allclose(mean_colour(images)[1, 2], images[1, 2].mean().expand(8, 8))


def test_bench_run_makes_openmp_threads_sleep_before_torch_loads(smoke_run):
    """OMP_WAIT_POLICY is read when torch's OpenMP loads, so the CLI must not import torch before `run` sets it."""
    import subprocess
    import sys

    check = "import sys, bench.cli; assert 'torch' not in sys.modules, 'torch loaded before the run command'"
    assert subprocess.run([sys.executable, "-c", check], cwd=Path(__file__).resolve().parents[1]).returncode == 0
    env = json.loads((smoke_run / "environment.json").read_text())
    assert env["omp_wait_policy"] in ("PASSIVE", __import__("os").environ.get("OMP_WAIT_POLICY", "PASSIVE"))


# The tiny suite trained at 32 px for 2 steps and timed at 64 px, where MS-SSIM's levels="auto" differ.
TINY = dict(
    data={"resolution": 32, "eval_crops": 2},
    train={"steps": 2, "log_every": None, "eval_every": None},
    timing={"resolution": 64, "warmup": None},
    metrics={"lpips_weights": "random"},
)


def test_the_report_says_where_a_loss_was_timed_with_other_settings_than_it_trained_with(tmp_path, tiny_suite):
    """MS-SSIM's levels="auto" fits 2 levels in the 32 px training crops and 3 in the 64 px timing images."""
    from bench.report import write_report

    suite = tmp_path / "s.toml"
    suite.write_text(tiny_suite([{"name": "ms", "loss": "ms_ssim", "levels": "auto"}, "mse"], **TINY))
    with pytest.warns(UserWarning, match="levels"):
        assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    (folder,) = (tmp_path / "out" / "tiny").iterdir()
    quality = pd.read_csv(folder / "quality.csv", keep_default_na=False).set_index("entry")
    speed = pd.read_csv(folder / "speed.csv", keep_default_na=False).groupby("entry")["loss_config"].first()
    assert quality.loc["ms", "loss_config"] == "ms_ssim: levels=2 at 32px" and quality.loc["mse", "loss_config"] == ""
    assert speed["ms"] == "ms_ssim: levels=3 at 64px" and speed["mse"] == ""
    page = write_report(folder).read_text(encoding="utf-8")
    assert "ms trained with ms_ssim: levels=2 at 32px, timed with ms_ssim: levels=3 at 64px" in page
    assert "mse trained with" not in page


class _SetUpOnFirstCall(torch.nn.Module):
    """A loss network whose first call in the process does slow one-off set-up (as kernel selection or cuDNN
    autotuning does), shared by every instance."""

    set_up = False

    def forward(self, reconstruction, target):
        if not _SetUpOnFirstCall.set_up:
            time.sleep(1.5)
            _SetUpOnFirstCall.set_up = True
        return torch.nn.functional.mse_loss(reconstruction, target)


def test_one_off_loss_set_up_is_billed_to_no_entry(tmp_path, tiny_suite):
    from bench.losses import loss_names, register_loss

    if "test_first_call_set_up" not in loss_names():
        register_loss("test_first_call_set_up", "test only: 1.5 s of set-up on the first call in a process")(
            lambda context: _SetUpOnFirstCall()
        )
    _SetUpOnFirstCall.set_up = False
    suite = tmp_path / "s.toml"
    suite.write_text(
        tiny_suite([{"name": name, "loss": "test_first_call_set_up"} for name in ("first", "second")], **TINY)
    )
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress", "--no-timing"]) == 0
    (folder,) = (tmp_path / "out" / "tiny").iterdir()
    seconds = pd.read_csv(folder / "quality.csv").set_index("entry")["train_seconds"]
    assert _SetUpOnFirstCall.set_up
    assert seconds["first"] < 1.0, seconds  # two steps of a 32 px model: well under the 1.5 s set-up


class _NoRecord(torch.nn.Module):
    """A loss with no measure record: it optimises no held-out metric of its own."""

    def forward(self, reconstruction, target):
        return (reconstruction - target).abs().mean()


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory, tiny_suite):
    """A real run of ms_ssim (designed for 161 px) and mse at 32 px, and a loss with no measure record, at a
    learning rate so small that no entry gains PSNR over the mean-colour baseline: its folder and console."""
    from bench.losses import loss_names, register_loss

    if "test_no_record" not in loss_names():
        register_loss("test_no_record", "test only: L1 without a measure record")(lambda context: _NoRecord())
    root = tmp_path_factory.mktemp("untrained")
    entries = [{"name": "ms", "loss": "ms_ssim", "levels": 2}, "mse", {"name": "plain", "loss": "test_no_record"}]
    (root / "s.toml").write_text(tiny_suite(entries, **{**TINY, "train": {**TINY["train"], "lr": 1e-12}}))
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        assert main(["run", str(root / "s.toml"), "--out", str(root / "out"), "--no-progress", "--no-timing"]) == 0
    (folder,) = (root / "out" / "tiny").iterdir()
    return folder, console.getvalue()


def test_a_real_run_records_the_losses_trained_below_their_design_size(untrained_run):
    folder, console = untrained_run
    quality = pd.read_csv(folder / "quality.csv", keep_default_na=False).set_index("entry")
    assert (quality.loc[["ms", "mse", "plain"], "resolution"] == 32).all()
    # MS-SSIM's 5 scales of an 11 px window need 161 px (Wang et al. 2003); mse is per pixel.
    assert quality.loc["ms", "trained_below_design"] == "ms_ssim"
    assert quality.loc["mse", "trained_below_design"] == "" and quality.loc["plain", "trained_below_design"] == ""
    summary = pd.read_csv(folder / "summary.csv", keep_default_na=False).set_index("entry")
    assert summary.loc["ms", "trained_below_design"] == "ms_ssim"
    assert "trained on crops smaller than their loss was designed for: ms: ms_ssim (161 px)" in console
    page = (folder / "report.html").read_text(encoding="utf-8")
    table = re.search(r'<section id="summary-table">(.*?)</section>', page, re.S).group(1)
    rows = {
        name: next(r for r in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S) if f"</span>{name}" in r)
        for name in ("ms", "mse", "plain")
    }
    assert "trained below design size: ms_ssim (161 px)" in rows["ms"]
    assert "trained below design size" not in rows["mse"] + rows["plain"]


def test_a_real_run_records_what_each_entry_trained_on_and_the_console_notes_no_psnr_gain(untrained_run):
    folder, console = untrained_run
    quality = pd.read_csv(folder / "quality.csv", keep_default_na=False).set_index("entry")
    # PSNR is a function of each image's MSE, so mse optimises both; a loss without a record optimises none.
    assert quality.loc["mse", "trained_on"] == "mse psnr"
    assert quality.loc["ms", "trained_on"] == "ms_ssim" and quality.loc["plain", "trained_on"] == ""
    assert quality.loc["baseline-mean-colour", "trained_on"] == ""
    owners = pd.read_csv(folder / "metrics.csv", keep_default_na=False).set_index("metric")["trained_on_by"]
    assert owners["psnr"] == "mse" and owners["ms_ssim"] == "ms" and owners["ssim"] == ""
    trivial = quality.loc["baseline-mean-colour", "psnr"]
    assert (quality.loc[["ms", "mse", "plain"], "psnr"] < trivial + 1).all()  # nothing learned at lr 1e-12
    assert re.search(r"mse seed 0: PSNR .*NO PSNR GAIN \(the verdict weighs its own mse too\)", console)
    assert re.search(r"ms seed 0: PSNR .*NO PSNR GAIN \(the verdict weighs its own ms_ssim too\)", console)
    assert re.search(r"plain seed 0: PSNR .*DID NOT LEARN", console)
    assert not re.search(r"(mse|ms) seed 0: PSNR .*DID NOT LEARN", console)
