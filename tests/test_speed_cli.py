"""`bench speed` and `bench check` end to end: a real slowdown fails the gate, the unmodified loss passes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main

SUITE = """
name = "gate"
[timing]
resolution = 32
batch_size = 1
min_repeats = 15
min_time_s = 0.2
threads = 1
[[entry]]
name = "ssim"
loss = "ssim"
win_size = 7
[[entry]]
name = "mse"
loss = "mse"
"""


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    suite = root / "gate.toml"
    suite.write_text(SUITE)
    record = root / "baseline.json"
    assert main(["speed", str(suite), "--device", "cpu", "--out", str(root), "--save-baseline", str(record)]) == 0
    return suite, latest(root), root


def latest(root: Path) -> Path:
    return sorted((root / "gate").iterdir())[-1]


def test_speed_writes_table_with_every_phase_and_its_repeats(gate, capsys):
    suite, baseline, root = gate
    speed = pd.read_csv(baseline / "speed.csv")
    assert set(speed["phase"]) == {"forward", "backward", "total"}
    assert set(speed["entry"]) == {"ssim", "mse"}
    assert (speed["median_ms"] > 0).all() and (speed["threads"] == 1).all()
    repeats = speed["samples_ms"].str.split().map(len)
    assert (repeats == speed["repeats"]).all() and (repeats >= 15).all()
    assert (baseline / "environment.json").is_file()


def test_the_run_folder_records_the_command_as_typed(gate):
    suite, baseline, root = gate
    command = json.loads((baseline / "environment.json").read_text())["command"]
    assert (
        command == f"python -m bench speed {suite} --device cpu --out {root} --save-baseline {root / 'baseline.json'}"
    )


def test_a_table_checked_against_itself_passes(gate):
    suite, baseline, root = gate
    assert main(["check", str(baseline), "--baseline", str(baseline / "speed.csv")]) == 0


def test_doubled_work_fails_the_check_and_names_the_loss(gate, capsys):
    """Four times the work on the timed loss: the SSIM entry becomes four SSIMs summed (weights 0.25 each). Two
    read only 1.24x once at this test's 32x32, where a call's fixed overhead is a large share, between two tables
    timed one after the other, not interleaved."""
    suite, baseline, root = gate
    slow = suite.parent / "slow.toml"
    four = ", ".join(['{ loss = "ssim", weight = 0.25, win_size = 7 }'] * 4)
    slow.write_text(SUITE.replace('name = "ssim"\nloss = "ssim"\nwin_size = 7', f'name = "ssim"\nterms = [{four}]'))
    assert (
        main(["speed", str(slow), "--device", "cpu", "--out", str(root), "--only", "ssim", "--check", str(baseline)])
        == 1
    )
    out = capsys.readouterr().out
    assert "SLOWER" in out and "FAILED: ssim slower" in out
    assert main(["check", str(latest(root)), "--baseline", str(baseline)]) == 1


def test_missing_baseline_is_input_error(gate, capsys):
    suite, baseline, root = gate
    assert main(["check", str(baseline), "--baseline", str(root / "absent")]) == 2
    assert "no speed table" in capsys.readouterr().err


def test_training_step_is_timed_per_variant(tmp_path):
    suite = tmp_path / "step.toml"
    suite.write_text(
        SUITE + "[data]\nresolution = 16\nimages = 4\neval_images = 1\n[model]\nlatent_dim = 64\nwidth = 32\n"
        "[train]\nbatch_size = 2\n"
    )
    assert (
        main(
            [
                "speed",
                str(suite),
                "--device",
                "cpu",
                "--out",
                str(tmp_path),
                "--only",
                "mse",
                "--train-step",
                "--variants",
                "fp32,channels_last",
            ]
        )
        == 0
    )
    speed = pd.read_csv(latest(tmp_path) / "speed.csv")
    steps = speed[speed["phase"] == "train_step"]
    assert list(steps["entry"]) == ["__model__"] * 2 and list(steps["variant"]) == ["fp32", "channels_last"]
    assert (steps["resolution"] == 16).all() and (steps["batch_size"] == 2).all() and (steps["images_per_s"] > 0).all()


def test_fast_training_path_options_train_and_are_recorded(tmp_path):
    suite = tmp_path / "fast.toml"
    suite.write_text(
        "[data]\nresolution = 32\nimages = 5\neval_images = 1\n[model]\nlatent_dim = 64\nwidth = 32\n"
        "[train]\nsteps = 3\nbatch_size = 2\nbf16 = true\nchannels_last = true\n"
        "[[entry]]\nname = 'mse'\nloss = 'mse'\n[[entry]]\nname = 'ssim'\nloss = 'ssim'\nwin_size = 7\n"
    )
    assert main(["run", str(suite), "--out", str(tmp_path), "--no-progress", "--no-timing"]) == 0
    quality = pd.read_csv(next((tmp_path / "fast").iterdir()) / "quality.csv")
    assert (quality["status"] == "ok").all() and quality["bf16"].all() and quality["channels_last"].all()


def test_other_implementations_are_timed_beside_ours(tmp_path):
    suite = tmp_path / "refs.toml"
    suite.write_text(SUITE.replace("win_size = 7\n", "") + "[[entry]]\nname = 'ffl'\nloss = 'focal_frequency'\n")
    assert main(["speed", str(suite), "--device", "cpu", "--out", str(tmp_path), "--references"]) == 0
    references = pd.read_csv(latest(tmp_path) / "speed_references.csv")
    ssim = references[references["loss"] == "ssim"].set_index("implementation")
    assert {"lossbench", "pytorch-msssim"} <= set(ssim.index)
    assert ssim["ratio_to_fastest"].min() == 1.0 and (ssim["median_ms"] > 0).all()
    assert "focal-frequency-loss" in set(references["implementation"])
