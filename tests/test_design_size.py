"""Design-size flags: training or scoring on crops smaller than a measure's design size is flagged beside the
numbers it affects: in summary.csv and metrics.csv, in the verdict, and in the report's summary table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config.suite import Entry, Term
from bench.evaluate.design import below_design, trained_below_design, with_sizes
from bench.evaluate.tables import metric_table, summarize
from bench.evaluate.verdicts import headline
from bench.report import Run
from bench.report.html import render


def entry(*losses: str) -> Entry:
    return Entry("+".join(losses), tuple(Term(loss, 1.0, {}, loss) for loss in losses))


def test_losses_designed_for_larger_images_than_the_crops_are_named():
    assert trained_below_design(entry("fsim", "mse", "ms_ssim"), 64) == "fsim ms_ssim"
    assert trained_below_design(entry("fsim", "mse", "ms_ssim"), 256) == ""
    assert trained_below_design(entry("ms_ssim"), 161) == ""
    assert trained_below_design(entry("ms_ssim"), 160) == "ms_ssim"
    assert below_design(["psnr", "l1", "ssim", "vif", "lpips", "dists"], 32) == ["lpips", "dists"]
    assert with_sizes(["fsim", "ms_ssim", "not_loaded"]) == "fsim (256 px), ms_ssim (161 px), not_loaded"


def test_metrics_csv_names_the_trained_entries_that_optimise_each_metric_never_a_baseline():
    quality = pd.DataFrame(
        {
            "entry": ["mse", "fsim", "baseline-claims-psnr"],
            "kind": ["trained", "trained", "baseline"],
            "trained_on": ["mse psnr", "fsim", "psnr"],  # a baseline trains on nothing, whatever its row says
            "resolution": 256,
            "psnr": 20.0,
            "fsim": 0.8,
            "ssim": 0.7,
        }
    )
    owners = metric_table(quality).set_index("metric")["trained_on_by"]
    assert owners.to_dict() == {"psnr": "mse", "ssim": "", "fsim": "fsim"}


def crafted_run(tmp_path: Path, resolution: int) -> Run:
    """Two trained entries, fsim and mse, and a baseline, scored on crops of ``resolution`` px."""
    rng = np.random.default_rng(0)
    rows = [
        {"entry": name, "seed": seed, "crop": crop, "psnr": base + rng.normal(0, 0.1), "fsim": 0.8, "ssim": 0.7}
        for name, base in (("fsim", 25.0), ("mse", 26.0), ("baseline-mean-colour", 12.0))
        for seed in range(2)
        for crop in range(8)
    ]
    images = pd.DataFrame(rows)
    quality = images.groupby(["entry", "seed"], sort=False).mean(numeric_only=True).drop(columns="crop").reset_index()
    quality["kind"] = np.where(quality["entry"].str.startswith("baseline-"), "baseline", "trained")
    quality["trained_on"] = quality["entry"].map({"fsim": "fsim", "mse": "mse psnr"}).fillna("")
    quality["trained_below_design"] = [
        trained_below_design(entry(name), resolution) if kind == "trained" else None
        for name, kind in zip(quality["entry"], quality["kind"])
    ]
    quality = quality.assign(status="ok", formula=quality["entry"], train_seconds=1.0, resolution=resolution)
    summary = summarize(quality, pd.DataFrame(), images, pd.DataFrame())
    return Run(tmp_path, {}, quality, pd.DataFrame(), pd.DataFrame(), summary)


def summary_row(page: str, entry_name: str) -> str:
    table = re.search(r'<section id="summary-table">(.*?)</section>', page, re.S).group(1)
    return next(r for r in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S) if f"</span>{entry_name}" in r)


def test_small_crops_are_flagged_in_the_tables_the_verdict_and_beside_the_numbers(tmp_path):
    run = crafted_run(tmp_path, 64)
    summary = run.summary.set_index("entry")
    assert summary.loc["fsim", "trained_below_design"] == "fsim" and summary.loc["mse", "trained_below_design"] == ""
    assert (summary["scored_below_design"] == "fsim").all()  # SSIM's 11 px window and PSNR fit 64 px
    metrics = metric_table(run.quality).set_index("metric")
    assert metrics.loc["fsim", "scored_below_design"] and metrics.loc["fsim", "design_px"] == 256
    assert not metrics.loc["ssim", "scored_below_design"] and not metrics.loc["psnr", "scored_below_design"]
    assert "Zhang et al. 2011" in metrics.loc["fsim", "design_source"]
    lines = headline(run.summary)
    assert "trained on crops smaller than their loss was designed for: fsim: fsim (256 px)" in lines
    assert "scored on crops smaller than the metric was designed for: fsim (256 px)" in lines
    page = render(run)
    fsim_row, mse_row = summary_row(page, "fsim"), summary_row(page, "mse")
    assert "trained below design size: fsim (256 px)" in fsim_row and "trained below design size" not in mse_row
    for row in (fsim_row, mse_row):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        marked = [cell for cell in cells if "small-mark" in cell]
        assert len(marked) == 1 and "fsim (256 px)" in marked[0], marked  # the FSIM cell, and only it


def test_crops_at_the_design_size_are_not_flagged(tmp_path):
    run = crafted_run(tmp_path, 256)
    assert not run.summary["scored_below_design"].astype(bool).any()
    assert not [line for line in headline(run.summary) if "designed for" in line]
    assert 'small-mark"' not in render(run) and "trained below design size:" not in render(run)
