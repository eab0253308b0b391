"""Barron's general and adaptive robust loss ("A General and Adaptive Robust Loss Function", CVPR 2019).

``rho(x, alpha, c)`` is one family with shape ``alpha`` and scale ``c``; named members are exact cases:
alpha = 2 is L2 (0.5 (x/c)^2), 1 Charbonnier / pseudo-Huber (sqrt((x/c)^2 + 1) - 1), 0 Cauchy
(log(0.5 (x/c)^2 + 1)), -2 Geman-McClure (2 (x/c)^2 / ((x/c)^2 + 4)) and -inf Welsch (1 - exp(-0.5 (x/c)^2)).
The general formula divides by alpha and by |alpha - 2|, so those shapes take their limits explicitly, and a
learnable alpha is kept a little away from them (as in the paper's code).

The adaptive loss is the negative log-likelihood of the error under the density ``exp(-rho(x, alpha, c)) /
(c Z(alpha))``, with alpha in ``[alpha_low, alpha_high]`` and c > 0 trained with the model; without the
log-partition term, alpha and c would simply grow to make every error cheap. ``Z(alpha)`` has no closed form:
its logarithm is integrated numerically once on a grid of alphas and interpolated (piecewise linear, so it is
differentiable in alpha). Errors are taken per pixel (Barron's "pixel" representation), one alpha and one scale
for the whole image.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.losses.checks import check_image_pair
from bench.losses.pixel import PixelLoss
from bench.losses.registry import LossContext, register_loss

# A learnable alpha never reaches 0 or 2 exactly: the general formula is 0/0 there.
_NUDGE = 1e-5
PARTITION_GRID_STEP = 0.005  # alphas at which log Z is integrated; linear interpolation is off by < 1e-5
PARTITION_NODES = 4001  # trapezoid nodes over [0, pi/2]
MAX_ADAPTIVE_ALPHA = 3.0  # the grid's end: Barron's code also limits a learned alpha to [0, 3]


def general_robust(x: torch.Tensor, alpha: float | torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """rho(x, alpha, c) elementwise (Barron 2019, eq. 1 and its limits). ``alpha`` may be a float (the exact
    named cases included, ``-math.inf`` for Welsch) or a tensor that requires grad (kept off 0 and 2)."""
    squared = (x / scale) ** 2
    if not torch.is_tensor(alpha):
        if alpha == 2:
            return 0.5 * squared
        if alpha == 0:
            return torch.log1p(0.5 * squared)
        if alpha == -math.inf:
            return -torch.expm1(-0.5 * squared)
        beta = abs(alpha - 2)
        return beta / alpha * ((squared / beta + 1) ** (alpha / 2) - 1)
    beta = torch.clamp((alpha - 2).abs(), min=_NUDGE)
    alpha = torch.where(alpha >= 0, 1.0, -1.0) * torch.clamp(alpha.abs(), min=_NUDGE)
    return beta / alpha * ((squared / beta + 1) ** (alpha / 2) - 1)


def robust_loss(
    reconstruction: torch.Tensor, target: torch.Tensor, alpha: float = 1.0, scale: float = 0.03
) -> torch.Tensor:
    """Mean of rho(reconstruction - target, alpha, scale) over every pixel, in float32 or wider."""
    check_image_pair(reconstruction, target)
    with torch.autocast(reconstruction.device.type, enabled=False):
        error = reconstruction.to(torch.promote_types(reconstruction.dtype, torch.float32)) - target
        return general_robust(error, alpha, scale).mean()


@functools.lru_cache(maxsize=1)
def _log_partition_table() -> tuple[torch.Tensor, torch.Tensor]:
    """log Z(alpha) = log of the integral of exp(-rho(x, alpha, 1)) over x, on a grid of alphas over [0, 3].

    With x = tan(t), the integral over [0, inf) is one over [0, pi/2) of a smooth function that vanishes at
    the end (or tends to 2 for alpha = 0, whose tails fall as 1 / x^2), where the trapezoid rule converges
    fast; the tests pin Z(0) = pi sqrt(2), Z(1) = 2 e K1(1) and Z(2) = sqrt(2 pi).
    """
    t = torch.linspace(0, math.pi / 2, PARTITION_NODES, dtype=torch.float64)[:-1]
    x, jacobian = torch.tan(t), 1 / torch.cos(t) ** 2
    alphas = torch.arange(0, round(MAX_ADAPTIVE_ALPHA / PARTITION_GRID_STEP) + 1, dtype=torch.float64)
    alphas = alphas * PARTITION_GRID_STEP
    values = []
    for alpha in alphas.tolist():
        integrand = torch.exp(-general_robust(x, alpha, 1.0)) * jacobian
        integrand = torch.cat([integrand, integrand.new_tensor([2.0 if alpha == 0 else 0.0])])
        values.append(math.log(2 * torch.trapezoid(integrand, dx=(math.pi / 2) / (PARTITION_NODES - 1)).item()))
    return alphas, torch.tensor(values, dtype=torch.float64)


def log_partition(alpha: torch.Tensor) -> torch.Tensor:
    """log Z(alpha) for alpha in [0, 3], differentiable in alpha (linear between grid points)."""
    grid, values = _log_partition_table()
    values = values.to(alpha.device, alpha.dtype)
    position = (alpha / PARTITION_GRID_STEP).clamp(0, len(grid) - 1 - 1e-6)
    index = position.detach().floor().long()
    fraction = position - index
    return values[index] * (1 - fraction) + values[index + 1] * fraction


class AdaptiveRobustLoss(nn.Module):
    """Negative log-likelihood under Barron's distribution, with a learnable shape and scale.

    alpha = alpha_low + (alpha_high - alpha_low) * sigmoid(latent), scale = softplus(latent) + scale_low, as in
    the paper's code, so any latent value is a valid loss. These two parameters must be optimised with the model
    (``bench.train.loop`` adds every parameter of a loss that requires grad to the optimizer; ``learns_with_model``
    keeps ``bench.losses.build_loss`` from freezing them, as it freezes every other loss).
    """

    learns_with_model = True

    def __init__(
        self, alpha_low: float, alpha_high: float, alpha_init: float, scale_low: float, scale_init: float
    ) -> None:
        super().__init__()
        self.alpha_low, self.alpha_high, self.scale_low = alpha_low, alpha_high, scale_low
        fraction = (alpha_init - alpha_low) / (alpha_high - alpha_low)
        self.alpha_latent = nn.Parameter(torch.tensor(math.log(fraction / (1 - fraction))))
        self.scale_latent = nn.Parameter(torch.tensor(math.log(math.expm1(scale_init - scale_low))))

    def alpha(self) -> torch.Tensor:
        return self.alpha_low + (self.alpha_high - self.alpha_low) * torch.sigmoid(self.alpha_latent)

    def scale(self) -> torch.Tensor:
        return F.softplus(self.scale_latent) + self.scale_low

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_image_pair(reconstruction, target)
        with torch.autocast(reconstruction.device.type, enabled=False):
            error = reconstruction.to(torch.promote_types(reconstruction.dtype, torch.float32)) - target
            alpha, scale = self.alpha().to(error.dtype), self.scale().to(error.dtype)
            return general_robust(error, alpha, scale).mean() + torch.log(scale) + log_partition(alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha().item():.4g}, scale={self.scale().item():.4g}"


@register_loss(
    "robust",
    "Barron's general robust loss: alpha 2 l2, 1 Charbonnier, 0 Cauchy, -2 Geman-McClure, -inf Welsch; scale c",
    alpha=1.0,
    scale=0.03,
)
def _make_robust(context: LossContext, alpha: float, scale: float) -> nn.Module:
    if math.isnan(alpha) or alpha == math.inf:
        raise ValueError(f"alpha must be a number or -inf (Welsch), got {alpha}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    return PixelLoss(robust_loss, alpha=float(alpha), scale=float(scale))


@register_loss(
    "robust_adaptive",
    "Barron's adaptive robust loss: NLL with alpha and scale learned with the model",
    alpha_low=0.001,
    alpha_high=1.999,
    alpha_init=1.0,
    scale_low=1e-5,
    scale_init=0.03,
)
def _make_robust_adaptive(context: LossContext, alpha_low, alpha_high, alpha_init, scale_low, scale_init) -> nn.Module:
    if not 0 <= alpha_low < alpha_init < alpha_high <= MAX_ADAPTIVE_ALPHA:
        raise ValueError(
            f"need 0 <= alpha_low < alpha_init < alpha_high <= {MAX_ADAPTIVE_ALPHA:g} (the density "
            f"is improper for alpha < 0), got {alpha_low}, {alpha_init}, {alpha_high}"
        )
    if not 0 < scale_low < scale_init:
        raise ValueError(f"need 0 < scale_low < scale_init, got {scale_low} and {scale_init}")
    return AdaptiveRobustLoss(
        float(alpha_low), float(alpha_high), float(alpha_init), float(scale_low), float(scale_init)
    )
