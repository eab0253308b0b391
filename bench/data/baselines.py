"""Answers that need no training, scored on the same held-out crops as every entry.

A trained entry is worth reading only beside these. For the autoencoder task: each crop's mean colour, and a
bicubic downsample-then-upsample that keeps about as many numbers as the latent code (3 x k x k ~ latent_dim),
where the model says how many that is (a ``latent_dim`` parameter, as the built-in autoencoder's).
For the restoration tasks: the degraded input itself (noisy, blurred, JPEG or enlarged) and the mean colour. The
first baseline of a task is its trivial answer: an entry that does not beat it on PSNR by ``LEARNED_MARGIN_DB`` is
marked "did not learn".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from bench.data.degrade import degraded_view
from bench.data.images import EVAL_NOISE_SEED
from bench.config.suite import BASELINE_PREFIX

PREFIX = BASELINE_PREFIX  # entry names starting with this are reserved for baselines
LEARNED_MARGIN_DB = 1.0  # an entry "learned" when its mean PSNR beats the trivial baseline by at least this


@dataclass(frozen=True)
class Baseline:
    name: str
    formula: str  # what it does, in words (the summary's formula column)
    reconstruct: Callable[[torch.Tensor], torch.Tensor]  # clean N x 3 x R x R crops -> reconstructions


def mean_colour(images: torch.Tensor) -> torch.Tensor:
    """Every pixel of each image set to that image's mean colour."""
    return images.mean(dim=(-2, -1), keepdim=True).expand_as(images).contiguous()


def bicubic_side(numbers: int) -> int:
    """Side k of the RGB thumbnail that keeps about ``numbers`` values: 3 * k * k ~ numbers."""
    return max(1, round(math.sqrt(numbers / 3)))


def bicubic(images: torch.Tensor, side: int) -> torch.Tensor:
    """Antialiased bicubic downsample to side x side, bicubic upsample back, clamped to [0, 1]."""
    small = F.interpolate(images, size=(side, side), mode="bicubic", antialias=True, align_corners=False)
    return F.interpolate(small, size=images.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)


DEGRADED_INPUTS = {
    "denoise": ("noisy-input", "the noisy input itself (noise std {noise_std:g})"),
    "deblur": ("blurred-input", "the blurred input itself (sigma {blur_sigma:g} px)"),
    "jpeg": ("jpeg-input", "the JPEG input itself (quality {jpeg_quality})"),
    "super_resolution": ("upscaled-input", "the bicubic-enlarged input itself (x{scale_factor})"),
}


def baselines_for(task: str, latent_dim: int | None, data) -> tuple[Baseline, ...]:
    """The task's baselines, its trivial answer first (``data``: the suite's DataConfig); ``latent_dim`` None: no
    bicubic baseline to match it."""
    mean = Baseline(f"{PREFIX}mean-colour", "each crop's mean colour", mean_colour)
    if task in DEGRADED_INPUTS:
        name, formula = DEGRADED_INPUTS[task]
        degraded = Baseline(
            f"{PREFIX}{name}",
            formula.format(**dataclasses.asdict(data)),
            lambda images: degraded_view(task, images, data, EVAL_NOISE_SEED),
        )
        return degraded, mean
    if latent_dim is None:
        return (mean,)
    side = bicubic_side(latent_dim)
    shrink = Baseline(
        f"{PREFIX}bicubic",
        f"bicubic down to {side}x{side} and back ({3 * side * side} numbers, latent {latent_dim})",
        lambda images: bicubic(images, side),
    )
    return mean, shrink
