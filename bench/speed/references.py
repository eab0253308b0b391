"""Other public implementations of LossBench's losses, timed beside LossBench's own for context.

Only installed packages are used, each at LossBench's default settings (11-tap Gaussian window of sigma 1.5,
data range 1, no downsampling: piq's SSIM downsamples large images by default, so that is turned off). Each
callable returns a loss to minimise; scale differences (kornia's (1 - SSIM) / 2) do not change the cost.

On CUDA the fused SSIM kernels fussim (OpsiClear/fussim) and fused-ssim (rahul-goel/fused-ssim) join the SSIM
comparison: both hard-code LossBench's defaults (11-tap window, sigma 1.5, data range 1) and zero-pad ("same")
where the others use the valid region, which does not change the cost. They are CUDA-only, so they are skipped
on a CPU. An implementation that fails to load or run (a kernel built for another torch or GPU) is logged and
left out; the others are still timed.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Callable

import pandas as pd
import torch

from bench.losses import LossContext, build_loss
from bench.speed.suite import timing_threads
from bench.config.suite import Suite
from bench.speed.timing import time_entries

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
    from torchmetrics.functional.image import (
        multiscale_structural_similarity_index_measure,
        structural_similarity_index_measure,
    )

    index = structural_similarity_index_measure if kind == "ssim" else multiscale_structural_similarity_index_measure
    return lambda x, y: 1 - index(x, y, data_range=1.0)


def _fussim(kind: str) -> LossFn:
    from fussim import fused_ssim

    return lambda x, y: 1 - fused_ssim(x, y)


def _fused_ssim(kind: str) -> LossFn:
    from fused_ssim import fused_ssim

    return lambda x, y: 1 - fused_ssim(x, y)


def _lpips_package(kind: str) -> LossFn:
    import lpips

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(0)
        # lpips still calls torchvision's deprecated ``pretrained=`` API (as in bench.losses.pretrained.build_lpips).
        warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
        network = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    network.requires_grad_(False)
    return lambda x, y: network(x, y, normalize=True).mean()


def _focal_frequency_package(kind: str) -> torch.nn.Module:
    from focal_frequency_loss import FocalFrequencyLoss

    return FocalFrequencyLoss()


# loss name -> (package that must be importable, implementation label, factory)
REFERENCES: dict[str, list[tuple[str, str, Callable[[str], LossFn]]]] = {
    "ssim": [
        ("pytorch_msssim", "pytorch-msssim", _pytorch_msssim),
        ("piq", "piq", _piq),
        ("kornia", "kornia", _kornia),
        ("torchmetrics", "torchmetrics", _torchmetrics),
        ("fussim", "fussim", _fussim),
        ("fused_ssim", "fused-ssim", _fused_ssim),
    ],
    "ms_ssim": [
        ("pytorch_msssim", "pytorch-msssim", _pytorch_msssim),
        ("piq", "piq", _piq),
        ("torchmetrics", "torchmetrics", _torchmetrics),
    ],
    "lpips": [("lpips", "lpips package", _lpips_package)],
    "focal_frequency": [("focal_frequency_loss", "focal-frequency-loss", _focal_frequency_package)],
}


CUDA_ONLY = {"fussim", "fused-ssim"}  # implementation labels of kernels that exist only on CUDA


def installed_references(
    loss: str, device: torch.device | str = "cpu", log: Callable[[str], None] = print
) -> list[tuple[str, LossFn]]:
    """(label, loss) of every installed reference of ``loss`` that runs on ``device``."""
    found = []
    for package, label, factory in REFERENCES.get(loss, []):
        if importlib.util.find_spec(package) is None:
            continue
        if label in CUDA_ONLY and torch.device(device).type != "cuda":
            log(f"  {loss}: {label} is installed but CUDA-only; not timed on {device}")
            continue
        try:
            found.append((label, factory(loss)))
        except Exception as error:  # e.g. an extension built for another torch: ImportError, OSError, RuntimeError
            log(f"  {loss}: {label} is installed but failed to load ({type(error).__name__}: {error}); not timed")
    return found


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
        implementations = [
            (
                "lossbench",
                build_loss(loss, {"weights": "random"} if loss == "lpips" else {}, LossContext(timing.resolution)).to(
                    device
                ),
            )
        ]
        implementations += installed_references(loss, device, log)
        records = []
        for implementation in implementations:
            try:
                with timing_threads(timing.threads):
                    records += time_entries(
                        [implementation],
                        batch_size=timing.batch_size,
                        resolution=timing.resolution,
                        device=device,
                        warmup=timing.warmup,
                        min_repeats=timing.min_repeats,
                        min_time_s=timing.min_time_s,
                    )
            except Exception as error:
                if implementation[0] == "lossbench":
                    raise
                log(f"  {loss}: {implementation[0]} failed ({type(error).__name__}: {error}); not timed")
        rows += [
            {"loss": loss, "implementation": r["entry"], **{k: v for k, v in r.items() if k != "entry"}}
            for r in records
            if r["phase"] == "total"
        ]
        log(
            f"  {loss}: " + ", ".join(f"{r['entry']} {r['median_ms']:.3g} ms" for r in records if r["phase"] == "total")
        )
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["ratio_to_fastest"] = frame["median_ms"] / frame.groupby("loss")["median_ms"].transform("min")
    return frame
