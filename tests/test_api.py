"""A notebook's view: only names from bench.__all__, no TOML file written, no command line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    from bench.losses import registry

    registry.loss_names()
    monkeypatch.setattr(registry, "_LOSSES", registry._LOSSES.copy())


def test_a_notebook_runs_the_smoke_suite_and_reads_the_summary(tmp_path):
    import bench

    result = bench.run(
        REPO / "suites" / "smoke.toml", out=tmp_path, steps=4, timing=False, progress=False, log=lambda line: None
    )
    assert isinstance(result, bench.RunResult) and result.folder.parent == tmp_path / "smoke"
    summary = result.summary
    assert isinstance(summary, pd.DataFrame)
    trained = summary[summary["kind"] == "trained"].set_index("entry")
    assert list(trained.index) == ["mse", "l1", "bce", "mix"] and trained["psnr"].notna().all()
    assert set(result.quality["steps"].dropna()) >= {4} and result.failed == []
    assert not result.history.empty and result.report.is_file()
    pd.testing.assert_frame_equal(bench.open_run(result.folder).summary, summary)


def test_a_loss_and_a_suite_made_in_python_train_and_time(tmp_path):
    import bench

    @bench.register_loss("mean_abs_cubed", "mean |x - y|^3")
    def make(context: bench.LossContext):
        return lambda x, y: (x - y).abs().pow(3).mean()

    suite = bench.build_suite(
        ["mean_abs_cubed", "mse"],
        name="mine",
        data={"resolution": 16, "scale": 0.125, "eval_images": 2, "eval_crops": 4},
        model={"latent_dim": 64, "width": 32},
        train={"steps": 3, "batch_size": 2, "eval_every": 0},
    )
    assert isinstance(suite, bench.Suite) and [e.name for e in suite.entries] == ["mean_abs_cubed", "mse"]
    result = bench.run(suite, out=tmp_path, timing=False, progress=False, log=lambda line: None)
    assert (result.quality.set_index("entry").loc[["mean_abs_cubed", "mse"], "status"] == "ok").all()
    assert bench.load_suite(result.folder / "suite.toml").entries == suite.entries  # the run folder keeps the TOML

    speed = bench.time_losses(
        ["mean_abs_cubed", "mse"], resolution=32, batch_size=1, device="cpu", log=lambda line: None
    )
    totals = speed[speed["phase"] == "total"].set_index("entry")
    assert list(totals.index) == ["mean_abs_cubed", "mse"] and (totals["median_ms"] > 0).all()
    assert set(totals["resolution"]) == {32}

    with pytest.raises(bench.BenchInputError, match="unknown loss 'msee'"):
        bench.build_suite(["msee"])


def test_public_names_are_listed_documented_and_load_lazily():
    import subprocess
    import sys

    import bench

    for name in set(bench.__all__) - {"__version__"}:
        assert getattr(bench, name).__doc__, name
    check = "import sys, bench; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", check], cwd=REPO).returncode == 0
