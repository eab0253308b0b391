"""Rank stability within a run and ranking agreement between runs (bench.evaluate.stability), on crafted
histories and summaries whose answers are worked out by hand, and on a real run and `bench compare`."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.evaluate.stability import (
    COLUMNS,
    rank_stability,
    ranking_agreement,
    stability_lines,
    stability_summary,
    swapped_pairs,
)

# Held-out PSNR of four entries at steps 10..100: the final order is a > b > c > d; at step 50 (50%) b leads a, at
# step 70 (the last evaluation at or below 75%) b trails c, and from step 80 on the order is the final one.
TRAJECTORIES = {
    "a": [10, 11, 12, 13, 14, 17, 20, 26, 28, 30],
    "b": [9, 10, 11, 14, 15, 16, 19, 25, 27, 29],
    "c": [8, 9, 10, 11, 13, 15, 19.5, 24, 26, 28],
    "d": [7, 8, 9, 10, 12, 14, 18, 23, 25, 27],
}


def crafted_history(trajectories=TRAJECTORIES, seeds=(0,), offset=0.0) -> pd.DataFrame:
    rows = []
    for entry, values in trajectories.items():
        for seed in seeds:
            for index, value in enumerate(values):
                step = 10 * (index + 1)
                rows.append({"entry": entry, "seed": seed, "step": step, "loss": 1.0, "eval_psnr": value})
                # rows logged between evaluations carry no score
                rows.append({"entry": entry, "seed": seed, "step": step - 5, "loss": 1.0, "eval_psnr": math.nan})
    frame = pd.DataFrame(rows)
    frame.loc[frame["seed"] == 1, "eval_psnr"] += offset
    return frame


def test_finds_exactly_the_pairs_that_swapped():
    stability = rank_stability(crafted_history()).set_index("fraction")
    assert list(stability.index) == [0.5, 0.75]
    assert stability.loc[0.5, "step"] == 50 and stability.loc[0.75, "step"] == 70
    assert stability.loc[0.5, "swapped"] == "a > b"
    assert stability.loc[0.75, "swapped"] == "b > c"
    assert (stability["stable_since"] == 80).all() and (stability["final_step"] == 100).all()
    # one discordant pair of six: (5 - 1) / 6
    assert stability["kendall_tau"].tolist() == pytest.approx([4 / 6, 4 / 6])
    (line,) = stability_lines(rank_stability(crafted_history()))
    assert "b > c" in line and "stable since step 80 of 100" in line
    assert stability_summary(rank_stability(crafted_history())) == "PSNR: 1 pair(s) swapped after 75% (b > c)"


def test_a_stable_ranking_says_since_when_and_a_tie_is_no_swap():
    steady = {entry: values[:7] + [v + 100 for v in values[7:]] for entry, values in TRAJECTORIES.items()}
    steady["c"] = steady["c"][:6] + [19.0] + steady["c"][7:]  # ties b at step 70: no order, so no swap
    stability = rank_stability(crafted_history(steady))
    assert stability["swapped"].tolist() == ["a > b", ""]
    assert stability_summary(stability) == "PSNR stable since step 60 of 100"


def test_the_console_line_gives_every_metric_in_the_tables_order():
    stability = rank_stability(crafted_history())
    ssim = stability.assign(metric="ssim", swapped=["a > b", "a > b; c > d"])
    line = stability_summary(pd.concat([ssim, stability], ignore_index=True))
    assert line == "SSIM: 2 pair(s) swapped after 75% (a > b; c > d); PSNR: 1 pair(s) swapped after 75% (b > c)"


def test_one_sentence_per_metric_evaluated_in_the_historys_order():
    steady = {entry: values[:7] + [v + 100 for v in values[7:]] for entry, values in TRAJECTORIES.items()}
    steady["c"] = steady["c"][:6] + [19.0] + steady["c"][7:]
    ssim = crafted_history(steady).rename(columns={"eval_psnr": "eval_ssim"})
    history = ssim.merge(crafted_history(), on=["entry", "seed", "step", "loss"]).assign(eval_loss=1.0)  # no metric
    assert stability_lines(rank_stability(history)) == [
        "SSIM (held-out, during training): ranking stable since step 60 of 100 (Kendall's tau against the final "
        "ranking: 0.67 at 50%, 0.91 at 75%)",
        "PSNR (held-out, during training): these pairs swapped after 75% of the steps (step 70): b > c (Kendall's "
        "tau 0.67 against the final ranking; stable since step 80 of 100)",
    ]


def test_two_entries_and_two_evaluations_are_enough_and_a_checkpoint_before_the_first_is_skipped():
    history = crafted_history()
    two = history[history["entry"].isin(["a", "b"]) & history["step"].isin([50, 100])]
    assert rank_stability(two)["fraction"].tolist() == [0.5, 0.75]  # both at step 50
    alone = rank_stability(history[history["entry"] == "a"])
    assert alone.empty and list(alone.columns) == list(COLUMNS)  # rank_stability.csv keeps its header
    assert rank_stability(history[history["step"] == 100]).empty
    late = rank_stability(history[history["step"] >= 60])  # nothing evaluated by 50% of the steps
    assert late[["fraction", "step"]].values.tolist() == [[0.75, 70]]
    assert stability_summary(late) == "PSNR: 1 pair(s) swapped after 75% (b > c)" and len(stability_lines(late)) == 1
    one_entry_ssim = history.assign(eval_ssim=np.where(history["entry"] == "a", 0.5, np.nan))
    one_entry_ssim = one_entry_ssim[["entry", "seed", "step", "loss", "eval_ssim", "eval_psnr"]]
    assert rank_stability(one_entry_ssim)["metric"].tolist() == ["psnr", "psnr"]  # ssim skipped, psnr kept


def test_a_tie_at_the_end_orders_no_pair():
    final = pd.Series({"a": 20.0, "b": 20.0, "c": 19.0})
    earlier = pd.Series({"a": 18.0, "b": 19.0, "c": 21.0})
    assert swapped_pairs(earlier, final, higher_is_better=True) == [("a", "c"), ("b", "c")]


def test_scores_are_means_over_seeds():
    # seed 1 puts d ahead of everyone at step 50; the mean over seeds does too (a > b > c > d is reversed there)
    history = crafted_history(seeds=(0, 1))
    history.loc[(history["seed"] == 1) & (history["entry"] == "d") & (history["step"] == 50), "eval_psnr"] = 40
    stability = rank_stability(history).set_index("fraction")
    assert stability.loc[0.5, "swapped"] == "a > b; a > d; b > d; c > d"


def test_lower_is_better_metrics_rank_the_other_way():
    history = crafted_history().rename(columns={"eval_psnr": "eval_mse"})
    history["eval_mse"] = -history["eval_mse"]  # negated: the same order once lower is better
    stability = rank_stability(history).set_index("fraction")
    assert stability.loc[0.75, "swapped"] == "b > c"


def tau_b_by_hand(x: list[float], y: list[float]) -> float:
    concordant = discordant = ties_x = ties_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif dx * dy > 0:
            concordant += 1
        else:
            discordant += 1
    return (concordant - discordant) / math.sqrt(
        (concordant + discordant + ties_x) * (concordant + discordant + ties_y)
    )


def summary(scores: dict[str, float], best: dict[str, str]) -> pd.DataFrame:
    rows = [
        {"entry": entry, "kind": "trained", "psnr": value, "best_psnr": best.get(entry, "")}
        for entry, value in scores.items()
    ]
    rows.append({"entry": "baseline-mean-colour", "kind": "baseline", "psnr": 99.0, "best_psnr": ""})
    return pd.DataFrame(rows)


def test_agreement_is_kendalls_tau_b_with_ties_over_the_entries_in_both():
    short = {"a": 30.0, "b": 29.0, "c": 29.0, "d": 27.0, "e": 26.0, "only_short": 1.0}
    reference = {"e": 25.0, "d": 30.0, "c": 31.0, "b": 29.0, "a": 31.0}  # other row order, ties elsewhere
    agreement = ranking_agreement(
        summary(short, {"a": "best"}), summary(reference, {"a": "tied", "c": "tied"}), ["psnr", "ssim"]
    )
    (row,) = agreement.to_dict("records")  # ssim: scored by neither
    common = ["a", "b", "c", "d", "e"]
    expected = tau_b_by_hand([short[e] for e in common], [reference[e] for e in common])
    assert row["kendall_tau"] == pytest.approx(expected) and row["entries"] == 5
    assert not math.isclose(expected, 1.0)
    assert (row["best_a"], row["best_b"], row["same_best"]) == ("a", "a, c", False)
    # d passes b in the reference; ties (b and c in the short run, a and c in the reference) order nothing
    assert row["flipped"] == "d > b" and row["flipped_beyond_noise"] == ""  # no pairwise verdicts given
    for verdict, beyond_noise in (("a better", "d > b"), ("tie (within noise)", "")):
        pairwise = pd.DataFrame(  # b and d's own verdict on PSNR decides, not another pair's nor another metric's
            {
                "metric": ["psnr", "ssim", "psnr"],
                "a": ["a", "b", "b"],
                "b": ["b", "d", "d"],
                "verdict": ["a better", "b better", verdict],
            }
        )
        agreement = ranking_agreement(summary(short, {}), summary(reference, {}), ["psnr"], pairwise)
        assert agreement["flipped_beyond_noise"].tolist() == [beyond_noise]


def test_agreement_skips_a_metric_either_run_lacks_and_needs_two_entries_for_a_tau():
    a, b = summary({"x": 30.0, "y": 29.0}, {}), summary({"x": 31.0, "y": 28.0}, {})
    agreement = ranking_agreement(a.assign(ssim=0.5), b, ["ssim", "psnr"])
    assert agreement["metric"].tolist() == ["psnr"] and agreement["kendall_tau"].tolist() == [1.0]
    alone = ranking_agreement(summary({"x": 30.0}, {}), summary({"x": 31.0, "z": 1.0}, {}), ["psnr"])
    assert alone["entries"].tolist() == [1] and math.isnan(alone["kendall_tau"].iloc[0])


def test_agreement_lists_every_flip_and_best_entry_in_both_runs_only():
    a = summary({"x": 30.0, "y": 29.8, "z": 29.0, "only_a": 35.0}, {"x": "tied", "y": "tied", "only_a": "best"})
    b = summary({"z": 31.0, "y": 30.5, "x": 30.0}, {}).drop(columns="best_psnr")  # a run without verdict marks
    (row,) = ranking_agreement(a, b, ["psnr"]).to_dict("records")
    assert row["flipped"] == "y > x; z > x; z > y" and row["best_a"] == "x, y" and row["best_b"] == ""
    pairwise = pd.DataFrame({"metric": "psnr", "a": ["x", "x", "y"], "b": ["y", "z", "z"], "verdict": "z better"})
    beyond = ranking_agreement(a, b, ["psnr"], pairwise)["flipped_beyond_noise"].iloc[0]
    assert beyond == "y > x; z > x; z > y"
    nothing_shared = ranking_agreement(a, b, ["ssim"])
    assert nothing_shared.empty and list(nothing_shared.columns) == list(ranking_agreement(a, b, ["psnr"]).columns)


def test_agreement_of_a_run_with_itself(tmp_path, tiny_suite, capsys):
    suite = tmp_path / "suite.toml"
    entries = ["mse", "l1", {"name": "ssim", "loss": "ssim", "win_size": 7}]
    suite.write_text(tiny_suite(entries, train={"steps": 8, "schedule": "cosine"}, metrics={"compute": ["ssim"]}))
    assert main(["run", str(suite), "--out", str(tmp_path), "--no-progress", "--no-timing"]) == 0
    (run,) = (tmp_path / "tiny").iterdir()
    run_output = capsys.readouterr().out
    assert "ranking during training (held-out, mean over seeds): PSNR" in run_output
    stability = pd.read_csv(run / "rank_stability.csv")
    assert set(stability["metric"]) == {"psnr", "ssim"} and (stability["entries"] == 3).all()
    report = (run / "report.html").read_text()
    assert "Ranking during training" in report and "cosine decay to 0" in report
    assert main(["compare", str(run), str(run), "--out", str(tmp_path / "cmp.csv")]) == 0
    ranking = pd.read_csv(tmp_path / "cmp_ranking.csv")
    assert set(ranking["metric"]) >= {"psnr", "ssim"} and (ranking["kendall_tau"] == 1.0).all()
    assert "ranking (trained entries in both runs" in capsys.readouterr().out
