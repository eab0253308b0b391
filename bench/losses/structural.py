"""Structural losses: 1 - SSIM, 1 - MS-SSIM, the MS-SSIM + L1 mix of Zhao et al., and an image-gradient loss.

The SSIM family is computed here: a separable Gaussian window applied where it fits whole (valid
convolution), K1 = 0.01 and K2 = 0.03, the statistics of Wang et al. 2004 and the scales of Wang et al. 2003.
pytorch-msssim computes the same and is kept as an independent reference (tests, speed references). The family
runs in float32 outside autocast: its variances are differences of means of squares, which cancel
catastrophically in half precision.
"""

from __future__ import annotations

import warnings
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from bench.losses.checks import check_image_pair
from bench.losses.pixel import PixelLoss
from bench.losses.measures import DesignSize, Measure
from bench.losses.registry import LossContext, register_loss

# Wang, Simoncelli & Bovik 2003, as in pytorch-msssim; fewer levels take the first ones, renormalised.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MAX_LEVELS = len(MS_SSIM_WEIGHTS)


def ssim_loss(
    reconstruction: torch.Tensor,
    target: torch.Tensor,
    win_size: int = 11,
    win_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float = 1.0,
) -> torch.Tensor:
    """1 - SSIM (Wang et al. 2004), averaged over images and channels."""
    check_image_pair(reconstruction, target)
    check_fits(min(reconstruction.shape[-2:]), win_size, levels=1)
    with torch.autocast(reconstruction.device.type, enabled=False):
        similarity, _ = ssim_statistics(
            _float32_or_wider(reconstruction),
            _float32_or_wider(target),
            gaussian_window(win_size, win_sigma),
            data_range,
            (k1, k2),
        )
    return 1 - similarity.mean()


def ms_ssim_index(
    x: torch.Tensor,
    y: torch.Tensor,
    levels: int = MAX_LEVELS,
    win_size: int = 11,
    win_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float = 1.0,
    size_average: bool = True,
) -> torch.Tensor:
    """MS-SSIM (Wang et al. 2003) over ``levels`` scales: a scalar, or one value per image (mean over
    channels) with ``size_average=False``, as pytorch_msssim.ms_ssim returns."""
    check_image_pair(x, y)
    check_fits(min(x.shape[-2:]), win_size, levels)
    with torch.autocast(x.device.type, enabled=False):
        per_channel = _ms_ssim(
            _float32_or_wider(x), _float32_or_wider(y), levels, win_size, win_sigma, (k1, k2), data_range
        )
    return per_channel.mean() if size_average else per_channel.mean(1)


def ms_ssim_loss(
    reconstruction: torch.Tensor,
    target: torch.Tensor,
    levels: int = MAX_LEVELS,
    win_size: int = 11,
    win_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float = 1.0,
) -> torch.Tensor:
    """1 - MS-SSIM over ``levels`` scales, averaged over images and channels."""
    return 1 - ms_ssim_index(reconstruction, target, levels, win_size, win_sigma, k1, k2, data_range)


def ms_ssim_l1_loss(
    reconstruction: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.84,
    levels: int = MAX_LEVELS,
    win_size: int = 11,
    win_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float = 1.0,
) -> torch.Tensor:
    """alpha * (1 - MS-SSIM) + (1 - alpha) * mean(G_sigma_M * |x - y|) / data_range (Zhao et al. 2017).

    alpha = 0.84 is the paper's value; the authors' Caffe layer (NVlabs/PL4NN, ``MSSSIML1``) defaults to
    0.025, so the paper's value is pinned here.

    The paper evaluates both terms at the centre pixel of a patch, the L1 term weighted by the Gaussian
    of the coarsest scale. Over a whole image that is |x - y| filtered with that Gaussian wherever the
    window fits (valid, like the SSIM windows), then averaged. Here the coarsest scale is reached by
    halving the image ``levels - 1`` times rather than by widening the Gaussian, so at full resolution
    its Gaussian has sigma_M = win_sigma * 2**(levels - 1) and spans (win_size - 1) * 2**(levels - 1) + 1
    pixels.
    """
    structural = ms_ssim_loss(reconstruction, target, levels, win_size, win_sigma, k1, k2, data_range)
    with torch.autocast(reconstruction.device.type, enabled=False):
        x, y = _float32_or_wider(reconstruction), _float32_or_wider(target)
        scale = 2 ** (levels - 1)
        window = gaussian_window((win_size - 1) * scale + 1, win_sigma * scale)
        weighted_l1 = gaussian_blur((x - y).abs(), window).mean() / data_range
    return alpha * structural + (1 - alpha) * weighted_l1


_DISTANCES = {"l1": torch.abs, "l2": torch.square}


def gradient_loss(reconstruction: torch.Tensor, target: torch.Tensor, distance: str = "l1") -> torch.Tensor:
    """Distance between forward-difference image gradients: its mean over x plus its mean over y gradients.

    Differencing is linear, so the gradients of ``reconstruction - target`` are the differences of gradients.
    """
    check_image_pair(reconstruction, target)
    if distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(_DISTANCES)}, got {distance!r}")
    error = reconstruction - target
    dx = error[..., :, 1:] - error[..., :, :-1]
    dy = error[..., 1:, :] - error[..., :-1, :]
    penalty = _DISTANCES[distance]
    return penalty(dx).mean() + penalty(dy).mean()


def check_fits(side: int, win_size: int, levels: int) -> None:
    """Every scale must hold one whole window: side > (win_size - 1) * 2**(levels - 1)."""
    if isinstance(win_size, bool) or not isinstance(win_size, int) or win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"win_size must be a positive odd integer, got {win_size!r}")
    if side > (win_size - 1) * 2 ** (levels - 1):
        return
    if levels == 1:
        raise ValueError(
            f"SSIM with win_size={win_size} needs images of at least {win_size} px, got {side} px; "
            f"use an odd win_size <= {_largest_window(side, 1)}"
        )
    options = []
    if (fitting := most_levels(side, win_size)) > 0:
        options.append(f"levels={fitting}")
    if (window := _largest_window(side, levels)) >= 3:
        options.append(f"win_size={window} with levels={levels}")
    options.append("levels='auto'")
    raise ValueError(
        f"MS-SSIM with levels={levels} and win_size={win_size} needs images larger than "
        f"{(win_size - 1) * 2 ** (levels - 1)} px, got {side} px; at {side} px use {' or '.join(options)}"
    )


def resolve_levels(levels: Union[int, str], image_size: int, win_size: int) -> tuple[int, str]:
    """The level count to use at ``image_size``, and a note for the results when ``"auto"`` chose it.

    An explicit count that does not fit is an error; ``"auto"`` takes the most levels that fit (at most 5)
    and warns when that is fewer than 5, because the loss then differs from standard MS-SSIM.
    """
    if levels == "auto":
        check_fits(image_size, win_size, 1)  # a valid window, and at least one scale
        chosen = most_levels(image_size, win_size)
        if chosen < MAX_LEVELS:
            warnings.warn(
                f"MS-SSIM: {image_size} px images fit {chosen} of {MAX_LEVELS} levels at "
                f"win_size={win_size}; using levels={chosen}",
                stacklevel=3,
            )
        return chosen, f"levels={chosen} at {image_size}px"
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= MAX_LEVELS:
        raise ValueError(f"levels must be an integer from 1 to {MAX_LEVELS} or 'auto', got {levels!r}")
    check_fits(image_size, win_size, levels)
    return levels, ""


def most_levels(side: int, win_size: int) -> int:
    return max((n for n in range(1, MAX_LEVELS + 1) if side > (win_size - 1) * 2 ** (n - 1)), default=0)


def _largest_window(side: int, levels: int) -> int:
    window = (side - 1) // 2 ** (levels - 1) + 1  # largest w with (w - 1) * 2**(levels - 1) < side
    return window if window % 2 == 1 else window - 1


def _float32_or_wider(images: torch.Tensor) -> torch.Tensor:
    # Half precision goes up to float32; float64 stays, so gradcheck can run.
    return images.to(torch.promote_types(images.dtype, torch.float32))


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """The 1-D Gaussian of ``size`` taps centred on the middle one, summing to 1.

    Built in float32 whatever the images' dtype, as pytorch-msssim builds it: in float64 the two then agree
    to the last bit rather than to ~3e-8, so a test can tell any other difference from rounding.
    """
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    taps = torch.exp(-(coords**2) / (2 * sigma**2))
    return taps / taps.sum()


def gaussian_blur(images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Each channel of N x C x H x W ``images`` filtered with ``window`` down the columns, then along the
    rows, kept only where the window fits whole (valid): (H - size + 1) x (W - size + 1)."""
    return _separable_valid(images, _per_channel(window, images))


def ssim_statistics(
    x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float, k: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The means (N x C, one per image and channel) of the SSIM map and of its contrast-structure map.

    Local means, variances and covariance are Gaussian-weighted over the valid region; the variances are
    E[x^2] - E[x]^2, not clamped at 0 (on flat images they round to tiny negatives, which C2 dwarfs).
    """
    k1, k2 = k
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    kernel = _per_channel(window, x)  # placed once: five filterings share it
    mean_x = _separable_valid(x, kernel)
    mean_y = _separable_valid(y, kernel)
    mean_x_sq, mean_y_sq, mean_xy = mean_x.pow(2), mean_y.pow(2), mean_x * mean_y
    var_x = _separable_valid(x * x, kernel) - mean_x_sq
    var_y = _separable_valid(y * y, kernel) - mean_y_sq
    cov_xy = _separable_valid(x * y, kernel) - mean_xy
    contrast_structure = (2 * cov_xy + c2) / (var_x + var_y + c2)
    similarity = (2 * mean_xy + c1) / (mean_x_sq + mean_y_sq + c1) * contrast_structure
    return similarity.flatten(2).mean(-1), contrast_structure.flatten(2).mean(-1)


def _per_channel(window: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    # One 1 x size kernel per channel (grouped convolution), on the images' device and in their dtype.
    return window.to(images).view(1, 1, 1, -1).repeat(images.shape[1], 1, 1, 1)


def _separable_valid(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    channels = images.shape[1]
    down_columns = F.conv2d(images, kernel.transpose(2, 3), groups=channels)
    return F.conv2d(down_columns, kernel, groups=channels)


def _ms_ssim(x, y, levels, win_size, win_sigma, k, data_range) -> torch.Tensor:
    # The first ``levels`` of the standard weights, renormalised; each coarser scale is a 2x2 mean.
    weights = x.new_tensor(MS_SSIM_WEIGHTS[:levels])
    weights = weights / weights.sum()
    window = gaussian_window(win_size, win_sigma)
    factors = []
    for level in range(levels):
        similarity, contrast_structure = ssim_statistics(x, y, window, data_range, k)
        if level < levels - 1:
            # Negative contrast-structure to a fractional power is NaN: clip at 0, as pytorch-msssim does.
            factors.append(torch.relu(contrast_structure))
            padding = [side % 2 for side in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
    factors.append(torch.relu(similarity))
    return torch.prod(torch.stack(factors) ** weights.view(-1, 1, 1), dim=0)  # N x C


class MultiScaleLoss(PixelLoss):
    """A functional loss with fixed parameters that also records how its level count was chosen."""

    def __init__(self, function, notes: str, **params) -> None:
        super().__init__(function, **params)
        self.notes = notes


def _window_params(win_size, win_sigma, k1, k2, data_range) -> dict:
    if win_sigma <= 0 or data_range <= 0:
        raise ValueError(f"win_sigma and data_range must be > 0, got {win_sigma} and {data_range}")
    return dict(win_size=win_size, win_sigma=float(win_sigma), k1=float(k1), k2=float(k2), data_range=float(data_range))


_WINDOW_DEFAULTS = dict(win_size=11, win_sigma=1.5, k1=0.01, k2=0.03, data_range=1.0)
SSIM_DESIGN = DesignSize(
    11,
    "Wang et al. 2004: one 11x11 Gaussian window (sigma 1.5); no image size stated "
    "(the authors' later ssim.m shrinks images by round(shorter side / 256))",
)
MS_SSIM_DESIGN = DesignSize(161, "Wang et al. 2003: 5 scales of the 11 px window, halving 4 times, need 161 px")


@register_loss(
    "ssim",
    "1 - SSIM (Gaussian window), float32",
    **_WINDOW_DEFAULTS,
    measure=Measure("SSIM", True, ("ssim",), SSIM_DESIGN, "pytorch-msssim, 11 px Gaussian window"),
)
def _make_ssim(context: LossContext, **window) -> nn.Module:
    params = _window_params(**window)
    check_fits(context.image_size, params["win_size"], levels=1)
    return PixelLoss(ssim_loss, **params)


@register_loss(
    "ms_ssim",
    "1 - MS-SSIM; levels='auto' fits the image size",
    levels=MAX_LEVELS,
    **_WINDOW_DEFAULTS,
    measure=Measure(
        "MS-SSIM", True, ("ms_ssim",), MS_SSIM_DESIGN, "as many scales as fit, standard weights renormalised"
    ),
)
def _make_ms_ssim(context: LossContext, levels, **window) -> nn.Module:
    params = _window_params(**window)
    levels, notes = resolve_levels(levels, context.image_size, params["win_size"])
    return MultiScaleLoss(ms_ssim_loss, notes, levels=levels, **params)


@register_loss(
    "ms_ssim_l1",
    "alpha (1 - MS-SSIM) + (1 - alpha) Gaussian-weighted l1 (Zhao et al. 2017)",
    alpha=0.84,
    levels=MAX_LEVELS,
    **_WINDOW_DEFAULTS,
    measure=Measure(
        "MS-SSIM + L1",
        False,
        ("ms_ssim", "l1"),
        MS_SSIM_DESIGN,
        "Zhao et al. 2017, as bench.losses.structural computes it",
    ),
)
def _make_ms_ssim_l1(context: LossContext, alpha, levels, **window) -> nn.Module:
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    params = _window_params(**window)
    levels, notes = resolve_levels(levels, context.image_size, params["win_size"])
    return MultiScaleLoss(ms_ssim_l1_loss, notes, alpha=float(alpha), levels=levels, **params)


@register_loss("gradient", "distance between x and y finite-difference gradients", distance="l1")
def _make_gradient(context: LossContext, distance: str) -> nn.Module:
    if distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(_DISTANCES)}, got {distance!r}")
    return PixelLoss(gradient_loss, distance=distance)
