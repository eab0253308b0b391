"""NLPD, the normalised Laplacian pyramid distance (Laparra, Balle, Berardino & Simoncelli, "Perceptual image
quality assessment using a normalized Laplacian pyramid", Electronic Imaging 2016).

A frequency-band decomposition modelled on early vision: each level of a Laplacian pyramid (the band left
after removing a blurred, half-resolution copy) is divided by a local estimate of its own amplitude (a
weighted sum of neighbouring |coefficients| plus a constant), so an error counts relative to the contrast it
sits in. The distance is the root mean square difference of the normalised bands, averaged over levels.

Filters and constants are the authors' fitted values as published with Ding, Ma, Wang & Simoncelli's
comparison of IQA models as losses ("Comparison of full-reference image quality models for optimization of
image processing systems", IJCV 2021; the IQA-pytorch package): a 5x5 separable binomial-like low-pass
filter, and per level a 3x3 normalisation filter and constant. Like that implementation, each colour channel
is its own pyramid, reflect padding, RMS within a level and the mean over levels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.losses.checks import check_image_pair
from bench.losses.pixel import PixelLoss
from bench.losses.measures import DesignSize, Measure
from bench.losses.registry import LossContext, register_loss

_LOW_PASS_1D = (0.05, 0.25, 0.4, 0.25, 0.05)
# Per level: the normalisation filter's (north, west, east, south) weights and the constant sigma.
_NORMALISATION = (
    ((0.1011, 0.1493, 0.1460, 0.1015), 0.0248),
    ((0.0757, 0.1986, 0.1846, 0.0837), 0.0185),
    ((0.0477, 0.2138, 0.2243, 0.0467), 0.0179),
    ((0.0, 0.2503, 0.2616, 0.0), 0.0191),
    ((0.0, 0.2598, 0.2552, 0.0), 0.0220),
    ((0.0, 0.2215, 0.0717, 0.0), 0.2782),
)
MAX_LEVELS = len(_NORMALISATION)
# RMS of a level is sqrt(mean square + this): at identical images the plain square root has an infinite slope.
_RMS_FLOOR = 1e-12


def nlpd_min_side(levels: int) -> int:
    """Smallest image side for ``levels`` levels: the last level's input (side / 2^(levels-1), rounded up) needs
    3 px for the low-pass filter's 2-px reflect padding."""
    return 2 * 2 ** (levels - 1) + 1


def _filters(channels: int, dtype, device) -> tuple[torch.Tensor, list[torch.Tensor]]:
    low_1d = torch.tensor(_LOW_PASS_1D, dtype=dtype, device=device)
    low_pass = torch.outer(low_1d, low_1d).expand(channels, 1, 5, 5)
    normalisers = []
    for (north, west, east, south), _ in _NORMALISATION:
        kernel = torch.tensor([[0, north, 0], [west, 0, east], [0, south, 0]], dtype=dtype, device=device)
        normalisers.append(kernel.expand(channels, 1, 3, 3))
    return low_pass, normalisers


def normalised_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """The divisively normalised Laplacian bands of ``images``, finest first."""
    channels = images.shape[1]
    low_pass, normalisers = _filters(channels, images.dtype, images.device)
    blur = lambda x: F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), low_pass, groups=channels)
    bands, current = [], images
    for level in range(levels):
        coarse = F.conv2d(F.pad(current, (2, 2, 2, 2), mode="reflect"), low_pass, stride=2, groups=channels)
        predicted = blur(F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=True))
        if predicted.shape[-2:] != current.shape[-2:]:  # odd sides: the upsampled copy is one pixel larger
            predicted = F.interpolate(predicted, size=current.shape[-2:], mode="nearest")
        band = current - predicted
        amplitude = F.conv2d(F.pad(band.abs(), (1, 1, 1, 1), mode="reflect"), normalisers[level], groups=channels)
        bands.append(band / (_NORMALISATION[level][1] + amplitude))
        current = coarse
    return bands


def nlpd_loss(reconstruction: torch.Tensor, target: torch.Tensor, levels: int = MAX_LEVELS) -> torch.Tensor:
    """Mean over images of NLPD(reconstruction, target) on [0, 1] images, in float32 or wider."""
    check_image_pair(reconstruction, target)
    side = min(reconstruction.shape[-2:])
    if side < nlpd_min_side(levels):
        raise ValueError(
            f"NLPD with levels={levels} needs images of at least {nlpd_min_side(levels)} px, got {side} "
            f"px; use levels <= {most_nlpd_levels(side)}"
        )
    with torch.autocast(reconstruction.device.type, enabled=False):
        wide = torch.promote_types(reconstruction.dtype, torch.float32)
        ours, theirs = normalised_pyramid(reconstruction.to(wide), levels), normalised_pyramid(target.to(wide), levels)
        per_level = [torch.sqrt((a - b).pow(2).mean(dim=(1, 2, 3)) + _RMS_FLOOR) for a, b in zip(ours, theirs)]
        return torch.stack(per_level, dim=1).mean()


def most_nlpd_levels(side: int) -> int:
    return max((n for n in range(1, MAX_LEVELS + 1) if side >= nlpd_min_side(n)), default=0)


@register_loss(
    "nlpd",
    "normalised Laplacian pyramid distance (Laparra et al. 2016), per channel",
    levels=MAX_LEVELS,
    measure=Measure(
        "NLPD",
        False,
        ("nlpd",),
        DesignSize(0, "not stated (Laparra et al. 2016)"),
        "bench.losses.nlpd, as many levels as fit",
    ),
)
def _make_nlpd(context: LossContext, levels) -> nn.Module:
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= MAX_LEVELS:
        raise ValueError(f"levels must be an integer from 1 to {MAX_LEVELS}, got {levels!r}")
    if context.image_size < nlpd_min_side(levels):
        raise ValueError(
            f"NLPD with levels={levels} needs images of at least {nlpd_min_side(levels)} px, got "
            f"{context.image_size} px; use levels <= {most_nlpd_levels(context.image_size)}"
        )
    return PixelLoss(nlpd_loss, levels=levels)
