"""A learning rate per entry (train.lr as a list): every entry at every rate on a validation split carved from
the training photographs, each entry's rate chosen by its own loss on those crops alone, and every seed again at
the chosen rate beside the common one."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.config.suite import load_suite
from bench.errors import BenchInputError

# The small suite denoising, with the common rate 1e-3 and one other.
RATES = dict(name="rates", task="denoise", train={"steps": 12, "lr": [1e-3, 3e-2]}, metrics={"compute": ["mse"]})


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, small_suite):
    folder = tmp_path_factory.mktemp("rates")
    (folder / "suite.toml").write_text(small_suite(["mse", "l1"], **RATES))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["run", str(folder / "suite.toml"), "--out", str(folder), "--no-progress", "--no-timing"]) == 0
    (run,) = (folder / "rates").iterdir()
    return run


def env(folder):
    return json.loads((folder / "environment.json").read_text())


def test_rates_are_chosen_on_crops_of_training_photographs_that_the_search_did_not_train_on(run_folder):
    test, search = env(run_folder), env(run_folder / "rate_search")
    validation = set(search["eval_photos"])
    assert validation and validation <= set(test["train_photos"])
    assert not validation & set(test["eval_photos"])  # the evaluation crops play no part in the choice
    assert not validation & set(search["train_photos"])
    assert set(search["train_photos"]) == set(test["train_photos"]) - validation


def test_each_entry_takes_the_rate_with_its_lowest_validation_loss_and_every_seed_trains_at_it(run_folder):
    search = pd.read_csv(run_folder / "rate_search" / "quality.csv")
    search = search[search["kind"] == "trained"]
    assert sorted(search["entry"]) == ["l1 @ lr 0.001", "l1 @ lr 0.03", "mse @ lr 0.001", "mse @ lr 0.03"]
    mse_rows = search[search["entry"].str.startswith("mse")]
    assert np.allclose(mse_rows["eval_loss"], mse_rows["mse"], rtol=1e-5)  # its own loss on the validation crops
    chosen = pd.read_csv(run_folder / "rates.csv")
    for entry in ("mse", "l1"):
        rows = search[search["entry"].str.startswith(f"{entry} @")]
        expected = rows.loc[rows["eval_loss"].idxmin(), "lr"]
        assert chosen[(chosen["entry"] == entry) & chosen["chosen"]]["lr"].item() == expected
        best = pd.read_csv(run_folder / "best_rate" / "quality.csv").set_index("entry")
        common = pd.read_csv(run_folder / "quality.csv").set_index("entry")
        assert best.loc[entry, "lr"] == expected and common.loc[entry, "lr"] == 1e-3
    page = (run_folder / "report.html").read_text()
    assert page.count('class="num best"') == 2 and 'href="best_rate/report.html"' in page


def test_a_bad_list_of_rates_is_one_clear_error(tmp_path, small_suite):
    for rates in ([], [1e-3, -1e-3], [1e-3, 1e-3]):
        bad = {**RATES, "train": {**RATES["train"], "lr": rates}}
        (tmp_path / "bad.toml").write_text(small_suite(["mse", "l1"], **bad))
        with pytest.raises(BenchInputError, match="bad.toml: train.lr"):
            load_suite(tmp_path / "bad.toml")
