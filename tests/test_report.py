"""The HTML report, run comparison and browser rendering, on a real smoke run (and edited copies of it)."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.errors import BenchInputError
from bench.report import compare_runs, format_comparison, screenshot, write_comparison, write_report
from bench.report.html import SECTION_IDS
from bench.report.plots import pareto_front
from bench.report.screenshot import find_chromium

REPO = Path(__file__).resolve().parents[1]
ENTRIES = ("mse", "l1", "bce", "mix")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results")
    assert main(["run", str(REPO / "suites" / "smoke.toml"), "--out", str(out), "--no-progress"]) == 0
    (folder,) = (out / "smoke").iterdir()
    return folder


@pytest.fixture(scope="module")
def report(smoke_run) -> Path:
    return write_report(smoke_run)


def copy_run(run: Path, destination: Path) -> Path:
    shutil.copytree(run, destination)
    (destination / "report.html").unlink(missing_ok=True)
    return destination


def edit_quality(run: Path, edit) -> None:
    edit(pd.read_csv(run / "quality.csv")).to_csv(run / "quality.csv", index=False)


def summary_order(page: str) -> list[str]:
    table = re.search(r'<section id="summary-table">(.*?)</section>', page, re.S).group(1)
    return re.findall(r'class="swatch"[^>]*></span>([^<]+?)(?: <span class="badge[^"]*">[^<]*</span>)?</td>', table)


def test_report_has_every_section_and_entry(report):
    page = report.read_text(encoding="utf-8")
    for section in SECTION_IDS:
        assert f'<section id="{section}">' in page, section
    for entry in ENTRIES:
        assert entry in summary_order(page)
        assert f'alt="{entry}"' in page  # its reconstruction strip
    assert "x86_64" in page or "cpu" in page


def test_report_is_self_contained(report):
    page = report.read_text(encoding="utf-8")
    assert "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "url(" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) >= 5 and all(s.startswith("data:image/png;base64,") for s in sources)


def test_run_tables_round_trip_through_pandas(smoke_run):
    for name in ("quality", "history", "speed", "summary"):
        table = pd.read_csv(smoke_run / f"{name}.csv")
        assert not table.empty and "entry" in table, name


def test_summary_is_sorted_by_the_chosen_metric(smoke_run, tmp_path):
    run = copy_run(smoke_run, tmp_path / "run")
    summary = pd.read_csv(run / "summary.csv")
    assert summary_order(write_report(run).read_text()) == list(summary.sort_values("psnr", ascending=False)["entry"])
    assert summary_order(write_report(run, sort_by="lpips").read_text()) == list(summary.sort_values("lpips")["entry"])
    with pytest.raises(BenchInputError, match="cannot sort by"):
        write_report(run, sort_by="beauty")


def test_failed_entry_random_weights_and_missing_tables_are_reported(smoke_run, tmp_path):
    run = copy_run(smoke_run, tmp_path / "run")

    def fail_bce(quality):
        quality = quality.astype({"error": object})  # read back all-empty, hence float
        failed = quality["entry"] == "bce"
        quality.loc[failed, ["status", "error", "failed_step"]] = ["failed", "Diverged: loss is nan at step 7", 7]
        quality.loc[failed, ["psnr", "ssim", "ms_ssim", "lpips", "l1", "mse", "train_seconds"]] = np.nan
        quality.loc[quality["entry"] == "mix", "loss_weights"] = "perceptual=random"
        return quality

    edit_quality(run, fail_bce)
    for stale in ("summary.csv", "speed.csv", "reconstructions/bce__seed0.png"):
        (run / stale).unlink()  # as after an interrupted run with --no-timing
    page = write_report(run).read_text()
    failures = re.search(r'id="failures">(.*?)</div>', page, re.S).group(1)
    assert "bce" in failures and "at step 7" in failures and "Diverged: loss is nan" in failures
    assert "perceptual used random weights (entries: mix)" in page
    assert "timing was skipped" in page
    assert summary_order(page)[-1] == "bce"  # NaN sorts last
    assert pd.read_csv(run / "quality.csv").loc[lambda q: q["entry"] == "bce", "status"].item() == "failed"


def test_not_a_run_folder_is_a_clear_input_error(tmp_path):
    with pytest.raises(BenchInputError, match="not found"):
        write_report(tmp_path / "missing")
    with pytest.raises(BenchInputError, match="not a run folder"):
        compare_runs(tmp_path, tmp_path)


def test_compare_flags_only_changes_beyond_the_seed_spread(smoke_run, tmp_path):
    run_a = copy_run(smoke_run, tmp_path / "a")

    # A second seed 0.1 dB apart: a psnr spread (std) of ~0.07 dB. Run b: l1 gains 1 dB, the rest is unchanged.
    edit_quality(run_a, lambda q: pd.concat([q, q.assign(seed=1, psnr=q["psnr"] + 0.1)]))
    run_b = copy_run(run_a, tmp_path / "b")
    edit_quality(run_b, lambda q: q.assign(psnr=q["psnr"] + np.where(q["entry"] == "l1", 1.0, 0.0)))

    frame = compare_runs(run_a, run_b).set_index("entry")
    assert list(frame.index) == [*ENTRIES, "baseline-mean-colour", "baseline-bicubic"]  # baselines last, untimed
    assert frame.loc["l1", "psnr_diff"] == pytest.approx(1.0)
    assert frame["psnr_changed"].to_dict() == {
        "mse": False,
        "l1": True,
        "bce": False,
        "mix": False,
        "baseline-mean-colour": False,
        "baseline-bicubic": False,
    }
    trained = frame.loc[list(ENTRIES)]
    assert not frame["ssim_changed"].any() and (trained["speed_ratio"] == 1).all() and not frame["speed_changed"].any()
    text = format_comparison(frame.reset_index())
    assert "+1 *" in text and all(entry in text for entry in ENTRIES)

    written = write_comparison(run_a, run_b, tmp_path / "out" / "comparison.csv")
    assert pd.read_csv(tmp_path / "out" / "comparison.csv")["psnr_changed"].tolist() == written["psnr_changed"].tolist()


def test_compare_with_one_seed_flags_nothing_and_says_why(smoke_run):
    frame = compare_runs(smoke_run, smoke_run)
    assert not frame.filter(like="_changed").any().any()
    assert any("seed spread unknown" in note for note in frame.attrs["notes"])


def test_pareto_front_respects_the_metric_direction():
    cost = pd.Series({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})
    value = pd.Series({"a": 10.0, "b": 9.0, "c": 12.0, "d": 12.0})
    assert pareto_front(cost, value, higher_better=True) == ["a", "c"]
    assert pareto_front(cost, value, higher_better=False) == ["a", "b"]


def require_chromium() -> None:
    """Skips the browser test where Chromium is missing, except in CI (``CI`` set, as .ci/run and CI services
    do), where a missing browser must fail the test: CI is where the report has to be seen to render."""
    if find_chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but Chromium is not installed (.ci/run installs it: apt-get install -y chromium)")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")


def test_browser_test_fails_in_ci_without_chromium(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "find_chromium", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(BaseException) as outcome:  # pytest's fail and skip are BaseExceptions
        require_chromium()
    assert outcome.type is pytest.fail.Exception and "CI is set" in str(outcome.value)
    monkeypatch.delenv("CI")
    with pytest.raises(BaseException) as outcome:
        require_chromium()
    assert outcome.type is pytest.skip.Exception


def test_chromium_renders_the_report(report, tmp_path):
    require_chromium()
    from PIL import Image, ImageStat

    png = screenshot(report, tmp_path / "report.png", width=1400)
    with Image.open(png) as image:
        assert image.width == 1400 and image.height > 1000
        assert max(ImageStat.Stat(image.convert("RGB")).stddev) > 10  # not a blank page
