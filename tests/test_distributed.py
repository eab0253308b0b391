"""Ray: --workers 2 on a local instance gives the same tables as a single-process run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main

pytest.importorskip("ray", reason="Ray is the optional extra: pip install -e '.[distributed]'")

REPO = Path(__file__).resolve().parents[1]
WALL_CLOCK = {"train_seconds", "seconds"}


def run(tmp_path: Path, *flags: str) -> Path:
    out = tmp_path / "_".join(flags or ("single",))
    assert main(["run", str(REPO / "suites" / "smoke.toml"), "--out", str(out), "--no-progress", "--no-timing",
                 *flags]) == 0
    (folder,) = (out / "smoke").iterdir()
    return folder


def test_two_ray_workers_give_the_single_process_tables(tmp_path):
    single, parallel = run(tmp_path), run(tmp_path, "--workers", "2")
    for table in ("quality", "history", "summary"):
        a, b = (pd.read_csv(folder / f"{table}.csv") for folder in (single, parallel))
        a, b = (frame.drop(columns=[c for c in frame if c in WALL_CLOCK]) for frame in (a, b))
        pd.testing.assert_frame_equal(a, b, check_exact=True)  # bit-identical, rows in the same (plan) order
    assert sorted(p.name for p in (parallel / "reconstructions").iterdir()) == \
        sorted(p.name for p in (single / "reconstructions").iterdir())


def test_without_ray_the_message_says_how_to_install(monkeypatch, tmp_path, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ModuleNotFoundError("No module named 'ray'", name="ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["run", str(REPO / "suites" / "smoke.toml"), "--out", str(tmp_path), "--no-progress", "--no-timing",
                 "--workers", "2"]) == 2
    assert ".[distributed]" in capsys.readouterr().err
