"""Input validation shared by every loss, with messages that say what was expected and what was given."""

from __future__ import annotations

import torch


def check_image_pair(reconstruction: torch.Tensor, target: torch.Tensor) -> None:
    if reconstruction.shape != target.shape:
        raise ValueError(
            f"reconstruction and target must have the same shape, got {tuple(reconstruction.shape)} "
            f"and {tuple(target.shape)}"
        )
    if reconstruction.ndim != 4:
        raise ValueError(f"expected images of shape N x C x H x W, got {tuple(reconstruction.shape)}")
    if not reconstruction.is_floating_point():
        raise ValueError(f"expected floating-point images in [0, 1], got dtype {reconstruction.dtype}")


def as_rgb(images: torch.Tensor) -> torch.Tensor:
    """Grayscale (1 channel) is repeated to 3 channels for networks trained on RGB; 3 channels pass."""
    channels = images.shape[1]
    if channels == 1:
        return images.expand(-1, 3, -1, -1)
    if channels != 3:
        raise ValueError(f"expected 1 or 3 channels, got {channels}")
    return images
