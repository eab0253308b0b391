"""Frequency-domain losses."""

from __future__ import annotations

import torch
from torch import nn

from bench.losses.checks import check_image_pair
from bench.losses.pixel import PixelLoss
from bench.losses.registry import LossContext, register_loss


def focal_frequency_loss(
    reconstruction: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 1.0,
    patch_factor: int = 1,
    ave_spectrum: bool = False,
    log_matrix: bool = False,
    batch_matrix: bool = False,
    loss_weight: float = 1.0,
) -> torch.Tensor:
    """Focal frequency loss (Jiang et al., ICCV 2021), with the parameters of the authors' ``FocalFrequencyLoss``.

    The squared distance between orthonormal 2-D spectra of (patches of) the images, each frequency
    weighted by its own distance to the power ``alpha``, scaled to [0, 1] by the maximum per image,
    patch and channel (or over the batch with ``batch_matrix``). The weights are constants: no gradient
    flows through them.
    """
    check_image_pair(reconstruction, target)
    height, width = reconstruction.shape[-2:]
    if height % patch_factor or width % patch_factor:
        raise ValueError(
            f"patch_factor must divide the image height and width, got {patch_factor} for {height} x {width}"
        )
    # The FFT has no half-precision kernels on CPU and loses the small high frequencies in them on GPU.
    with torch.autocast(reconstruction.device.type, enabled=False):
        error = reconstruction.to(torch.promote_types(reconstruction.dtype, torch.float32)) - target
        # The DFT is linear: the spectrum of the difference is the difference of the spectra.
        spectrum = torch.fft.fft2(_patches(error, patch_factor), norm="ortho")  # N x P x C x h x w
        if ave_spectrum:
            spectrum = spectrum.mean(0, keepdim=True)
        distance = spectrum.real**2 + spectrum.imag**2
        with torch.no_grad():
            weight = distance.sqrt() ** alpha
            if log_matrix:
                weight = torch.log(weight + 1.0)
            peak = weight.amax() if batch_matrix else weight.amax(dim=(-2, -1), keepdim=True)
            # A zero peak means no error at all: 0 / 0 there becomes a zero weight, as in the authors' code.
            weight = torch.nan_to_num(weight / peak, nan=0.0).clamp(0.0, 1.0)
        return (weight * distance).mean() * loss_weight


def _patches(images: torch.Tensor, factor: int) -> torch.Tensor:
    """N x C x H x W as N x factor**2 x C x H/factor x W/factor, patches in row-major order."""
    n, c, h, w = images.shape
    grid = images.reshape(n, c, factor, h // factor, factor, w // factor)
    return grid.permute(0, 2, 4, 1, 3, 5).reshape(n, factor * factor, c, h // factor, w // factor)


@register_loss(
    "focal_frequency",
    "focal frequency loss (Jiang et al. 2021): hard frequencies weighted up",
    alpha=1.0,
    patch_factor=1,
    ave_spectrum=False,
    log_matrix=False,
    batch_matrix=False,
    loss_weight=1.0,
)
def _make_focal_frequency(
    context: LossContext, alpha, patch_factor, ave_spectrum, log_matrix, batch_matrix, loss_weight
) -> nn.Module:
    if not isinstance(patch_factor, int) or patch_factor < 1 or context.image_size % patch_factor:
        raise ValueError(
            f"patch_factor must be a positive integer dividing the image size "
            f"{context.image_size}, got {patch_factor!r}"
        )
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    return PixelLoss(
        focal_frequency_loss,
        alpha=float(alpha),
        patch_factor=patch_factor,
        ave_spectrum=bool(ave_spectrum),
        log_matrix=bool(log_matrix),
        batch_matrix=bool(batch_matrix),
        loss_weight=float(loss_weight),
    )
