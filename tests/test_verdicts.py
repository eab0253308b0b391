"""Verdicts: who learned, who is best beyond noise (paired over seeds and crops, Holm-corrected), rank intervals,
convergence, trained-on-metric marks, and how the report shows them (ties never highlighted)."""

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
from bench.losses import loss_names, register_loss
from bench.report import Run
from bench.report.html import render
from bench.config.suite import Entry, Term
from bench.evaluate.tables import summarize
from bench.evaluate.verdicts import holm, pairwise, psnr_gain, rank_intervals, trained_on

CROPS = 16


def per_image(values: dict[str, np.ndarray], metric: str = "psnr") -> pd.DataFrame:
    """per_image.csv rows from entry -> (seeds x crops) values."""
    return pd.DataFrame(
        [
            {"entry": entry, "seed": seed, "crop": crop, metric: float(array[seed, crop])}
            for entry, array in values.items()
            for seed in range(array.shape[0])
            for crop in range(array.shape[1])
        ]
    )


def test_holm_matches_hand_computation():
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 -> max(0.06, 0.04) = 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])
    np.testing.assert_allclose(holm([0.6, 0.9]), [1.0, 1.0])  # 0.6 * 2 = 1.2: an adjusted p-value stops at 1


def test_the_paired_p_value_at_its_edges():
    """No spread: the same answers give p = 1 and a constant offset p = 0; two differences are scipy's paired
    t-test; one difference is no test."""
    p = lambda a, b: pairwise(per_image({"a": a, "b": b}), "psnr", True, ["a", "b"]).iloc[0]["p_value"]  # noqa: E731
    b = np.array([[20.0, 21.0, 22.0]])
    assert p(b.copy(), b) == 1.0 and p(b + 0.5, b) == 0.0
    two, moved = np.array([[20.0, 21.0]]), np.array([[20.5, 21.7]])
    assert p(moved, two) == pytest.approx(stats.ttest_rel(moved.ravel(), two.ravel()).pvalue)
    assert np.isnan(p(np.array([[20.5]]), np.array([[20.0]])))


def test_an_entry_is_still_improving_from_a_gain_of_0_2_db_over_the_last_fifth_of_its_steps():
    """Held-out PSNR at steps 50, 80 (the last evaluation at 80% of 100) and 100: a gains 0.25 dB after step
    80, b 0.15 dB."""
    from bench.evaluate.verdicts import add_verdicts

    curves = {"a": (20.0, 20.75, 21.0), "b": (20.0, 20.85, 21.0)}
    history = pd.DataFrame(
        [
            {"entry": e, "seed": 0, "step": s, "eval_psnr": v}
            for e, c in curves.items()
            for s, v in zip((50, 80, 100), c)
        ]
    )
    crops = np.array([[21.0, 21.1, 21.2, 21.3]])
    scores = per_image({"a": crops, "b": crops, "baseline-mean-colour": crops - 6})
    summary = pd.DataFrame(
        {
            "entry": ["a", "b", "baseline-mean-colour"],
            "kind": ["trained", "trained", "baseline"],
            "psnr": [21.15, 21.15, 15.15],
        }
    )
    judged, _ = add_verdicts(summary, scores, history, {"psnr": True})
    judged = judged.set_index("entry")
    assert judged.loc[["a", "b"], "psnr_gain_last20"].tolist() == pytest.approx([0.25, 0.15])
    assert judged.loc[["a", "b"], "still_improving"].tolist() == [True, False]


def test_pairwise_is_scipys_paired_t_test_over_seeds_and_crops():
    rng = np.random.default_rng(0)
    base = rng.normal(20, 2, (2, CROPS))
    a, b = base + 1 + rng.normal(0, 0.3, base.shape), base + rng.normal(0, 0.3, base.shape)
    row = pairwise(per_image({"a": a, "b": b}), "psnr", True, ["a", "b"]).iloc[0]
    assert row["p_value"] == pytest.approx(stats.ttest_rel(a.ravel(), b.ravel()).pvalue)
    assert row["pairs"] == 2 * CROPS and row["seeds"] == 2 and row["seeds_agree"]
    assert row["mean_difference"] == pytest.approx((a - b).mean())
    assert row["verdict"] == "a better"
    lower = pairwise(per_image({"a": a, "b": b}, "lpips"), "lpips", False, ["a", "b"]).iloc[0]
    assert lower["verdict"] == "b better"  # for a lower-is-better metric the smaller value wins


def test_a_difference_carried_by_one_seed_is_a_tie():
    """Seed 0: a leads by 2 dB, seed 1: a trails by 0.5 dB. Pooled over crops the t-test is significant, but
    the lead does not hold on every seed, so it is no verdict."""
    rng = np.random.default_rng(1)
    b = rng.normal(20, 2, (2, CROPS))
    a = b + np.array([[2.0], [-0.5]]) + rng.normal(0, 0.2, b.shape)
    row = pairwise(per_image({"a": a, "b": b}), "psnr", True, ["a", "b"]).iloc[0]
    assert row["p_holm"] < 0.05 and not row["seeds_agree"]
    assert row["verdict"] == "tie (within noise)"


def test_holm_correction_turns_a_marginal_difference_into_a_tie():
    rng = np.random.default_rng(2)
    b = rng.normal(20, 2, (2, CROPS))
    signs = np.resize([1.0, -1.0], b.shape)  # each seed: mean difference 0.3, spread 0.74 -> t ~ 2.3, p ~ 0.03
    a = b + 0.3 + 0.74 * signs  # p between 0.05 / 6 and 0.05 against each of three twins
    values = {"a": a, "b": b, "c": b.copy(), "d": b.copy()}
    pairs = pairwise(per_image(values), "psnr", True, list(values))
    against = pairs[pairs["a"] == "a"]
    assert (against["p_value"] < 0.05).all() and (against["p_holm"] >= 0.05).all()
    assert (pairs["verdict"] == "tie (within noise)").all()
    np.testing.assert_allclose(pairs["p_holm"], holm(pairs["p_value"]))


@pytest.mark.parametrize(
    "y_against_z, y_ranks, z_ranks",
    [("tie (within noise)", [2, 3], [2, 3]), ("y better", [2, 2], [3, 3])],
    ids=["y ties z", "z behind two others"],
)
def test_rank_intervals_count_significant_wins_and_losses(y_against_z, y_ranks, z_ranks):
    pairs = pd.DataFrame(
        [
            {"a": "x", "b": "y", "verdict": "x better"},
            {"a": "x", "b": "z", "verdict": "x better"},
            {"a": "y", "b": "z", "verdict": y_against_z},
        ]
    )
    ranks = rank_intervals(pairs, ["x", "y", "z"]).set_index("entry")
    assert (
        ranks.loc["x"].tolist() == [1, 1] and ranks.loc["y"].tolist() == y_ranks and ranks.loc["z"].tolist() == z_ranks
    )


def test_psnr_gain_is_over_the_last_fifth_of_the_steps():
    rows = [
        {"entry": "e", "seed": seed, "step": step, "eval_psnr": 10 + step / 10 + seed}
        for seed in (0, 1)
        for step in range(20, 101, 20)
    ]
    rows += [{"entry": "e", "seed": 0, "step": 90, "eval_psnr": np.nan}]  # a logging row without evaluation
    assert psnr_gain(pd.DataFrame(rows))["e"] == pytest.approx(2.0)  # step 100 vs step 80, both seeds


def test_trained_on_names_the_metrics_a_loss_or_its_terms_optimise():
    entry = lambda *losses: Entry("e", tuple(Term(loss, 1.0, {}, loss) for loss in losses))
    assert trained_on(entry("mse", "perceptual")) == "mse psnr"
    assert trained_on(entry("ms_ssim_l1")) == "l1 ms_ssim"
    assert trained_on(entry("lpips")) == "lpips"
    assert trained_on(entry("charbonnier")) == "" and trained_on(entry("perceptual")) == ""


# --- the summary and the report, from crafted tables ---------------------------------------------------------


def crafted_run(
    tmp_path: Path, psnr: dict[str, np.ndarray], trained: dict[str, str], ssim: dict[str, np.ndarray] | None = None
) -> Run:
    """A run folder's tables for entries with the given per-crop PSNR (seeds x crops) and a mean-colour baseline;
    SSIM is 0.5 everywhere but where ``ssim`` gives an entry's per-crop values."""
    values = {**psnr, "baseline-mean-colour": np.full_like(next(iter(psnr.values())), 12.0)}
    images = per_image(values)
    images["mse"] = 10 ** (-images["psnr"] / 10)
    for metric in ("ssim", "ms_ssim", "lpips", "l1"):
        images[metric] = 0.5
    for entry, crops in (ssim or {}).items():
        images.loc[images["entry"] == entry, "ssim"] = crops.ravel()
    quality = images.groupby(["entry", "seed"], sort=False).mean(numeric_only=True).drop(columns="crop").reset_index()
    quality["kind"] = np.where(quality["entry"].str.startswith("baseline-"), "baseline", "trained")
    quality["trained_on"] = [trained.get(entry, "") for entry in quality["entry"]]
    quality = quality.assign(status="ok", formula=quality["entry"], train_seconds=1.0)
    summary = summarize(quality, pd.DataFrame(), images, pd.DataFrame())
    return Run(tmp_path, {}, quality, pd.DataFrame(), pd.DataFrame(), summary)


def cells(page: str, entry: str) -> list[str]:
    """The <td> opening tags and contents of ``entry``'s summary row."""
    table = re.search(r'<section id="summary-table">(.*?)</section>', page, re.S).group(1)
    row = next(r for r in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S) if f"</span>{entry}" in r)
    return re.findall(r"<td([^>]*)>(.*?)</td>", row, re.S)


def column_index(page: str, heading: str) -> int:
    table = re.search(r'<section id="summary-table">(.*?)</section>', page, re.S).group(1)
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    return next(i for i, text in enumerate(headers) if text.startswith(heading))


def test_a_tie_is_not_highlighted_and_a_clear_win_is(tmp_path):
    rng = np.random.default_rng(3)
    base = rng.normal(20, 2, (2, CROPS))
    tied = crafted_run(tmp_path, {"a": base, "b": base + rng.normal(0, 0.3, base.shape)}, {})
    summary = tied.summary.set_index("entry")
    assert summary.loc[["a", "b"], "best_psnr"].tolist() == ["tied", "tied"]
    page = render(tied)
    psnr = column_index(page, "PSNR")
    for entry in ("a", "b"):
        attributes, text = cells(page, entry)[psnr]
        assert "best" not in attributes and "rank 1\u20132" in text
    assert "tied for best within noise: a, b" in page

    clear = crafted_run(tmp_path, {"a": base + 2, "b": base + rng.normal(0, 0.3, base.shape)}, {})
    page = render(clear)
    assert "best" in cells(page, "a")[psnr][0] and "best" not in cells(page, "b")[psnr][0]
    assert "rank 2" in cells(page, "b")[psnr][1]
    assert "PSNR: best is a" in page
    assert "best" not in cells(page, "baseline-mean-colour")[psnr][0]  # baselines are never ranked


def test_cells_of_the_metric_an_entry_was_trained_on_are_marked(tmp_path):
    rng = np.random.default_rng(4)
    base = rng.normal(20, 2, (2, CROPS))
    run = crafted_run(tmp_path, {"mse": base + 2, "l1": base}, {"mse": "mse psnr", "l1": "l1"})
    page = render(run)
    marked = {
        (entry, column)
        for entry in ("mse", "l1")
        for column in ("PSNR", "SSIM", "L1", "MSE")
        if "own" in cells(page, entry)[column_index(page, column)][0]
    }
    assert marked == {("mse", "PSNR"), ("mse", "MSE"), ("l1", "L1")}
    assert "\u25c6" in cells(page, "mse")[column_index(page, "PSNR")][1]


def test_an_entry_that_did_not_learn_is_marked_and_never_ranked(tmp_path):
    rng = np.random.default_rng(5)
    base = rng.normal(20, 2, (2, CROPS))
    run = crafted_run(tmp_path, {"good": base, "flat": np.full_like(base, 12.5)}, {})
    summary = run.summary.set_index("entry")
    assert bool(summary.loc["good", "learned"]) and not bool(summary.loc["flat", "learned"])
    assert pd.isna(summary.loc["flat", "rank_psnr"]) and pd.isna(summary.loc["flat", "rank_psnr_low"])
    assert summary.loc["flat", "best_ssim"] == ""  # not even on a metric it ties on
    page = render(run)
    assert "did not learn" in cells(page, "flat")[0][1] and "did not learn" not in cells(page, "good")[0][1]
    assert (
        "did not learn (held-out PSNR not 1 dB above mean-colour, 12.00 dB, nor significantly better than it "
        "on its own measure): flat"
    ) in page


def test_an_entry_that_learned_its_own_measure_but_not_psnr_learned_and_is_ranked(tmp_path):
    rng = np.random.default_rng(6)
    base = rng.normal(20, 2, (2, CROPS))
    flat = np.full_like(base, 12.5)  # PSNR within the 1 dB margin of the 12 dB baseline
    run = crafted_run(
        tmp_path,
        {"good": base, "structural": flat, "idle": flat.copy(), "pixel": flat.copy()},
        {"structural": "ssim", "idle": "ssim", "pixel": "mse psnr"},
        ssim={"structural": rng.normal(0.8, 0.02, base.shape), "idle": np.full_like(base, 0.5)},
    )
    summary = run.summary.set_index("entry")
    assert bool(summary.loc["structural", "learned"]) and summary.loc["structural", "learned_on_own_measure"] == "ssim"
    assert not bool(summary.loc["idle", "learned"])  # as good as the baseline on its own measure: not learned
    assert bool(summary.loc["pixel", "learned"])  # 0.5 dB better on every crop: MSE, its own measure, is better
    assert summary.loc["structural", "best_ssim"] == "best" and summary.loc["idle", "best_ssim"] == ""
    page = render(run)
    assert (
        "learned its own measure but not PSNR (held-out PSNR not 1 dB above mean-colour; ranked): structural on "
        "SSIM, pixel on MSE, PSNR"
    ) in page


# --- a real run: an entry that learns, and a broken one that cannot ------------------------------------------


class _IgnoresTarget(torch.nn.Module):
    """A loss with a bug: it never looks at the target, only pulls every pixel to mid-grey."""

    def forward(self, reconstruction, target):
        return (reconstruction - 0.5).abs().mean()


@pytest.fixture(scope="module")
def learn_run(tmp_path_factory, small_suite):
    if "test_ignores_target" not in loss_names():
        register_loss("test_ignores_target", "test only: ignores the target")(lambda context: _IgnoresTarget())
    root = tmp_path_factory.mktemp("learn")
    (root / "learn.toml").write_text(
        small_suite(
            ["mse", {"name": "broken", "loss": "test_ignores_target"}],
            name="learn",
            data={"eval_crops": 16},
            model={"latent_dim": 192, "width": 64},
            train={"steps": 200, "batch_size": 8, "lr": 2e-3, "log_every": 20, "eval_every": 20},
            metrics=None,
        )
    )
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert main(["run", str(root / "learn.toml"), "--out", str(root), "--no-progress", "--no-timing"]) == 0
    (folder,) = (root / "learn").iterdir()
    return folder, output.getvalue()


def test_mse_learns_well_above_the_mean_colour_baseline(learn_run):
    folder, _ = learn_run
    quality = pd.read_csv(folder / "quality.csv").set_index("entry")
    mse, mean = quality.loc["mse"], quality.loc["baseline-mean-colour"]
    assert mse["ssim"] >= mean["ssim"] + 0.15, (mse["ssim"], mean["ssim"])
    assert mse["psnr"] >= mean["psnr"] + 2.0, (mse["psnr"], mean["psnr"])


def test_a_loss_that_ignores_the_target_is_marked_did_not_learn_everywhere(learn_run):
    folder, console = learn_run
    summary = pd.read_csv(folder / "summary.csv").set_index("entry")
    assert not summary.loc["broken", "learned"] and summary.loc["mse", "learned"]
    assert pd.isna(summary.loc["broken", "rank_psnr"]) and summary.loc["mse", "rank_psnr"] == 1
    assert re.search(r"broken seed 0: PSNR .* DID NOT LEARN", console)
    assert not re.search(r"mse seed 0: PSNR .* DID NOT LEARN", console)
    assert re.search(
        r"did not learn \(held-out PSNR not 1 dB above mean-colour, [\d.]+ dB, nor significantly better "
        r"than it on its own measure\): broken",
        console,
    )
    page = (folder / "report.html").read_text()
    assert "did not learn" in cells(page, "broken")[0][1] and "did not learn" not in cells(page, "mse")[0][1]
    grid = re.search(r'<section id="reconstructions">(.*?)</section>', page, re.S).group(1)
    assert re.search(r'</span>broken<br><span class="note">seed 0</span><br><span class="badge dnl">', grid)
