"""Per-pixel losses. Each is a functional core plus a registered factory returning a thin module."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.losses.checks import check_image_pair
from bench.losses.measures import PER_PIXEL, Measure
from bench.losses.registry import LossContext, register_loss


def mse(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    check_image_pair(reconstruction, target)
    return F.mse_loss(reconstruction, target)


def l1(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    check_image_pair(reconstruction, target)
    return F.l1_loss(reconstruction, target)


def bce(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of a [0, 1] reconstruction against a [0, 1] target.

    Computed in float32 outside autocast: F.binary_cross_entropy refuses autocast, and half precision
    rounds outputs near 1 to exactly 1. PyTorch clamps log() at -100 and the backward denominator at
    1e-12, so outputs at exactly 0 or 1 give finite values and gradients.
    """
    check_image_pair(reconstruction, target)
    with torch.autocast(device_type=reconstruction.device.type, enabled=False):
        return F.binary_cross_entropy(reconstruction.float(), target.float())


def charbonnier(reconstruction: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Smooth L1: mean of sqrt((x - y)^2 + eps^2), so eps is in image units (Lai et al., LapSRN)."""
    check_image_pair(reconstruction, target)
    return torch.sqrt((reconstruction - target) ** 2 + eps * eps).mean()


def huber(reconstruction: torch.Tensor, target: torch.Tensor, delta: float = 0.1) -> torch.Tensor:
    check_image_pair(reconstruction, target)
    return F.huber_loss(reconstruction, target, delta=delta)


class PixelLoss(nn.Module):
    """Thin module around a functional pixel loss with fixed keyword parameters."""

    def __init__(self, function, **params) -> None:
        super().__init__()
        self.function = function
        self.params = params

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.function(reconstruction, target, **self.params)

    def extra_repr(self) -> str:
        return ", ".join([self.function.__name__] + [f"{k}={v}" for k, v in self.params.items()])


@register_loss(
    "mse",
    "mean squared error (l2)",
    measure=Measure("MSE", False, ("mse", "psnr"), PER_PIXEL, "mean squared error", headline=False),
)
def _make_mse(context: LossContext) -> nn.Module:
    return PixelLoss(mse)


@register_loss(
    "l1", "mean absolute error", measure=Measure("L1", False, ("l1",), PER_PIXEL, "mean absolute error", headline=False)
)
def _make_l1(context: LossContext) -> nn.Module:
    return PixelLoss(l1)


@register_loss("bce", "binary cross-entropy on [0, 1] pixels, in float32")
def _make_bce(context: LossContext) -> nn.Module:
    return PixelLoss(bce)


@register_loss("charbonnier", "sqrt((x-y)^2 + eps^2), a smooth l1", eps=1e-3)
def _make_charbonnier(context: LossContext, eps: float) -> nn.Module:
    if eps <= 0:
        raise ValueError(f"charbonnier eps must be > 0, got {eps}")
    return PixelLoss(charbonnier, eps=float(eps))


@register_loss("huber", "quadratic below delta, linear above", delta=0.1)
def _make_huber(context: LossContext, delta: float) -> nn.Module:
    if delta <= 0:
        raise ValueError(f"huber delta must be > 0, got {delta}")
    return PixelLoss(huber, delta=float(delta))
