"""Full-reference image-quality measures from piq, as losses and as held-out metrics.

piq (https://github.com/photosynthesis-team/piq) computes each measure; this module adds what a training loss
needs around it, the same for every measure:

- a similarity index (FSIM, HaarPSI, VIF, VSI) becomes ``1 - index``; a distance (GMSD, MS-GMSD, MDSI) is used
  as it is;
- float32 outside autocast (the measures divide by local gradient magnitudes and variances);
- images are clamped to [0, 1], the range piq asserts (the model's sigmoid keeps them there already);
- grayscale input: FSIM and MS-GMSD drop their chromatic part; MDSI and VSI, defined on colour only, see the
  gray channel three times (as piq does, without its warning);
- images smaller than a measure's minimum side (``MIN_SIDE``) are refused with the size they need;
- a fixed, tiny luminance ramp (``RAMP``, a tenth of one 8-bit level across the image) is added to both
  images before measuring. Every measure here takes square roots of local gradient magnitudes or deviations,
  whose slope at 0 is infinite: on a flat patch (a constant image, a region clipped at 0 or 1) or at
  identical images the gradient would be 0 * inf = NaN. The ramp keeps gradient magnitudes off 0; the
  values move by far less than the tests' tolerances against references without it;
- identical images (where the deviations themselves are 0) are measured without a graph: they are the
  minimum, so their gradient is 0;
- MDSI is computed in float64. Its deviation pooling takes the modulus of each pixel's (complex) value minus
  the image mean, whose gradient is NaN where the two are equal, and in float32 they are, by rounding, often
  enough to matter: the CPU profile of ``suites/iqa_losses.toml`` hit such a tie (one pixel of 4096) within
  its first 400 steps and the NaN gradient poisoned the model. In float64 a tie is some 10^9 times rarer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from bench.losses.checks import as_rgb, check_image_pair
from bench.losses.pixel import PixelLoss
from bench.losses.registry import LossContext, register_loss

RAMP = 0.1 / 255  # total rise of the ramp across the image, in data-range units


@dataclass(frozen=True)
class Measure:
    """One piq measure: its function (per-image values with ``reduction="none"``), its direction and limits."""

    function: Callable[..., torch.Tensor]
    similarity: bool  # True: higher is better, the loss is 1 - value; False: a distance, the loss is the value
    min_side: int  # smallest image side accepted (piq's own limit, or one the tests find finite values at)
    colour_only: bool = False  # defined on RGB only: grayscale is repeated to three channels
    chromatic_param: str = ""  # the parameter switching a chromatic term on, switched off for grayscale
    float64: bool = False  # computed in float64: float32 ties make its gradient NaN (module docstring)


@functools.lru_cache(maxsize=1)
def _measures() -> dict[str, Measure]:
    import piq  # on first use: `bench list` needs only the names and defaults below

    return {
        "fsim": Measure(piq.fsim, True, 8, chromatic_param="chromatic"),
        "gmsd": Measure(piq.gmsd, False, 4),
        "ms_gmsd": Measure(piq.multi_scale_gmsd, False, 17, chromatic_param="chromatic"),
        "haarpsi": Measure(piq.haarpsi, True, 16),
        "mdsi": Measure(piq.mdsi, False, 4, colour_only=True, float64=True),
        "vif": Measure(piq.vif_p, True, 41),
        "vsi": Measure(piq.vsi, True, 4, colour_only=True),
    }


MEASURE_NAMES = ("fsim", "gmsd", "ms_gmsd", "haarpsi", "mdsi", "vif", "vsi")
SUMMARIES = {
    "fsim": "1 - FSIM(c), phase congruency and gradient similarity (Zhang et al. 2011), piq",
    "gmsd": "gradient magnitude similarity deviation (Xue et al. 2014), piq",
    "ms_gmsd": "multi-scale GMSD (Zhang et al. 2017), piq",
    "haarpsi": "1 - HaarPSI, Haar wavelet perceptual similarity (Reisenhofer et al. 2018), piq",
    "mdsi": "mean deviation similarity index (Nafchi et al. 2016), a distance, piq",
    "vif": "1 - VIF in the pixel domain (Sheikh & Bovik 2006), piq",
    "vsi": "1 - VSI, visual saliency-induced index (Zhang et al. 2014), piq",
}


def measure(name: str) -> Measure:
    return _measures()[name]


def quality_index(name: str, x: torch.Tensor, y: torch.Tensor, **params) -> torch.Tensor:
    """piq's ``name`` measure of distorted ``x`` against reference ``y``, one value per image, with the rules
    above (float32, clamp, grayscale, minimum size, ramp)."""
    check_image_pair(x, y)
    spec = measure(name)
    side = min(x.shape[-2:])
    if side < spec.min_side:
        raise ValueError(f"{name} needs images of at least {spec.min_side} px, got {side} px")
    params = {**DEFAULTS[name], **params}
    if spec.chromatic_param and x.shape[1] == 1:
        params[spec.chromatic_param] = False
    with torch.autocast(x.device.type, enabled=False):
        result_dtype = torch.promote_types(x.dtype, torch.float32)
        wide = torch.float64 if spec.float64 else result_dtype
        x, y = x.to(wide).clamp(0, 1), y.to(wide).clamp(0, 1)
        if spec.colour_only:
            x, y = as_rgb(x), as_rgb(y)
        ramp = _ramp(x)
        x, y = x * (1 - RAMP) + ramp, y * (1 - RAMP) + ramp
        measured = lambda a, b: spec.function(a, b, data_range=1.0, reduction="none", **params)
        identical = (x == y).flatten(1).all(1)
        if not identical.any():
            return measured(x, y).to(result_dtype)
        # At identical images the measures' deviations are 0 and their square roots have infinite slope, so
        # backpropagating through them gives NaN even where the result is multiplied by 0. Identical images are
        # measured without a graph (they are the minimum: the gradient there is 0), and the others beside a
        # stand-in that differs from the reference everywhere, so no NaN is ever formed.
        stand_in = torch.where(identical.view(-1, 1, 1, 1), (y.detach() + 0.5) % 1, x)
        with torch.no_grad():
            at_rest = measured(y, y)
        return torch.where(identical, at_rest, measured(stand_in, y)).to(result_dtype)


def _ramp(images: torch.Tensor) -> torch.Tensor:
    height, width = images.shape[-2:]
    rows = torch.arange(height, dtype=images.dtype, device=images.device).view(-1, 1)
    columns = torch.arange(width, dtype=images.dtype, device=images.device).view(1, -1)
    return RAMP * (rows + columns) / max(height + width - 2, 1)


def iqa_loss(reconstruction: torch.Tensor, target: torch.Tensor, measure_name: str, **params) -> torch.Tensor:
    """Mean over images of 1 - index (similarities) or the distance itself."""
    values = quality_index(measure_name, reconstruction, target, **params)
    return (1 - values).mean() if measure(measure_name).similarity else values.mean()


def _register(name: str) -> None:
    @register_loss(name, SUMMARIES[name], **DEFAULTS[name])
    def _make(context: LossContext, **params) -> nn.Module:
        spec = measure(name)
        if context.image_size < spec.min_side:
            raise ValueError(f"{name} needs images of at least {spec.min_side} px, got {context.image_size} px")
        return PixelLoss(iqa_loss, measure_name=name, **params)


# Parameters a suite may set, with piq's defaults (listed here so `bench list` does not import piq).
DEFAULTS: dict[str, dict] = {
    "fsim": dict(chromatic=True),
    "gmsd": dict(t=170 / 255**2),
    "ms_gmsd": dict(chromatic=False),
    "haarpsi": dict(scales=3, subsample=True, c=30.0, alpha=4.2),
    "mdsi": dict(combination="sum"),
    "vif": dict(sigma_n_sq=2.0),
    "vsi": dict(),
}

for _name in MEASURE_NAMES:
    _register(_name)
