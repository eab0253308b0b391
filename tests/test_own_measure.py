""" "Did not optimise its own measure": an entry significantly worse than the reference entry (mse, or the suite's
[verdict] reference) on a metric it trained on and the reference did not, paired over seeds and crops. Checked on
crafted tables (against scipy's paired t-test) and on a real run whose entry trains on a scrambled gradient."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from bench.cli import main
from bench.config.suite import parse_suite
from bench.errors import BenchInputError
from bench.evaluate.tables import summarize
from bench.evaluate.verdicts import headline, own_measure_comparisons
from bench.losses import loss_names, register_loss
from bench.losses.measures import DesignSize, Measure
from bench.losses.structural import ssim_loss
from bench.report import Run
from bench.report.html import render

SEEDS, CROPS = 3, 12
OWN = {"mse": "mse psnr", "l1": "l1", "fsim": "fsim", "fsim_good": "fsim", "mixed": "fsim mse psnr"}


def crafted(fsim_means: dict[str, float], reference: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """per_image and summary for the entries of ``fsim_means`` (each trained on what OWN says), every one of
    which learned (PSNR well above the baseline's)."""
    rng = np.random.default_rng(1)
    rows = [
        {
            "entry": entry,
            "seed": seed,
            "crop": crop,
            "psnr": 25 + rng.normal(0, 0.3),
            "fsim": mean + rng.normal(0, 0.01),
        }
        for entry, mean in {**fsim_means, "baseline-mean-colour": 0.3}.items()
        for seed in range(SEEDS)
        for crop in range(CROPS)
    ]
    rows = [{**row, "psnr": 12.0} if row["entry"].startswith("baseline") else row for row in rows]
    images = pd.DataFrame(rows)
    quality = images.groupby(["entry", "seed"], sort=False).mean(numeric_only=True).drop(columns="crop").reset_index()
    quality["kind"] = np.where(quality["entry"].str.startswith("baseline-"), "baseline", "trained")
    quality["trained_on"] = quality["entry"].map(OWN).fillna("")
    quality = quality.assign(status="ok", formula=quality["entry"], train_seconds=1.0)
    return images, summarize(quality, pd.DataFrame(), images, pd.DataFrame(), reference)


def test_an_entry_worse_than_mse_on_its_own_measure_is_marked_and_one_as_good_is_not(tmp_path):
    images, summary = crafted({"mse": 0.80, "fsim": 0.66, "fsim_good": 0.80, "mixed": 0.70})
    marks = summary.set_index("entry")
    assert marks.loc["fsim", "did_not_optimise"] == "fsim" and marks.loc["mixed", "did_not_optimise"] == "fsim"
    assert marks.loc["fsim_good", "did_not_optimise"] == "" and marks.loc["mse", "did_not_optimise"] == ""
    assert marks.loc["fsim", "own_measure_reference"] == "mse" and marks.loc["mse", "own_measure_reference"] == ""
    assert marks.loc["fsim", "learned"]  # an optimisation finding, not "did not learn"
    line = (
        "did not optimise its own measure (significantly worse on it than mse, which did not train on it): "
        "fsim on FSIM, mixed on FSIM"
    )
    assert line in headline(summary)
    page = render(Run(tmp_path, {}, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), summary))
    table = re.search(r'<section id="summary-table">(.*?)</section>', page, re.S).group(1)
    rows = {
        name: row for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S) for name in OWN if f"</span>{name}" in row
    }
    assert "did not optimise its own measure" in rows["fsim"] and "did not learn" not in rows["fsim"]
    assert "did not optimise its own measure" not in rows["fsim_good"]


def test_the_comparison_is_a_paired_t_test_holm_corrected_over_every_own_measure_comparison():
    images, summary = crafted({"mse": 0.80, "fsim": 0.795, "mixed": 0.70})
    comparisons = own_measure_comparisons(summary, images, "mse").set_index("a")
    assert set(comparisons.index) == {"fsim", "mixed"} and set(comparisons["metric"]) == {"fsim"}
    pivot = images.pivot_table(index=["seed", "crop"], columns="entry", values="fsim")
    p_values = [stats.ttest_rel(pivot[entry], pivot["mse"]).pvalue for entry in ("fsim", "mixed")]
    np.testing.assert_allclose(comparisons.loc[["fsim", "mixed"], "p_value"], p_values, rtol=1e-9)
    low, high = sorted(p_values)  # Holm over two tests: the smaller p doubled, the larger at least that
    adjusted = {low: min(1.0, 2 * low), high: min(1.0, max(2 * low, high))}
    np.testing.assert_allclose(comparisons.loc[["fsim", "mixed"], "p_holm"], [adjusted[p] for p in p_values])


def test_a_suite_may_name_another_reference_and_a_wrong_name_is_one_clear_error():
    _, summary = crafted({"mse": 0.70, "l1": 0.80, "fsim": 0.70}, reference="l1")
    marks = summary.set_index("entry")
    assert marks.loc["fsim", "did_not_optimise"] == "fsim" and marks.loc["mse", "own_measure_reference"] == "l1"
    raw = {"entry": [{"name": "mse", "loss": "mse"}], "verdict": {"reference": "l2"}}
    with pytest.raises(BenchInputError) as error:
        parse_suite(raw, path=Path("mine.toml"))
    assert "mine.toml: verdict.reference" in str(error.value) and "mse" in str(error.value)


# --- a real run: an entry trained on SSIM through a scrambled gradient -----------------------------------------


class _ScrambledGradient(torch.autograd.Function):
    """The value of 1 - SSIM; the gradient's elements shuffled within each image, so no step follows the measure."""

    @staticmethod
    def forward(context, reconstruction, target):
        with torch.enable_grad():
            leaf = reconstruction.detach().requires_grad_()
            value = ssim_loss(leaf, target)
            (gradient,) = torch.autograd.grad(value, leaf)
        context.save_for_backward(gradient)
        return value.detach()

    @staticmethod
    def backward(context, upstream):
        (gradient,) = context.saved_tensors
        flat = gradient.flatten(1)
        order = torch.argsort(torch.rand(flat.shape, device=flat.device), dim=1)
        return upstream * flat.gather(1, order).view_as(gradient), None


def test_a_real_entry_trained_through_a_scrambled_gradient_did_not_optimise_its_own_measure(tmp_path, small_suite):
    if "test_scrambled_ssim" not in loss_names():
        record = Measure("SSIM", True, ("ssim",), DesignSize(11, "a test"), "a test")
        register_loss("test_scrambled_ssim", "test only: 1 - SSIM with a scrambled gradient", measure=record)(
            lambda context: lambda x, y: _ScrambledGradient.apply(x, y)
        )
    (tmp_path / "scrambled.toml").write_text(
        small_suite(
            ["mse", {"name": "scrambled", "loss": "test_scrambled_ssim"}],
            name="scrambled",
            seeds=[0, 1],
            data={"eval_crops": 12},
            model={"latent_dim": 192, "width": 64},
            train={"steps": 150, "batch_size": 8, "lr": 2e-3},
        )
    )
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert (
            main(["run", str(tmp_path / "scrambled.toml"), "--out", str(tmp_path), "--no-progress", "--no-timing"]) == 0
        )
    (folder,) = (tmp_path / "scrambled").iterdir()
    summary = pd.read_csv(folder / "summary.csv", keep_default_na=False).set_index("entry")
    assert summary.loc["scrambled", "did_not_optimise"] == "ssim" and summary.loc["mse", "did_not_optimise"] == ""
    assert (
        "did not optimise its own measure (significantly worse on it than mse, which did not train on it): "
        "scrambled on SSIM" in output.getvalue()
    )
    assert "did not optimise its own measure</span>" in (folder / "report.html").read_text()
