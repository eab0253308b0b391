"""The CUDA tier: the GPU-only code paths, run on a real GPU. ``python -m pytest -m cuda`` runs it;
without a GPU every test is skipped with the reason. ``-m "cuda and not long"`` leaves out the all_losses run.

What it pins: CUDA-event timing agrees with torch.utils.benchmark on a compute-bound kernel; the L2 flush
changes nothing but cache state; every timing variant runs for every registered loss; the CUDA allocator's
peak memory is plausible; ``--deterministic`` runs are bit-identical; Ray workers share one GPU; the smoke
and all_losses suites finish on one GPU; the fused CUDA SSIM references compute the same SSIM.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from bench.cli import main
from bench.losses import LossContext, build_loss, get_loss_info, loss_names
from bench.config.suite import load_suite, suite_for_device
from bench.speed.timing import VARIANTS, scalar_loss, time_loss
from test_reliability import TIMING_COLUMNS
from test_run import REPO, SMOKE

_REASON = (
    f"needs a CUDA GPU: torch.cuda.is_available() is False here (torch {torch.__version__}, "
    f"{'built with CUDA ' + torch.version.cuda if torch.version.cuda else 'a CPU-only build'})"
)
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason=_REASON)]

ALL_LOSSES = REPO / "suites" / "all_losses.toml"
CUDA = "cuda"
FAST = dict(warmup=1, min_repeats=3, min_time_s=0.0)
# all_losses.toml's timing size: `bench speed suites/all_losses.toml --variants ...,compile` after this tier
# then finds its compiled graphs in torch.compile's on-disk cache instead of compiling every loss again.
TIMING = dict(batch_size=4, resolution=512)


@functools.lru_cache(maxsize=None)
def build(name: str, resolution: int) -> torch.nn.Module:
    """A registered loss at its defaults, offline (random weights for the pretrained networks), on the GPU."""
    params = {"weights": "random"} if "weights" in get_loss_info(name).defaults else {}
    return build_loss(name, params, LossContext(resolution)).to(CUDA)


def subprocess_env() -> dict[str, str]:
    # The checkout first on the path, so the subprocess imports this tree (also where it is not pip-installed).
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m bench ARGS`` in a fresh process (global switches such as --deterministic stay in it)."""
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def only_run_folder(root: Path, suite: str) -> Path:
    (folder,) = (root / suite).iterdir()
    return folder


@contextlib.contextmanager
def cudnn_deterministic():
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def test_cuda_event_timing_agrees_with_torch_utils_benchmark():
    from torch.utils.benchmark import Timer

    from bench.speed.timing import _cuda_backend, _set_tf32

    weight = torch.randn(4096, 4096, device=CUDA, generator=torch.Generator(CUDA).manual_seed(0)) / 64

    def matmul_loss(reconstruction, target):  # ~200 GFLOP fwd+bwd in fp32: milliseconds, launches negligible
        return (reconstruction.reshape(-1, 4096) @ weight).square().mean()

    reconstruction = torch.rand(4, 3, 1024, 1024, device=CUDA, requires_grad=True)
    timer = Timer(
        "reconstruction.grad = None; loss(reconstruction, target).backward()",
        globals=dict(reconstruction=reconstruction, target=torch.rand_like(reconstruction), loss=matmul_loss),
    )
    ratios = []
    for _ in range(3):  # a bias in the engine fails every attempt; a clock excursion rarely spoils three
        ours, theirs = [], []
        for _ in range(3):  # alternating, so clock and thermal drift hit both alike
            records = time_loss(
                matmul_loss,
                batch_size=4,
                resolution=1024,
                device=CUDA,
                variant="fp32",
                warmup=3,
                min_repeats=20,
                min_time_s=0.2,
            )
            ours.append(next(r for r in records if r["phase"] == "total")["median_ms"])
            with _cuda_backend():
                _set_tf32(False)  # as the engine's fp32 variant: IEEE fp32 matmuls
                theirs.append(timer.blocked_autorange(min_run_time=0.3).median * 1e3)
        ratios.append(statistics.median(ours) / statistics.median(theirs))
        if abs(ratios[-1] - 1) <= 0.05:
            return
    pytest.fail(f"CUDA-event median / torch.utils.benchmark median = {ratios}, never within 5%")


@pytest.mark.parametrize("name", ["mse", "ssim", "perceptual"])
def test_l2_flush_changes_nothing_but_cache_state(name):
    from bench.speed.timing import _L2_FLUSH_BYTES, _cuda_backend, _inputs, _make_step, _set_tf32

    l2_bytes = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0)
    assert _L2_FLUSH_BYTES >= 2 * l2_bytes, f"flush buffer {_L2_FLUSH_BYTES} B does not cover L2 ({l2_bytes} B)"
    loss = build(name, 256)
    reconstruction, target = _inputs(batch_size=2, resolution=256, device=torch.device(CUDA), seed=0)
    originals = reconstruction.detach().clone(), target.clone()
    values: list[torch.Tensor] = []

    def recorded(x, y):
        value = loss(x, y)
        values.append(scalar_loss(value).detach().clone())
        return value

    flush = torch.full((_L2_FLUSH_BYTES // 4,), 7, dtype=torch.int32, device=CUDA)
    grads = []
    # The CUDA step turns TF32 off (fp32 variant); the step without a flush buffer does not, so TF32 is off for
    # both, and deterministic cuDNN: only the flush differs. _cuda_backend restores the TF32 switches after (a
    # leaked new-API setting makes later reads of the legacy allow_tf32 flags raise).
    with _cuda_backend(), cudnn_deterministic():
        _set_tf32(False)
        for buffer in (None, flush, None, flush):
            _make_step(recorded, "fp32", (reconstruction, target), buffer)()
            grads.append(reconstruction.grad.clone())
    assert all(torch.equal(values[0], value) for value in values), values
    assert all(torch.equal(grads[0], grad) for grad in grads)
    assert torch.equal(reconstruction.detach(), originals[0]) and torch.equal(target, originals[1])
    assert int(flush.count_nonzero()) == 0  # the flush wrote its own buffer, and only that


def test_cuda_peak_memory_is_plausible():
    image_mb = 4 * 3 * 512 * 512 * 4 / 2**20  # one float32 batch: 12 MiB
    records = time_loss(build("mse", 512), batch_size=4, resolution=512, device=CUDA, **FAST)
    peak = records[0]["peak_mem_mb"]
    assert {r["memory_method"] for r in records} == {"cuda_max_allocated"}
    # The step leaves the input's gradient (one batch) behind and needs at most a few batch-sized temporaries.
    assert image_mb <= peak <= 5 * image_mb, f"peak {peak:.1f} MiB for {image_mb:.0f} MiB images"


def test_deterministic_runs_give_bit_identical_tables(tmp_path, tiny_suite):
    suite = tmp_path / "tiny.toml"
    random = {"weights": "random"}
    suite.write_text(
        tiny_suite(
            [
                "mse",
                {"name": "ssim", "loss": "ssim", "win_size": 7},
                {"name": "perceptual", "loss": "perceptual", **random},
                {"name": "lpips", "loss": "lpips", **random},
            ],
            data={"resolution": 32, "scale": None, "images": 6, "eval_images": 2, "eval_crops": None},
            model={"latent_dim": 16, "width": None},
            train={"steps": 8, "eval_every": 4},
            timing=None,
            metrics={"lpips_weights": "random"},
        )
    )
    folders = []
    for attempt in ("a", "b"):
        done = run_cli(
            "run",
            str(suite),
            "--device",
            CUDA,
            "--deterministic",
            "--no-timing",
            "--no-progress",
            "--no-store",  # both train: the test compares trainings
            "--out",
            str(tmp_path / attempt),
        )
        assert done.returncode == 0, done.stderr[-3000:]
        folders.append(only_run_folder(tmp_path / attempt, "tiny"))
    for table in ("quality", "history", "summary"):
        a, b = (pd.read_csv(folder / f"{table}.csv") for folder in folders)
        a, b = (frame.drop(columns=[c for c in frame if c in TIMING_COLUMNS or "seconds" in c]) for frame in (a, b))
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert (pd.read_csv(folders[0] / "quality.csv")["status"] == "ok").all()
    for png in sorted((folders[0] / "reconstructions").iterdir()):
        assert png.read_bytes() == (folders[1] / "reconstructions" / png.name).read_bytes(), png.name


def test_two_ray_workers_share_one_gpu(tmp_path):
    pytest.importorskip("ray", reason="Ray is the optional extra (pip install -e '.[distributed]'); not installed")
    done = run_cli(
        "run",
        str(SMOKE),
        "--device",
        CUDA,
        "--workers",
        "2",
        "--gpus",
        "0,0",
        "--no-timing",
        "--no-progress",
        "--out",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    folder = only_run_folder(tmp_path, "smoke")
    quality = pd.read_csv(folder / "quality.csv")
    assert (quality["status"] == "ok").all() and len(quality) == 4
    assert json.loads((folder / "environment.json").read_text())["device_type"] == "cuda"


def check_gpu_run(folder: Path, suite: Path) -> pd.DataFrame:
    env = json.loads((folder / "environment.json").read_text())
    assert env["device_type"] == "cuda" and env["device_name"] == torch.cuda.get_device_name(0)
    quality = pd.read_csv(folder / "quality.csv")
    failed = quality.reindex(columns=["entry", "status", "error"])[quality["status"] != "ok"]
    assert failed.empty, failed.to_string()
    settings = suite_for_device(load_suite(suite), "cuda")
    expected = sorted((entry.name, seed) for entry in settings.entries for seed in settings.seeds)
    trained = quality[quality["kind"] == "trained"]
    assert sorted(zip(trained["entry"], trained["seed"])) == expected, list(quality["entry"])
    assert quality["psnr"].map(math.isfinite).all()
    speed = pd.read_csv(folder / "speed.csv")
    assert (speed["memory_method"] == "cuda_max_allocated").all() and (speed["median_ms"] > 0).all()
    assert (folder / "report.html").is_file()
    return quality


def test_smoke_suite_on_one_gpu(tmp_path):
    assert main(["run", str(SMOKE), "--device", CUDA, "--out", str(tmp_path), "--no-progress"]) == 0
    check_gpu_run(only_run_folder(tmp_path, "smoke"), SMOKE)


@pytest.mark.long
def test_all_losses_suite_on_one_gpu(tmp_path):
    assert main(["run", str(ALL_LOSSES), "--device", CUDA, "--out", str(tmp_path), "--no-progress"]) == 0
    folder = only_run_folder(tmp_path, "all_losses")
    quality = check_gpu_run(folder, ALL_LOSSES)
    env = json.loads((folder / "environment.json").read_text())
    settings = suite_for_device(load_suite(ALL_LOSSES), "cuda")
    assert env["profile"] != "cpu" and env["train_resolution"] == settings.data.resolution
    assert (quality.loc[quality["kind"] == "trained", "resolution"] == settings.data.resolution).all()
    assert len(settings.seeds) >= 3
    summary = pd.read_csv(folder / "summary.csv").set_index("entry")
    pixel_entries = ["mse", "l1", "bce", "charbonnier", "huber", "ssim", "ms_ssim", "ms_ssim_l1", "l1+gradient"]
    assert summary.loc[pixel_entries, "learned"].all(), summary["learned"].to_string()
    assert (summary.loc[["mse", "l1"], "psnr"] >= summary.loc["baseline-mean-colour", "psnr"] + 5).all()


def ssim_same_padding(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM (data range 1) with the Gaussian window zero-padded to the image size, as the fused kernels."""
    taps = torch.exp(-((torch.arange(window, device=x.device) - window // 2) ** 2) / (2 * sigma**2))
    taps = taps / taps.sum()
    kernel = torch.outer(taps, taps).expand(x.shape[1], 1, window, window)
    blur = lambda t: F.conv2d(t, kernel, padding=window // 2, groups=x.shape[1])
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))).mean()


def test_fused_cuda_ssim_references_compute_ssim():
    from bench.speed.references import installed_references

    fused = [(label, loss) for label, loss in installed_references("ssim", CUDA) if label in ("fussim", "fused-ssim")]
    if not fused:
        pytest.skip("neither fussim nor fused-ssim is installed (or loadable) here")
    x, y = (torch.rand(2, 3, 256, 256, device=CUDA, generator=torch.Generator(CUDA).manual_seed(s)) for s in (1, 2))
    y = (0.7 * x + 0.3 * y).contiguous()  # correlated, so SSIM is far from 0
    expected = 1 - ssim_same_padding(x, y)
    for label, loss in fused:
        reconstruction = x.clone().requires_grad_()
        value = loss(reconstruction, y)
        value.backward()
        assert abs(float(value) - float(expected)) < 1e-4, (label, float(value), float(expected))
        assert torch.isfinite(reconstruction.grad).all() and reconstruction.grad.abs().sum() > 0, label


def check_variant_runs(name: str, variant: str) -> None:
    loss = build(name, TIMING["resolution"])  # variants convert or compile a copy, so one build serves all
    records = time_loss(loss, **TIMING, device=CUDA, variant=variant, **FAST)
    assert [r["phase"] for r in records] == ["forward", "backward", "total"]
    for record in records:
        assert math.isfinite(record["median_ms"]) and record["median_ms"] > 0, record
        assert record["memory_method"] == "cuda_max_allocated" and record["peak_mem_mb"] > 0
        assert record["device_name"] == torch.cuda.get_device_name(0) and record["cudnn_benchmark"] is True
        assert record["tf32"] is (variant == "tf32")
        assert (record["compile_s"] > 0) is (variant == "compile")
    if variant != "compile":  # the value the timed step computes is a number in this variant
        shape = (TIMING["batch_size"], 3, TIMING["resolution"], TIMING["resolution"])
        x, y = (torch.rand(shape, device=CUDA, generator=torch.Generator(CUDA).manual_seed(s)) for s in (1, 2))
        if variant == "channels_last":
            x, y = (t.contiguous(memory_format=torch.channels_last) for t in (x, y))
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=variant == "bf16"):
            value = scalar_loss(loss(x.requires_grad_(), y))
        value.float().backward()
        assert torch.isfinite(value).all() and torch.isfinite(x.grad).all(), (name, variant, value)


@pytest.mark.parametrize("variant", [variant for variant in VARIANTS if variant != "compile"])
@pytest.mark.parametrize("name", loss_names())
def test_every_eager_variant_runs_for_every_loss(name, variant):
    check_variant_runs(name, variant)


@pytest.mark.parametrize("name", loss_names())
def test_compile_variant_runs_for_every_loss(name):
    """Last in the file: compiling every loss is the tier's longest part."""
    check_variant_runs(name, "compile")
