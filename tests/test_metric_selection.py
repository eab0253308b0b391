"""[metrics] compute: which held-out metrics a run computes, their directions, the trained-on-the-metric marks in
summary, pairwise, metrics.csv and the headline; and a loss with learnable parameters learning them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.data.images import ImageSet
from bench.errors import BenchInputError
from bench.losses import LossContext, WeightedSum, build_loss
from bench.evaluate.metrics import DEFAULT_METRICS, METRICS, QualityMetrics
from bench.config.plan import make_plan
from bench.config.suite import Entry, Term, parse_suite
from bench.evaluate.tables import metric_table, summarize, summarize_with_pairs
from bench.train.loop import train
from bench.evaluate.verdicts import headline, trained_on

from bench.models import ModelContext, build_model


def suite_with(metrics: str = "", entries: str = '[[entry]]\nname = "mse"\nloss = "mse"\n', tmp: Path = Path(".")):
    import tomllib

    text = f"[metrics]\n{metrics}\n{entries}" if metrics else entries
    return parse_suite(tomllib.loads(text), path=tmp / "s.toml")


def pair(n: int = 3, side: int = 48, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, side, side, generator=generator)
    return (target + 0.1 * torch.randn(target.shape, generator=generator)).clamp(0, 1), target


def test_default_metrics_add_weight_free_measures_no_default_entry_trains_on():
    suite = suite_with()
    assert suite.metrics.compute == DEFAULT_METRICS
    assert {"fsim", "gmsd", "haarpsi", "dists"} <= set(DEFAULT_METRICS)
    from bench.config.suite import load_suite

    all_losses = load_suite(Path(__file__).resolve().parents[1] / "suites" / "all_losses.toml")
    owned = {metric for entry in all_losses.entries for metric in trained_on(entry).split()}
    assert {"fsim", "gmsd", "haarpsi", "dists"}.isdisjoint(owned)


def test_compute_chooses_the_metrics_and_psnr_is_always_there(tmp_path):
    suite = suite_with('compute = ["ssim", "gmsd"]')
    assert suite.metrics.compute == ("ssim", "gmsd")
    metrics = QualityMetrics("alex", "random", torch.device("cpu"), compute=suite.metrics.compute)
    values = metrics(*pair())
    assert {"psnr", "ssim", "gmsd"} <= set(values) and not {"lpips", "fsim", "l1", "ms_ssim_levels"} & set(values)


def test_an_unknown_metric_is_an_input_error_naming_the_key():
    with pytest.raises(BenchInputError) as caught:
        suite_with('compute = ["psnr", "fsmi"]')
    assert "metrics.compute" in str(caught.value) and "did you mean 'fsim'" in str(caught.value)


def test_new_metrics_agree_with_their_losses_and_point_the_right_way():
    x, y = pair()
    metrics = QualityMetrics(
        "alex",
        "random",
        torch.device("cpu"),
        compute=("fsim", "gmsd", "haarpsi", "vif", "nlpd", "dists"),
        dists_weights="random",
    )
    values, _ = metrics.per_image(x, y)
    for name in ("fsim", "gmsd", "haarpsi"):
        loss = build_loss(name, {}, LossContext(48))(x, y).item()
        as_loss = 1 - values[name].mean().item() if METRICS[name].higher_is_better else values[name].mean().item()
        assert as_loss == pytest.approx(loss, rel=1e-5), name
    better, _ = metrics.per_image((0.5 * x + 0.5 * y), y)  # half the distortion
    for name, metric in METRICS.items():
        if name in values:
            improved = better[name] > values[name] if metric.higher_is_better else better[name] < values[name]
            assert improved.all(), name


def test_dists_metric_is_left_out_unless_its_weights_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    said = []
    metrics = QualityMetrics("alex", "random", torch.device("cpu"), compute=("psnr", "dists"), log=said.append)
    assert metrics.compute == ("psnr",) and "DISTS metric left out" in said[0] and "dists_weights.pt" in said[0]
    forced = QualityMetrics("alex", "random", torch.device("cpu"), compute=("dists",), dists_weights="random")
    assert forced.compute == ("psnr", "dists") and forced(*pair())["dists_weights"] == "random"


# --- marks -----------------------------------------------------------------------------------------------------


def crafted(
    means: dict[str, tuple[float, float]], trained: dict[str, str], noise_seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """quality and per_image tables with psnr and fsim per (seed, crop), 2 seeds x 12 crops around each entry's
    (psnr, fsim) means with noise of standard deviation 0.01 drawn from ``noise_seed``."""
    rng = np.random.default_rng(noise_seed)
    rows = []
    for entry, pair in means.items():
        psnr, fsim = (mean + rng.normal(0, 0.01, (2, 12)) for mean in pair)
        for seed in range(psnr.shape[0]):
            for crop in range(psnr.shape[1]):
                rows.append(
                    {"entry": entry, "seed": seed, "crop": crop, "psnr": psnr[seed, crop], "fsim": fsim[seed, crop]}
                )
    images = pd.DataFrame(rows)
    quality = images.groupby(["entry", "seed"], sort=False).mean(numeric_only=True).drop(columns="crop").reset_index()
    quality["kind"] = np.where(quality["entry"].str.startswith("baseline-"), "baseline", "trained")
    quality["trained_on"] = [trained.get(e, "") for e in quality["entry"]]
    return quality.assign(status="ok", formula=quality["entry"], train_seconds=1.0), images


def crafted_summary(means: dict[str, tuple[float, float]], trained: dict[str, str], noise_seed: int) -> pd.DataFrame:
    """summary.csv's table of ``crafted``'s run."""
    quality, images = crafted(means, trained, noise_seed)
    return summarize_with_pairs(quality, pd.DataFrame(), images, pd.DataFrame())[0]


@pytest.fixture
def marked():
    quality, images = crafted(
        {"fsim": (20, 0.95), "mse": (25, 0.90), "baseline-mean-colour": (12, 0.5)},
        {"fsim": "fsim", "mse": "mse psnr"},
        noise_seed=0,
    )
    return summarize_with_pairs(quality, pd.DataFrame(), images, pd.DataFrame()), quality


def test_pairwise_marks_the_entry_trained_on_the_metric(marked):
    (_, pairs), _ = marked
    row = pairs[(pairs["metric"] == "fsim")].iloc[0]
    assert {row["a"]: row["a_trained_on_metric"], row["b"]: row["b_trained_on_metric"]} == {"fsim": True, "mse": False}
    row = pairs[(pairs["metric"] == "psnr")].iloc[0]
    assert {row["a"]: row["a_trained_on_metric"], row["b"]: row["b_trained_on_metric"]} == {"fsim": False, "mse": True}


def test_metrics_table_says_direction_and_who_trained_on_each(marked):
    _, quality = marked
    table = metric_table(quality).set_index("metric")
    assert table.loc["psnr", "higher_is_better"] and table.loc["fsim", "higher_is_better"]
    assert table.loc["fsim", "trained_on_by"] == "fsim" and table.loc["psnr", "trained_on_by"] == "mse"


def test_summary_keeps_each_entrys_formula_weights_seeds_and_failed_trainings():
    quality, images = crafted(
        {"mse": (25, 0.9), "perceptual+mse": (22, 0.8), "l1": (20, 0.85)},
        {"mse": "mse psnr", "perceptual+mse": "mse psnr"},
        noise_seed=1,
    )
    quality["loss_weights"] = np.where(quality["entry"] == "perceptual+mse", "perceptual=random", "none")
    failed = quality[quality["entry"] == "l1"].iloc[[0]].assign(seed=2, status="failed", psnr=np.nan, fsim=np.nan)
    quality = pd.concat([quality, failed], ignore_index=True)
    summary = summarize(quality, pd.DataFrame(), images)
    assert summary[["entry", "kind", "formula", "loss_weights", "seeds", "failed"]].values.tolist() == [
        ["mse", "trained", "mse", "none", 2, 0],
        ["perceptual+mse", "trained", "perceptual+mse", "perceptual=random", 2, 0],
        ["l1", "trained", "l1", "none", 3, 1],
    ]
    assert (summarize(quality.drop(columns="kind"), pd.DataFrame(), images)["kind"] == "trained").all()
    table = metric_table(quality).set_index("metric")
    assert table.loc["psnr", ["label", "source", "trained_on_by"]].tolist() == [
        "PSNR (dB)",
        "10 log10(1 / MSE), per image",
        "mse perceptual+mse",
    ]


def test_headline_ranks_first_on_metrics_no_entry_trained_on_and_says_which():
    summary = crafted_summary(
        {"mse": (20, 0.95), "l1": (25, 0.90), "baseline-mean-colour": (12, 0.5)},
        {"mse": "mse psnr", "l1": "l1"},
        noise_seed=1,
    )
    lines = headline(summary)
    assert lines[0] == "ranked on held-out metrics no entry trained on: FSIM"
    assert lines[1].startswith("FSIM: best is mse")
    assert lines[2].startswith("PSNR (trained on by mse: their wins here are expected): best is l1")


def test_headline_says_when_every_metric_is_some_entrys_own(marked):
    (summary, _), _ = marked
    assert headline(summary)[0] == (
        "every metric ranked here is some entry's own loss: add one no entry trains on to [metrics] compute "
        "(e.g. fsim, gmsd, haarpsi) for a neutral ranking"
    )


def test_headline_has_no_note_on_neutrality_when_no_entry_trained_on_any_ranked_metric():
    summary = crafted_summary({"a": (25, 0.9), "b": (20, 0.8), "baseline-mean-colour": (12, 0.5)}, {}, noise_seed=1)
    lines = headline(summary)
    assert lines[:2] == [
        "PSNR: best is a (ahead of every other entry beyond noise)",
        "FSIM: best is a (ahead of every other entry beyond noise)",
    ]


def test_headline_of_a_summary_read_back_from_its_csv_is_the_one_printed(tmp_path):
    summary = crafted_summary(
        {"mse": (25, 0.9), "robust": (20, 0.8), "baseline-mean-colour": (12, 0.5)}, {"mse": "mse psnr"}, noise_seed=1
    )
    summary.to_csv(tmp_path / "summary.csv", index=False)
    read_back = pd.read_csv(tmp_path / "summary.csv")
    assert read_back["trained_on"].isna().any()  # an entry trained on no metric is an empty cell in the file
    assert headline(read_back) == headline(summary)
    assert headline(summary.drop(columns="kind")) == []  # a table without the kind column cannot say who trained


def test_headline_names_every_entry_trained_on_a_metric():
    summary = crafted_summary(
        {"mse": (25, 0.9), "perceptual+mse": (22, 0.8), "l1": (20, 0.85), "baseline-mean-colour": (12, 0.5)},
        {"mse": "mse psnr", "perceptual+mse": "mse psnr"},
        noise_seed=1,
    )
    assert headline(summary)[2] == (
        "PSNR (trained on by mse, perceptual+mse: their wins here are expected): best is mse (ahead of every other "
        "entry beyond noise)"
    )


def test_the_best_trained_entry_is_named_even_where_a_baseline_scores_higher():
    summary = crafted_summary({"mse": (20, 0.9), "l1": (18, 0.8), "baseline-bicubic": (30, 0.95)}, {}, noise_seed=2)
    assert headline(summary) == [
        "did not learn (held-out PSNR not 1 dB above bicubic, 30.00 dB, nor significantly better than it on its own "
        "measure): mse, l1",
        "held-out PSNR of the baselines: bicubic 30.00 dB, best trained entry mse 20.00 dB",
    ]


@pytest.fixture
def three_entries():
    return crafted_summary(
        {"mse": (25, 0.9), "b": (22, 0.8), "c": (20, 0.85), "baseline-mean-colour": (12, 0.5)},
        {"mse": "mse psnr"},
        noise_seed=1,
    )


NEUTRAL_LINES = [
    "ranked on held-out metrics no entry trained on: FSIM",
    "FSIM: best is mse (ahead of every other entry beyond noise)",
    "PSNR (trained on by mse: their wins here are expected): best is mse (ahead of every other entry beyond noise)",
]


def test_headline_names_each_entry_with_the_own_measures_it_did_not_optimise_or_learned(three_entries):
    summary = three_entries.set_index("entry")
    summary.loc[["b", "c"], "own_measure_reference"] = "mse"
    summary.loc["b", "did_not_optimise"] = "l1 ms_ssim"
    summary.loc["c", "did_not_optimise"] = "ssim"
    summary.loc["c", "learned_on_own_measure"] = "ssim l1"
    summary.loc["b", "learned"] = np.nan  # unknown (its trainings failed): neither learned nor did not learn
    assert headline(summary.reset_index()) == NEUTRAL_LINES + [
        "did not optimise its own measure (significantly worse on it than mse, which did not train on it): "
        "b on l1, MS-SSIM, c on SSIM",
        "learned its own measure but not PSNR (held-out PSNR not 1 dB above mean-colour; ranked): c on SSIM, L1",
        "held-out PSNR of the baselines: mean-colour 12.00 dB, best trained entry mse 25.00 dB",
    ]


def test_headline_of_a_summary_without_the_later_verdict_columns_says_what_it_can(three_entries):
    baselines = "held-out PSNR of the baselines: mean-colour 12.00 dB, best trained entry mse 25.00 dB"
    assert headline(three_entries.drop(columns=["did_not_optimise", "learned_on_own_measure"])) == NEUTRAL_LINES + [
        baselines
    ]
    assert headline(three_entries.drop(columns="learned")) == NEUTRAL_LINES


def test_trained_on_covers_the_new_measures():
    entry = lambda *losses: Entry("e", tuple(Term(loss, 1.0, {}, loss) for loss in losses))
    assert trained_on(entry("fsim", "mse")) == "fsim mse psnr"
    assert trained_on(entry("dists")) == "dists" and trained_on(entry("nlpd")) == "nlpd"
    assert trained_on(entry("robust")) == "" and trained_on(entry("robust_adaptive")) == ""


# --- a loss that learns ---------------------------------------------------------------------------------------


def test_adaptive_robust_loss_learns_its_shape_and_scale_with_the_model(tmp_path):
    suite = suite_with(
        entries='[[entry]]\nname = "adaptive"\nloss = "robust_adaptive"\n'
        "[data]\nresolution = 16\n[model]\nwidth = 16\nlatent_dim = 64\n"
        "[train]\nsteps = 30\nbatch_size = 4\nlr = 1e-2\nlog_every = 10\neval_every = 0\n",
        tmp=tmp_path,
    )
    (spec,) = make_plan(suite, "none")
    generator = torch.Generator().manual_seed(0)
    photos = tuple(torch.rand(3, 40, 40, generator=generator) for _ in range(2))
    images = ImageSet(
        train=photos,
        eval=torch.rand(2, 3, 16, 16, generator=generator),
        train_names=("a", "b"),
        eval_names=("c@0,0", "c@0,1"),
        eval_photos=("c",),
        images_sha256="",
    )
    loss = WeightedSum(["robust_adaptive"], [1.0], [build_loss("robust_adaptive", {}, LossContext(16))])
    before = [p.detach().clone() for p in loss.parameters()]
    model = build_model("autoencoder", {"latent_dim": 64, "width": 16}, ModelContext(16, 3, "autoencode"), 0)
    result = train(spec, model, loss, images, torch.device("cpu"), show_progress=False)
    # The copy that trained learned its shape and scale (Adam moves each by about lr per step)...
    trained = result.loss.terms[0]
    assert abs(trained.alpha().item() - 1.0) > 1e-3 and abs(trained.scale().item() - 0.03) > 1e-4
    assert result.loss.learned.startswith("robust_adaptive: alpha=")
    # ...and the suite's loss keeps its initial values for the next run.
    assert all(torch.equal(a, b) for a, b in zip(before, loss.parameters()))
