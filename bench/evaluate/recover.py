"""Reference recovery: minimised over an image's pixels alone, does a loss bring the image back to its reference?

No network is trained: the pixels themselves are the parameters (Adam, a cosine-decaying rate, clamped to [0, 1]
after every step). A loss whose minimum is the reference recovers it from any start; a loss satisfied far from
the reference, or one whose gradient leads nowhere, does not. The starts are white noise and distorted copies
of the reference (Gaussian blur, JPEG), since a measure can behave well near its minimum and fail far from it.

The references are held-out photographs of the suite (never its training ones), cropped at each loss's design
size (``bench.losses.measures``), or at the suite's resolution where the loss states none. A start counts as
recovered when its final PSNR reaches ``recovered_db`` and rose at least ``RISE_DB`` above the start's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
from pytorch_msssim import ssim

from bench.config.suite import resolve_suite_path
from bench.data.degrade import blurred, jpeg_compressed
from bench.data.images import ImageSet, load_images
from bench.errors import BenchInputError
from bench.evaluate.metrics import psnr
from bench.losses import LOSS_NETWORK_SEED, LossContext, build_entry_loss
from bench.losses.registry import measure_of

RISE_DB = 1.0  # a start already near the reference does not count as recovered by staying there


@dataclass(frozen=True)
class RecoverySettings:
    steps: int = 2000
    lr: float = 0.01  # Adam's initial rate, decayed along a cosine to lr * final_lr_fraction
    final_lr_fraction: float = 0.01
    blur_sigma: float = 2.0  # Gaussian blur of the "blur" start, in pixels
    jpeg_quality: int = 10  # PIL's JPEG quality of the "jpeg" start
    images: int = 1  # held-out photographs to recover
    side: int = 0  # crop side for every loss; 0: each loss's design size, at least the suite's resolution
    recovered_db: float = 30.0
    seed: int = 0  # of the noise start

    def validate(self) -> None:
        """Raises BenchInputError naming the first setting out of range (as its command-line option)."""
        problems = [
            ("--steps", self.steps >= 1, "use at least 1, e.g. 2000"),
            ("--images", self.images >= 1, "use at least 1"),
            ("--lr", self.lr > 0 and math.isfinite(self.lr), "use a positive number, e.g. 0.01"),
            ("--jpeg-quality", 1 <= self.jpeg_quality <= 95, "use 1 to 95, e.g. 10"),
            ("--blur-sigma", self.blur_sigma > 0 and math.isfinite(self.blur_sigma), "use e.g. 2.0"),
            ("--side", self.side >= 0, "use 0 for each loss's design size, or a side in pixels"),
        ]
        for option, ok, fix in problems:
            if not ok:
                name = option[2:].replace("-", "_")
                raise BenchInputError(
                    f"recovery setting {name} is out of range: {getattr(self, name)!r}", where=option, fix=fix
                )


def recovery_side(entry, default_side: int, settings: RecoverySettings) -> int:
    """The crop side ``entry`` (a suite Entry) is recovered at: the largest design size of its terms, and never
    below ``default_side`` (the suite's crops): SSIM's "design size" is its 11 px window, not an image."""
    if settings.side:
        return settings.side
    designed = [record.design.side for term in entry.terms if (record := measure_of(term.loss)) is not None]
    return max([default_side, *designed])


def starting_points(references: torch.Tensor, settings: RecoverySettings) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(settings.seed)
    noise = torch.rand(references.shape, generator=generator).to(references)
    return {
        "noise": noise,
        "blur": blurred(references, settings.blur_sigma),
        "jpeg": jpeg_compressed(references, settings.jpeg_quality),
    }


def optimise_pixels(
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    reference: torch.Tensor,
    start: torch.Tensor,
    settings: RecoverySettings,
) -> torch.Tensor:
    """``start``'s pixels moved to minimise ``loss(pixels, reference)``; raises FloatingPointError at a
    non-finite loss or gradient (the step is named)."""
    pixels = start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([pixels], lr=settings.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, settings.steps, eta_min=settings.lr * settings.final_lr_fraction
    )
    for step in range(settings.steps):
        optimiser.zero_grad(set_to_none=True)
        value = loss(pixels, reference)
        value.backward()
        if not (torch.isfinite(value) and torch.isfinite(pixels.grad).all()):
            raise FloatingPointError(f"non-finite loss or gradient at step {step}")
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            pixels.clamp_(0, 1)
    return pixels.detach()


@dataclass
class Recovery:
    """One entry recovered from every start: the table's rows and, per start, the start and result images."""

    rows: list[dict]
    pictures: dict[str, tuple[torch.Tensor, torch.Tensor]]  # start -> (start images, results)
    references: torch.Tensor | None


def recover_entry(entry, images: ImageSet, side: int, settings: RecoverySettings, device: torch.device) -> Recovery:
    """``entry`` (a suite Entry) recovering ``images.eval`` (its held-out crops) from every start."""
    references = images.eval.to(device)
    base = {"entry": entry.name, "side": side, "steps": settings.steps}
    try:
        terms = build_entry_loss(entry, LossContext(image_size=side, seed=LOSS_NETWORK_SEED)).to(device)
    except Exception as error:  # noqa: BLE001  (a factory may raise anything; this loss alone fails)
        return Recovery([{**base, "start": "", "error": f"{type(error).__name__}: {error}"}], {}, None)
    loss = lambda pixels, target: terms(pixels, target)[0]  # the weighted total, without the per-term values
    rows, pictures = [], {}
    for start_name, start in starting_points(references, settings).items():
        row = {**base, "start": start_name, **_scores(loss, start, references, "start")}
        try:
            result = optimise_pixels(loss, references, start, settings)
        except Exception as error:  # noqa: BLE001  (a NaN, or a loss that fails mid-way, is this start's result)
            rows.append({**row, "recovered": False, "error": f"{type(error).__name__}: {error}"})
            continue
        row.update(_scores(loss, result, references, "final"))
        row["recovered"] = bool(
            row["psnr_final"] >= settings.recovered_db and row["psnr_final"] >= row["psnr_start"] + RISE_DB
        )
        rows.append({**row, "error": ""})
        pictures[start_name] = (start.cpu(), result.cpu())
    return Recovery(rows, pictures, references.cpu())


def _scores(loss, images: torch.Tensor, references: torch.Tensor, when: str) -> dict[str, float]:
    """Mean PSNR, SSIM and the loss's own value of ``images`` against ``references``."""
    with torch.no_grad():
        return {
            f"psnr_{when}": psnr(images, references).mean().item(),
            f"ssim_{when}": ssim(images.float(), references.float(), data_range=1.0).item(),
            f"loss_{when}": float(loss(images, references)),
        }


def held_out_crops(suite, side: int, settings: RecoverySettings) -> ImageSet:
    """``settings.images`` crops of ``side`` px from the suite's held-out photographs, at their native size: a
    crop at a measure's design size should hold the detail it was designed on, not an enlarged thumbnail."""
    data = dataclasses.replace(suite.data, resolution=side, eval_crops=settings.images, scale=1.0)
    path = lambda value: resolve_suite_path(suite, value)
    return load_images(data, path(data.path), eval_folder=path(data.eval_path), cache=path(data.cache))


def recover_suite(
    suite, settings: RecoverySettings, device: torch.device, log: Callable[[str], None]
) -> tuple[pd.DataFrame, list[Recovery]]:
    """Every entry of ``suite`` recovered from every start: recovery.csv's rows, and each entry's pictures."""
    crops: dict[int, ImageSet] = {}  # by side: entries of one design size share their references
    recoveries = []
    for entry in suite.entries:
        side = recovery_side(entry, suite.data.resolution, settings)
        if side not in crops:
            crops[side] = held_out_crops(suite, side, settings)
        log(
            f"  {entry.name}: recovering {settings.images} held-out crop(s) of {side} px, {settings.steps} steps "
            "per start"
        )
        recoveries.append(recover_entry(entry, crops[side], side, settings, device))
    columns = [
        "entry",
        "start",
        "side",
        "steps",
        "psnr_start",
        "psnr_final",
        "ssim_start",
        "ssim_final",
        "loss_start",
        "loss_final",
        "recovered",
        "error",
    ]
    table = pd.DataFrame([row for recovery in recoveries for row in recovery.rows]).reindex(columns=columns)
    return table, recoveries
