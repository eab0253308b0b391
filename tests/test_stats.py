"""Seed statistics against hand-computed values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.evaluate.stats import confidence_table, t_interval


def test_t_interval_matches_hand_computation():
    # values 1, 2, 3: mean 2, sd 1, n 3; t(0.975, 2) = 4.302652729749464
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729749464 * 1.0 / math.sqrt(3)
    assert mean == 2.0
    assert low == pytest.approx(2 - half, rel=1e-9) and high == pytest.approx(2 + half, rel=1e-9)


def test_t_interval_of_two_values_matches_hand_computation():
    # values 1, 3: mean 2, sd sqrt(2), n 2; t(0.975, 1) = 12.706204736174698, so the half-width is 12.7062...
    mean, low, high = t_interval([1.0, 3.0])
    assert mean == 2.0
    assert low == pytest.approx(2 - 12.706204736174698, rel=1e-9)
    assert high == pytest.approx(2 + 12.706204736174698, rel=1e-9)


def test_t_interval_needs_two_values():
    mean, low, high = t_interval([5.0])
    assert mean == 5.0 and math.isnan(low) and math.isnan(high)


def quality(rows):
    return pd.DataFrame([{"entry": e, "seed": s, "psnr": v, "status": "ok"} for e, s, v in rows])


def test_confidence_table_leaves_out_failed_runs():
    frame = quality([("a", 0, 10.0), ("a", 1, 12.0), ("a", 2, 11.0)])
    frame.loc[2, "status"] = "failed"
    (row,) = confidence_table(frame, ["psnr"]).to_dict("records")
    assert row["seeds"] == 2 and row["mean"] == 11.0


def test_time_to_quality_finds_the_first_evaluation_reaching_each_target():
    from bench.evaluate.stats import time_to_quality

    history = pd.DataFrame(
        {
            "entry": ["a"] * 4,
            "seed": [0] * 4,
            "step": [10, 20, 30, 40],
            "seconds": [1.0, 2.0, 3.0, 4.0],
            "eval_psnr": [15.0, float("nan"), 21.0, 25.0],
        }
    )
    table = time_to_quality(history, [20.0, 30.0]).set_index("psnr_target")
    assert table.loc[20.0, "step"] == 30 and table.loc[20.0, "seconds"] == 3.0
    assert math.isnan(table.loc[30.0, "step"])


def test_time_to_quality_per_entry_and_seed_in_the_plans_order():
    from bench.evaluate.stats import time_to_quality

    history = pd.DataFrame(
        {
            "entry": ["mse", "mse", "mse", "l1", "l1", "l1"],
            "seed": [1, 1, 1, 0, 0, 0],
            "step": [10, 20, 30, 10, 20, 30],
            "seconds": [1.0, 2.0, 3.0, 1.5, 2.5, 3.5],
            "eval_psnr": [19.0, 20.0, 22.0, 20.5, 20.0, 23.0],
            "eval_ssim": [float("nan"), 0.5, 0.6, float("nan"), 0.5, 0.6],  # not evaluated at every step
        }
    )
    expected = pd.DataFrame(
        {
            "entry": ["mse", "l1"],
            "seed": [1, 0],
            "psnr_target": [20.0, 20.0],
            "step": [20, 10],  # a score equal to the target reaches it
            "seconds": [2.0, 1.5],
        }
    )
    pd.testing.assert_frame_equal(time_to_quality(history, [20.0]), expected)
    assert time_to_quality(history, []).empty and time_to_quality(history.drop(columns="eval_psnr"), [20.0]).empty
