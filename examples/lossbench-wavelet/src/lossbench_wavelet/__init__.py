"""haar_l1: L1 distance between the Haar wavelet coefficients of two images, a LossBench loss plugin.

An orthonormal 2-D Haar transform splits an image into a half-size average (LL) and three detail bands
(horizontal, vertical and diagonal differences of neighbouring pixels); repeating it on LL gives coarser
scales. Comparing the bands separately lets a loss weight coarse structure and fine detail on their own,
which plain l1 (the same sum of absolute values, over pixels) cannot.
"""

from __future__ import annotations

import torch
from torch import nn

from bench import LossContext, register_loss

__all__ = ["haar_l1", "haar_levels", "haar_step"]


def haar_step(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One level of the orthonormal 2-D Haar transform: (LL, details stacked as N x 3 x C x H/2 x W/2)."""
    a, b = images[..., 0::2, 0::2], images[..., 0::2, 1::2]
    c, d = images[..., 1::2, 0::2], images[..., 1::2, 1::2]
    low = (a + b + c + d) / 2
    details = torch.stack(((a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2), dim=1)
    return low, details


def haar_levels(images: torch.Tensor, levels: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``levels`` Haar steps: the coarsest LL band and each level's details, finest first."""
    details = []
    for _ in range(levels):
        images, bands = haar_step(images)
        details.append(bands)
    return images, details


def haar_l1(
    reconstruction: torch.Tensor, target: torch.Tensor, levels: int = 3, lowpass_weight: float = 1.0
) -> torch.Tensor:
    """Sum over levels of the mean absolute difference of the detail bands, plus ``lowpass_weight`` times
    that of the coarsest LL band."""
    side = min(reconstruction.shape[-2:])
    if reconstruction.shape != target.shape or side % 2**levels:
        raise ValueError(
            f"haar_l1 with {levels} levels needs two images of equal shape with sides divisible by "
            f"{2**levels}, got {tuple(reconstruction.shape)} and {tuple(target.shape)}"
        )
    low_x, details_x = haar_levels(reconstruction, levels)
    low_y, details_y = haar_levels(target, levels)
    detail = sum((x - y).abs().mean() for x, y in zip(details_x, details_y))
    return detail + lowpass_weight * (low_x - low_y).abs().mean()


class HaarL1(nn.Module):
    def __init__(self, levels: int, lowpass_weight: float) -> None:
        super().__init__()
        self.levels, self.lowpass_weight = levels, lowpass_weight

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return haar_l1(reconstruction, target, self.levels, self.lowpass_weight)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, lowpass_weight={self.lowpass_weight}"


@register_loss(
    "haar_l1", "l1 between Haar wavelet bands, per level plus the coarsest average", levels=3, lowpass_weight=1.0
)
def _make_haar_l1(context: LossContext, levels: int, lowpass_weight: float) -> nn.Module:
    if levels < 1 or context.image_size % 2**levels:
        raise ValueError(
            f"levels must be >= 1 and 2**levels must divide the image size {context.image_size}, got levels = {levels}"
        )
    if lowpass_weight < 0:
        raise ValueError(f"lowpass_weight must be >= 0, got {lowpass_weight}")
    return HaarL1(levels, float(lowpass_weight))
