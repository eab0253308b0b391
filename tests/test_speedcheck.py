"""The speed gate's statistics (against hand-computed values), the interleaved A/B gate between two git
revisions, and checks of two speed tables. Nothing here asserts on how long anything took."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench
from bench.errors import BenchInputError
from bench.speed.check import baseline_commit, check_tables, load_speed, save_baseline
from bench.speed.gate import GateSettings, extract_revision, run_gate
from bench.speed.stats import compare_samples, format_verdicts, ratio_interval
from bench.config.suite import load_suite


# --- statistics -------------------------------------------------------------------------------------------


def test_mann_whitney_p_value_matches_the_exact_hand_count():
    # Candidate all above baseline, 3 + 3 samples: U = 9, the most extreme of C(6, 3) = 20 equally likely
    # rank splits, so the exact one-sided p is 1/20. One sample swapped (U = 8): 2/20.
    assert compare_samples([1, 2, 3], [4, 5, 6])["p_slower"] == pytest.approx(1 / 20)
    assert compare_samples([1, 2, 4], [3, 5, 6])["p_slower"] == pytest.approx(2 / 20)
    assert compare_samples([1, 2, 3], [4, 5, 6])["p_faster"] == pytest.approx(1.0)


def test_ratio_interval_is_the_hodges_lehmann_interval_counted_by_hand():
    # 2 x 2 samples give 4 log-ratios; with n*m = 4, k = floor(2 - 1.96 * sqrt(4 * 5 / 12)) < 0 -> 0, so the
    # 95% interval is the whole range of pairwise ratios: min 3/2, max 8/1... here (4/2, 8/1).
    low, high = ratio_interval(np.array([1.0, 2.0]), np.array([4.0, 8.0]))
    assert (low, high) == pytest.approx((2.0, 8.0))
    # 10 + 10 identical-shape samples shifted by exactly 2x: every pairwise log-ratio is centred on log 2.
    base = np.linspace(1.0, 1.5, 10)
    low, high = ratio_interval(base, 2 * base)
    assert low < 2 < high and high / low < 1.6


def test_twice_as_slow_is_slower_and_a_small_or_noisy_change_is_not():
    rng = np.random.default_rng(0)
    base = rng.lognormal(0, 0.05, 15)
    slower = compare_samples(base, 2 * rng.lognormal(0, 0.05, 15))
    assert slower["verdict"] == "SLOWER" and slower["ratio"] == pytest.approx(2, rel=0.1)
    assert slower["ratio_ci_low"] < 2 < slower["ratio_ci_high"] or slower["ratio_ci_low"] > 1.5
    # significant but small: 10% is within the minimum factor
    small = compare_samples(base, 1.1 * rng.lognormal(0, 0.01, 15))
    assert small["p_slower"] < 0.01 and small["verdict"] == "ok"
    # large but not significant: two samples a side cannot reach alpha
    assert compare_samples([1.0, 1.1], [2.0, 2.2])["verdict"] == "ok"
    assert compare_samples(2 * base, base)["verdict"] == "faster"


def test_one_sided_entries_are_new_or_missing():
    assert compare_samples([], [1.0, 2.0])["verdict"] == "new"
    assert compare_samples([1.0, 2.0], [])["verdict"] == "missing"
    with pytest.raises(ValueError, match="finite and positive"):
        compare_samples([1.0, float("nan")], [1.0, 2.0])


# --- the interleaved gate between two revisions -----------------------------------------------------------

GATE_SUITE = """
name = "gate"
[timing]
resolution = 32
batch_size = 1
threads = 1
[[entry]]
name = "ssim"
loss = "ssim"
win_size = 7
[[entry]]
name = "l1"
loss = "l1"
"""
L1_AS_IS = '"l1", "mean absolute error"'  # the l1 loss's registration, renamed in the baseline commit
SSIM_AS_IS = "    return PixelLoss(ssim_loss, **params)\n"
SSIM_TWICE = "    return PixelLoss(lambda x, y, **p: (ssim_loss(x, y, **p) + ssim_loss(x, y, **p)) / 2, **params)\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def revisions(tmp_path_factory):
    """A repository of this bench package in three commits: without the l1 loss, as it is, SSIM doing twice
    the work. Returns the repository and the three commits."""
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(Path(bench.__file__).parent, repo / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    pixel, structural = (repo / "bench" / "losses" / name for name in ("pixel.py", "structural.py"))
    pixel_source, structural_source = pixel.read_text(), structural.read_text()
    assert L1_AS_IS in pixel_source and SSIM_AS_IS in structural_source
    git(repo, "init", "-q")
    commits = []
    for pixel_text, structural_text, message in (
        (pixel_source.replace(L1_AS_IS, L1_AS_IS.replace('"l1"', '"l1_renamed"')), structural_source, "no l1"),
        (pixel_source, structural_source, "as it is"),
        (pixel_source, structural_source.replace(SSIM_AS_IS, SSIM_TWICE), "ssim twice"),
    ):
        pixel.write_text(pixel_text)
        structural.write_text(structural_text)
        git(repo, "add", "bench")
        git(repo, "commit", "-q", "-m", message)
        commits.append(git(repo, "rev-parse", "HEAD"))
    return repo, *commits


def gate(repo, baseline, candidate, tmp_path, **settings):
    suite_file = tmp_path / "gate.toml"
    suite_file.write_text(GATE_SUITE)
    settings = GateSettings(**{"rounds": 30, "target_ms": 40, "processes": 2, **settings})
    return run_gate(
        load_suite(suite_file),
        baseline,
        candidate_ref=candidate,
        settings=settings,
        repo=repo,
        log_dir=tmp_path,
        log=lambda line: None,
    )


def test_gate_flags_a_doubled_loss_and_names_it(revisions, tmp_path):
    repo, _, as_is, doubled = revisions
    verdicts, samples = gate(repo, as_is, doubled, tmp_path)
    verdict = verdicts.set_index("entry")
    assert verdict.loc["ssim", "verdict"] == "SLOWER", format_verdicts(verdicts)
    assert verdict.loc["ssim", "ratio"] > 1.5 and verdict.loc["ssim", "p_slower"] < 0.01
    assert verdict.loc["l1", "verdict"] == "ok", format_verdicts(verdicts)
    assert (verdicts["baseline_commit"] == as_is).all() and (verdicts["candidate_commit"] == doubled).all()
    # both sides, both processes of each, every round
    assert samples.groupby(["entry", "side"]).size().eq(30).all() and set(samples["process"]) == {0, 1}


def test_gate_passes_unchanged_code_measured_twice(revisions, tmp_path):
    repo, _, as_is, _ = revisions
    verdicts, _ = gate(repo, as_is, as_is, tmp_path)
    assert (verdicts["verdict"] == "ok").all(), format_verdicts(verdicts)


def test_a_loss_the_baseline_lacks_is_new_and_the_running_code_is_the_default_candidate(revisions, tmp_path):
    repo, without_l1, *_ = revisions
    verdicts, samples = gate(repo, without_l1, None, tmp_path, rounds=2, target_ms=1, processes=1)
    assert verdicts.set_index("entry")["verdict"].to_dict() == {"ssim": "ok", "l1": "new"}
    assert (verdicts["candidate_commit"] == "running code").all() and set(samples["entry"]) == {"ssim"}


def test_unknown_revision_is_an_input_error(revisions, tmp_path):
    repo, *_ = revisions
    with pytest.raises(BenchInputError, match="not in the history") as error:
        extract_revision("no-such-ref", repo, tmp_path / "x")
    assert "--unshallow" in error.value.fix


# --- two speed tables -------------------------------------------------------------------------------------


def table(times: dict, *, resolution=64, device="cpu"):
    """A hand-made speed table: each entry's repeats are ``times[entry]`` x (1.00, 1.01, ..., 1.19)."""
    repeats = np.linspace(1.0, 1.19, 20)
    return pd.DataFrame(
        [
            dict(
                entry=entry,
                variant="fp32",
                phase=phase,
                min_ms=ms,
                calibration_min_ms=10.0,
                median_ms=1.1 * ms,
                calibration_ms=11.0,
                batch_size=2,
                resolution=resolution,
                device=device,
                device_name="test cpu",
                threads=1,
                torch_version="x",
                samples_ms=" ".join(f"{ms * r:.6g}" for r in repeats),
            )
            for entry, ms in times.items()
            for phase in ("forward", "backward", "total")
        ]
    )


def test_two_tables_pass_when_equal_and_fail_on_the_slower_entry():
    table_ok, passed = check_tables(table({"mse": 1.0, "ssim": 5.0}), table({"mse": 1.0, "ssim": 5.0}))
    assert passed and (table_ok["verdict"] == "ok").all()
    verdicts, passed = check_tables(table({"mse": 2.0, "ssim": 5.0}), table({"mse": 1.0, "ssim": 5.0}))
    assert not passed and verdicts.set_index("entry")["verdict"].to_dict() == {"mse": "SLOWER", "ssim": "ok"}
    assert verdicts.set_index("entry").loc["mse", "ratio"] == pytest.approx(2.0)
    lenient, passed = check_tables(table({"mse": 2.0}), table({"mse": 1.0}), min_factor=2.5)
    assert passed


def test_one_sided_entries_are_reported_but_do_not_fail():
    verdicts, passed = check_tables(table({"mse": 1.0, "added": 9.0}), table({"mse": 1.0, "gone": 1.0}))
    assert passed
    assert verdicts.set_index("entry")["verdict"].to_dict() == {"mse": "ok", "gone": "missing", "added": "new"}
    text = format_verdicts(verdicts)
    assert "1.000x" in text and "0 SLOWER" in text and "1 new" in text and "1 missing" in text


def test_run_folder_and_csv_path_are_both_accepted(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    table({"mse": 1.0}).to_csv(run / "speed.csv", index=False)
    for source in (run, run / "speed.csv", str(run)):
        assert check_tables(source, table({"mse": 1.0}))[1]
    assert len(load_speed(run)) == 3


def test_incomparable_or_absent_inputs_are_input_errors(tmp_path):
    with pytest.raises(BenchInputError, match="resolution 64, the candidate with 128"):
        check_tables(table({"mse": 1.0}, resolution=128), table({"mse": 1.0}))
    with pytest.raises(BenchInputError, match="device_type cpu, the candidate with cuda"):
        check_tables(table({"mse": 1.0}, device="cuda:0"), table({"mse": 1.0}))
    with pytest.raises(BenchInputError, match="no speed table"):
        check_tables(tmp_path / "no-run", table({"mse": 1.0}))
    with pytest.raises(BenchInputError, match="no per-repeat times"):
        check_tables(table({"mse": 1.0}).assign(samples_ms=""), table({"mse": 1.0}))


def test_baseline_record_holds_the_commit_and_the_times(tmp_path):
    path = tmp_path / "baseline.json"
    save_baseline(table({"mse": 5.0, "ssim": 20.0}), path, suite="smoke")
    saved = json.loads(path.read_text())
    assert [(e["entry"], e["ratio"]) for e in saved["entries"]] == [("mse", 0.5), ("ssim", 2.0)]
    assert (saved["device"], saved["threads"], saved["batch_size"], saved["resolution"]) == ("cpu", 1, 2, 64)
    head = subprocess.run(
        ["git", "-C", str(Path(bench.__file__).parent), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert saved["commit"] == head and baseline_commit(path) == head
    assert [p.name for p in tmp_path.iterdir()] == ["baseline.json"]  # the temp file was renamed, not left
    path.write_text(json.dumps({**saved, "commit": None}))
    with pytest.raises(BenchInputError, match="names no commit"):
        baseline_commit(path)
