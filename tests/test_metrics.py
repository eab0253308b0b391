"""Evaluation metrics: independent references, clamping, and independence from the batch size."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim, ssim
from skimage.metrics import peak_signal_noise_ratio

from bench.losses.structural import most_levels
from bench.evaluate.metrics import QualityMetrics, ms_ssim_per_image, psnr


@pytest.fixture(scope="module")
def metrics():
    return QualityMetrics("alex", "random", torch.device("cpu"))


def pair(n=4, side=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, side, side, generator=generator)
    noisy = (target + 0.1 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    return noisy, target


def test_psnr_matches_skimage_per_image():
    x, y = pair()
    ours = psnr(x, y)
    for i in range(len(x)):
        expected = peak_signal_noise_ratio(
            y[i].numpy().astype(np.float64), x[i].numpy().astype(np.float64), data_range=1.0
        )
        assert ours[i].item() == pytest.approx(expected, abs=1e-4)


def test_psnr_of_hand_computed_case():
    target = torch.zeros(1, 3, 4, 4)
    reconstruction = torch.full_like(target, 0.1)  # mse 0.01 -> 20 dB
    assert psnr(reconstruction, target).item() == pytest.approx(20.0, abs=1e-5)


def test_metrics_clamp_out_of_range_inputs():
    target = torch.rand(1, 3, 16, 16)
    assert psnr(target + 5.0, target).item() == psnr(torch.ones_like(target), target).item()


def test_five_scale_ms_ssim_is_pytorch_msssims():
    x, y = pair(n=2, side=192)
    values, levels = ms_ssim_per_image(x, y)
    assert levels == 5
    assert torch.allclose(values, ms_ssim(x, y, data_range=1.0, size_average=False), atol=1e-6)


@pytest.mark.parametrize("side, levels", [(32, 2), (64, 3), (128, 4), (160, 4), (161, 5), (512, 5)])
def test_ms_ssim_levels_fit_the_image(side, levels):
    assert most_levels(side, 11) == levels


def test_every_metric_is_batch_size_independent(metrics):
    x, y = pair(n=4)
    batched = metrics(x, y)
    singles = [metrics(x[i : i + 1], y[i : i + 1]) for i in range(len(x))]
    for name in ("psnr", "ssim", "ms_ssim", "lpips", "l1", "mse"):
        mean_of_singles = sum(s[name] for s in singles) / len(singles)
        assert batched[name] == pytest.approx(mean_of_singles, rel=1e-5, abs=1e-7), name


def test_metrics_report_provenance_and_match_references(metrics):
    x, y = pair(n=2)
    values = metrics(x, y)
    assert values["lpips_weights"] == "random" and values["lpips_net"] == "alex" and values["ms_ssim_levels"] == 3
    assert values["ssim"] == pytest.approx(ssim(x, y, data_range=1.0).item(), abs=1e-6)
    assert values["mse"] == pytest.approx(torch.mean((x - y) ** 2).item(), rel=1e-6)
    assert values["lpips"] > 0


def test_lpips_is_nan_below_the_backbones_smallest_input(metrics):
    x, y = pair(n=1, side=16)
    assert math.isnan(metrics(x, y)["lpips"])
