"""Other public implementations of LossBench's losses, timed beside LossBench's own for context.

Only installed packages are used, each at LossBench's default settings (11-tap Gaussian window of sigma 1.5,
data range 1, no downsampling: piq's SSIM downsamples large images by default, so that is turned off). Each
callable returns a loss to minimise; scale differences (kornia's (1 - SSIM) / 2) do not change the cost.
"""

from __future__ import annotations

import importlib.util
from typing import Callable

import pandas as pd
import torch

from bench.losses import LossContext, build_loss
from bench.speed import timing_threads
from bench.suite import Suite
from bench.timing import time_entries

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _pytorch_msssim(kind: str) -> LossFn:
    import pytorch_msssim

    index = pytorch_msssim.ssim if kind == "ssim" else pytorch_msssim.ms_ssim
    return lambda x, y: 1 - index(x, y, data_range=1.0)


def _piq(kind: str) -> LossFn:
    import piq

    if kind == "ssim":
        return lambda x, y: 1 - piq.ssim(x, y, data_range=1.0, downsample=False)
    return lambda x, y: 1 - piq.multi_scale_ssim(x, y, data_range=1.0)


def _kornia(kind: str) -> LossFn:
    import kornia

    return lambda x, y: kornia.losses.ssim_loss(x, y, window_size=11)


def _torchmetrics(kind: str) -> LossFn:
    from torchmetrics.functional.image import (multiscale_structural_similarity_index_measure,
                                               structural_similarity_index_measure)

    index = structural_similarity_index_measure if kind == "ssim" else multiscale_structural_similarity_index_measure
    return lambda x, y: 1 - index(x, y, data_range=1.0)


def _lpips_package(kind: str) -> LossFn:
    import lpips

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    network.requires_grad_(False)
    return lambda x, y: network(x, y, normalize=True).mean()


def _focal_frequency_package(kind: str) -> torch.nn.Module:
    from focal_frequency_loss import FocalFrequencyLoss

    return FocalFrequencyLoss()


# loss name -> (package that must be importable, implementation label, factory)
REFERENCES: dict[str, list[tuple[str, str, Callable[[str], LossFn]]]] = {
    "ssim": [("pytorch_msssim", "pytorch-msssim", _pytorch_msssim), ("piq", "piq", _piq),
             ("kornia", "kornia", _kornia), ("torchmetrics", "torchmetrics", _torchmetrics)],
    "ms_ssim": [("pytorch_msssim", "pytorch-msssim", _pytorch_msssim), ("piq", "piq", _piq),
                ("torchmetrics", "torchmetrics", _torchmetrics)],
    "lpips": [("lpips", "lpips package", _lpips_package)],
    "focal_frequency": [("focal_frequency_loss", "focal-frequency-loss", _focal_frequency_package)],
}


def installed_references(loss: str) -> list[tuple[str, LossFn]]:
    return [(label, factory(loss)) for package, label, factory in REFERENCES.get(loss, [])
            if importlib.util.find_spec(package) is not None]


def time_references(suite: Suite, device: torch.device, log: Callable[[str], None] = print) -> pd.DataFrame:
    """For each loss of the suite that other packages implement: LossBench's default-parameter loss and every
    installed reference, fwd+bwd at the suite's timing settings, with each time as a ratio to the fastest."""
    timing = suite.timing
    losses = sorted({term.loss for entry in suite.entries for term in entry.terms} & set(REFERENCES))
    if timing.resolution <= 160 and "ms_ssim" in losses:
        losses.remove("ms_ssim")  # pytorch-msssim refuses 5-scale MS-SSIM at or below 160 px
        log(f"  ms_ssim: not compared at {timing.resolution} px (the references need more than 160 px)")
    rows = []
    for loss in losses:
        implementations = [("lossbench", build_loss(loss, {"weights": "random"} if loss == "lpips" else {},
                                                    LossContext(timing.resolution)).to(device))]
        implementations += installed_references(loss)
        with timing_threads(timing.threads):
            records = time_entries(implementations, batch_size=timing.batch_size, resolution=timing.resolution,
                                   device=device, warmup=timing.warmup, min_repeats=timing.min_repeats,
                                   min_time_s=timing.min_time_s)
        rows += [{"loss": loss, "implementation": r["entry"], **{k: v for k, v in r.items() if k != "entry"}}
                 for r in records if r["phase"] == "total"]
        log(f"  {loss}: " + ", ".join(f"{r['entry']} {r['median_ms']:.3g} ms" for r in records if r["phase"] == "total"))
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["ratio_to_fastest"] = frame["median_ms"] / frame.groupby("loss")["median_ms"].transform("min")
    return frame
