import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from bench.errors import BenchInputError
from bench.speedcheck import check_against_baseline, format_check_table, load_speed, save_baseline
from bench.timing import time_entries

# Small steps, many of them. With other jobs saturating both cores of a 2-vCPU runner, nearly every step of
# several ms was preempted, so even the min ratio drifted (2.5 -> 9); at 1 x 32 x 32 (under 1 ms a step)
# enough steps ran undisturbed to hold the ratio within 3% of its quiet value.
SIZE = dict(batch_size=1, resolution=32, warmup=2, min_repeats=60, min_time_s=0.2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # On small shared VMs an intra-op parallel region can stall for a whole scheduler tick (16 ms seen on
    # a 2-vCPU runner); one thread keeps the ratios steady.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ssim_like(reconstruction, target):
    """SSIM's windowed statistics: five 11x11 depthwise box filters and elementwise algebra."""
    window = torch.full((3, 1, 11, 11), 1 / 121)

    def local_mean(images):
        return F.conv2d(images, window, padding=5, groups=3)

    mean_x, mean_y = local_mean(reconstruction), local_mean(target)
    var_x = local_mean(reconstruction * reconstruction) - mean_x**2
    var_y = local_mean(target * target) - mean_y**2
    cov = local_mean(reconstruction * target) - mean_x * mean_y
    ssim = ((2 * mean_x * mean_y + 1e-4) * (2 * cov + 9e-4)) / ((mean_x**2 + mean_y**2 + 1e-4) * (var_x + var_y + 9e-4))
    return 1 - ssim.mean()


def ssim_like_twice(reconstruction, target):
    """The same loss doing twice the work: the regression the gate must catch."""
    return (ssim_like(reconstruction, target) + ssim_like(reconstruction, target)) / 2


def timed(loss):
    return time_entries([("ssim_like", loss)], **SIZE)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    path = tmp_path_factory.mktemp("speed") / "baseline.json"
    save_baseline(timed(ssim_like), path, suite="smoke")
    return path


def test_unmodified_loss_passes_every_time(baseline):
    for _ in range(2):
        table, passed = check_against_baseline(timed(ssim_like), baseline)
        assert passed, format_check_table(table)
        assert table["status"].tolist() == ["ok"]


def test_twice_the_work_fails(baseline):
    table, passed = check_against_baseline(timed(ssim_like_twice), baseline)
    assert not passed
    assert table["status"].tolist() == ["SLOWER"]
    assert table["slowdown"].iloc[0] > 1.5, format_check_table(table)


def rows(ratios: dict, *, resolution=64, device="cpu"):
    """A hand-made speed table: calibration 10 ms, each entry's total time = 10 ms x its ratio."""
    return pd.DataFrame([
        dict(entry=entry, variant="fp32", phase=phase, min_ms=10 * ratio, calibration_min_ms=10.0,
             median_ms=11 * ratio, calibration_ms=11.0, batch_size=2, resolution=resolution, device=device,
             device_name="test cpu", threads=1, torch_version="x")
        for entry, ratio in ratios.items() for phase in ("forward", "backward", "total")
    ])


def test_baseline_file_holds_ratios_and_metadata(tmp_path):
    path = tmp_path / "baseline.json"
    save_baseline(rows({"mse": 0.5, "ssim": 2.0}), path, suite="smoke")
    saved = json.loads(path.read_text())
    assert [(e["entry"], e["ratio"]) for e in saved["entries"]] == [("mse", 0.5), ("ssim", 2.0)]
    assert saved["entries"][0]["median_ms"] == 5.5 and saved["entries"][0]["calibration_min_ms"] == 10
    assert (saved["device"], saved["device_name"], saved["threads"]) == ("cpu", "test cpu", 1)
    assert (saved["batch_size"], saved["resolution"], saved["torch_version"]) == (2, 64, "x")
    assert saved["regenerate"] == f"python -m bench speed smoke --save-baseline {path}"
    assert saved["created"]
    assert [p.name for p in tmp_path.iterdir()] == ["baseline.json"]  # the temp file was renamed, not left


def test_one_sided_entries_are_reported_but_do_not_fail(tmp_path):
    save_baseline(rows({"mse": 1.0, "gone": 1.0, "ssim": 1.0}), tmp_path / "b.json")
    table, passed = check_against_baseline(rows({"mse": 1.2, "ssim": 0.5, "added": 9.0}), tmp_path / "b.json")
    assert passed
    statuses = dict(zip(table["entry"], table["status"]))
    assert statuses == {"mse": "ok", "ssim": "ok", "gone": "missing", "added": "new"}
    text = format_check_table(table)
    assert "1.20x" in text and "0 SLOWER" in text and "1 new" in text and "1 missing" in text


def test_slowdown_beyond_tolerance_fails(tmp_path):
    save_baseline(rows({"mse": 1.0, "ssim": 1.0}), tmp_path / "b.json")
    table, passed = check_against_baseline(rows({"mse": 1.3, "ssim": 1.0}), tmp_path / "b.json", tolerance=0.25)
    assert not passed and table.set_index("entry")["status"].to_dict() == {"mse": "SLOWER", "ssim": "ok"}
    assert check_against_baseline(rows({"mse": 1.3, "ssim": 1.0}), tmp_path / "b.json", tolerance=0.5)[1]


def test_run_folder_and_csv_path_are_both_accepted(tmp_path):
    save_baseline(rows({"mse": 1.0}), tmp_path / "b.json")
    run = tmp_path / "run"
    run.mkdir()
    rows({"mse": 1.0}).to_csv(run / "speed.csv", index=False)
    for source in (run, run / "speed.csv", str(run)):
        assert check_against_baseline(source, tmp_path / "b.json")[1]
    assert len(load_speed(run)) == 3


def test_incomparable_or_absent_inputs_are_input_errors(tmp_path):
    save_baseline(rows({"mse": 1.0}), tmp_path / "b.json")
    with pytest.raises(BenchInputError, match="resolution 64, this run with 128"):
        check_against_baseline(rows({"mse": 1.0}, resolution=128), tmp_path / "b.json")
    with pytest.raises(BenchInputError, match="device_type cpu, this run with cuda"):
        check_against_baseline(rows({"mse": 1.0}, device="cuda:0"), tmp_path / "b.json")
    with pytest.raises(BenchInputError, match="no speed baseline"):
        check_against_baseline(rows({"mse": 1.0}), tmp_path / "absent.json")
    with pytest.raises(BenchInputError, match="no speed table"):
        check_against_baseline(tmp_path / "no-run", tmp_path / "b.json")
    with pytest.raises(BenchInputError, match="lacks columns calibration_min_ms"):
        load_speed(rows({"mse": 1.0}).drop(columns="calibration_min_ms"))
