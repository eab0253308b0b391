"""Ray: --workers 2 on a local instance gives exactly the single-process tables, with --deterministic in every
worker; without Ray, or with --gpus alone, one clear message."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.cli import main

REPO = Path(__file__).resolve().parents[1]
WALL_CLOCK = {"train_seconds", "seconds"}
needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is the optional extra: pip install -e '.[distributed]'"
)


def run(tmp_path: Path, *flags: str) -> Path:
    out = tmp_path / "_".join(flags or ("single",))
    assert (
        main(
            [
                *("run", str(REPO / "suites" / "smoke.toml"), "--out", str(out), "--no-progress", "--no-timing"),
                *("--no-store", *flags),  # each run trains: these tests compare trainings
            ]
        )
        == 0
    )
    (folder,) = (out / "smoke").iterdir()
    return folder


@pytest.fixture
def restores_determinism():
    """--deterministic switches this process's torch; put it back for the tests that follow."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[1:]


@needs_ray
def test_two_deterministic_ray_workers_give_the_single_process_tables(tmp_path, restores_determinism):
    single, parallel = run(tmp_path, "--deterministic"), run(tmp_path, "--deterministic", "--workers", "2")
    for table in ("quality", "history", "per_image", "summary"):
        a, b = (pd.read_csv(folder / f"{table}.csv") for folder in (single, parallel))
        a, b = (frame.drop(columns=[c for c in frame if c in WALL_CLOCK]) for frame in (a, b))
        pd.testing.assert_frame_equal(a, b, check_exact=True)  # bit-identical, rows in the same (plan) order
    quality = pd.read_csv(parallel / "quality.csv")
    assert quality.loc[quality["kind"] == "trained", "deterministic"].all()  # as each worker recorded it
    assert sorted(p.name for p in (parallel / "reconstructions").iterdir()) == sorted(
        p.name for p in (single / "reconstructions").iterdir()
    )


def test_without_ray_the_message_says_how_to_install(monkeypatch, tmp_path, capsys):
    """Runs whether or not Ray is installed: the import of Ray is made to fail."""
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ModuleNotFoundError("No module named 'ray'", name="ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert (
        main(
            [
                "run",
                str(REPO / "suites" / "smoke.toml"),
                "--out",
                str(tmp_path),
                "--no-progress",
                "--no-timing",
                "--workers",
                "2",
            ]
        )
        == 2
    )
    assert ".[distributed]" in capsys.readouterr().err


def test_gpus_without_workers_is_an_input_error(tmp_path, capsys):
    assert (
        main(
            [
                "run",
                str(REPO / "suites" / "smoke.toml"),
                "--out",
                str(tmp_path),
                "--no-progress",
                "--no-timing",
                "--gpus",
                "0",
            ]
        )
        == 2
    )
    assert "--gpus" in capsys.readouterr().err and not list(tmp_path.iterdir())
