"""Full-reference image-quality measures from piq, as losses and as held-out metrics.

piq (https://github.com/photosynthesis-team/piq) computes each measure; this module adds what a training loss
needs around it, the same for every measure:

- a similarity index (FSIM, HaarPSI, VIF, VSI) becomes ``1 - index``; a distance (GMSD, MS-GMSD, MDSI) is used
  as it is;
- float32 outside autocast (the measures divide by local gradient magnitudes and variances);
- images are clamped to [0, 1], the range piq asserts (the model's sigmoid keeps them there already);
- grayscale input: FSIM and MS-GMSD drop their chromatic part; MDSI and VSI, defined on colour only, see the
  gray channel three times (as piq does, without its warning);
- images smaller than a measure's minimum side (``min_side``) are refused with the size they need;
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

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from bench.losses.checks import as_rgb, check_image_pair
from bench.losses.measures import DesignSize, Measure
from bench.losses.pixel import PixelLoss
from bench.losses.registry import LossContext, register_loss

RAMP = 0.1 / 255  # total rise of the ramp across the image, in data-range units


@dataclass(frozen=True)
class PiqMeasure:
    """One piq measure: what LossBench computes it with, its limits, and its record as a measure."""

    function_name: str  # piq's function giving per-image values with ``reduction="none"``
    record: Measure
    summary: str  # the line `bench list` shows
    defaults: dict  # parameters a suite may set, with piq's defaults (so `bench list` does not import piq)
    min_side: int  # smallest image side accepted (piq's own limit, or one the tests find finite values at)
    colour_only: bool = False  # defined on RGB only: grayscale is repeated to three channels
    chromatic_param: str = ""  # the parameter switching a chromatic term on, switched off for grayscale
    float64: bool = False  # computed in float64: float32 ties make its gradient NaN (module docstring)

    @property
    def function(self) -> Callable[..., torch.Tensor]:
        import piq  # on first use: `bench list` needs only the records below

        return getattr(piq, self.function_name)

    @property
    def similarity(self) -> bool:
        """True: higher is better, the loss is 1 - value; False: a distance, the loss is the value."""
        return self.record.higher_is_better


# The reference code of these measures shrinks images whose shorter side exceeds 256 px by round(side / 256)
# before measuring (piq does the same): their filters and constants were set for images of about 256 px.
SHRUNK_TO_256 = "reference code (and piq) average-pools images to a shorter side of about 256 px"
# These halve every image before measuring, with constants fitted on LIVE, CSIQ and TID images of about 512 px:
# they measure at about 256 px, the design size given (a lower bound).
HALVED_FROM_512 = "reference code (and piq) halves images; constants fitted on ~512 px LIVE/CSIQ/TID images"


def _piq(
    name: str,
    function_name: str,
    label: str,
    similarity: bool,
    design: DesignSize,
    reference: str,
    summary: str,
    defaults: dict,
    min_side: int,
    **limits,
) -> tuple[str, PiqMeasure]:
    """``name`` and its measure, whose loss optimises the metric of the same name."""
    record = Measure(label, similarity, (name,), design, reference)
    return name, PiqMeasure(function_name, record, summary, defaults, min_side, **limits)


PIQ_MEASURES: dict[str, PiqMeasure] = dict(
    [
        _piq(
            "fsim",
            "fsim",
            "FSIM",
            True,
            DesignSize(256, f"Zhang et al. 2011: {SHRUNK_TO_256}"),
            "piq FSIMc (FSIM for grayscale)",
            "1 - FSIM(c), phase congruency and gradient similarity (Zhang et al. 2011), piq",
            dict(chromatic=True),
            8,
            chromatic_param="chromatic",
        ),
        _piq(
            "gmsd",
            "gmsd",
            "GMSD",
            False,
            DesignSize(256, f"Xue et al. 2014: {HALVED_FROM_512}"),
            "piq",
            "gradient magnitude similarity deviation (Xue et al. 2014), piq",
            dict(t=170 / 255**2),
            4,
        ),
        _piq(
            "ms_gmsd",
            "multi_scale_gmsd",
            "MS-GMSD",
            False,
            DesignSize(0, "not stated (Zhang et al. 2017)"),
            "piq",
            "multi-scale GMSD (Zhang et al. 2017), piq",
            dict(chromatic=False),
            17,
            chromatic_param="chromatic",
        ),
        _piq(
            "haarpsi",
            "haarpsi",
            "HaarPSI",
            True,
            DesignSize(256, f"Reisenhofer et al. 2018: {HALVED_FROM_512}"),
            "piq",
            "1 - HaarPSI, Haar wavelet perceptual similarity (Reisenhofer et al. 2018), piq",
            dict(scales=3, subsample=True, c=30.0, alpha=4.2),
            16,
        ),
        _piq(
            "mdsi",
            "mdsi",
            "MDSI",
            False,
            DesignSize(256, f"Nafchi et al. 2016: {SHRUNK_TO_256}"),
            "piq",
            "mean deviation similarity index (Nafchi et al. 2016), a distance, piq",
            dict(combination="sum"),
            4,
            colour_only=True,
            float64=True,
        ),
        _piq(
            "vif",
            "vif_p",
            "VIF",
            True,
            DesignSize(0, "not stated (Sheikh & Bovik 2006)"),
            "piq, pixel domain",
            "1 - VIF in the pixel domain (Sheikh & Bovik 2006), piq",
            dict(sigma_n_sq=2.0),
            41,
        ),
        _piq(
            "vsi",
            "vsi",
            "VSI",
            True,
            DesignSize(256, f"Zhang et al. 2014: {SHRUNK_TO_256}; saliency at 256x256"),
            "piq",
            "1 - VSI, visual saliency-induced index (Zhang et al. 2014), piq",
            dict(),
            4,
            colour_only=True,
        ),
    ]
)
MEASURE_NAMES = tuple(PIQ_MEASURES)


def measure(name: str) -> PiqMeasure:
    return PIQ_MEASURES[name]


def quality_index(name: str, x: torch.Tensor, y: torch.Tensor, **params) -> torch.Tensor:
    """piq's ``name`` measure of distorted ``x`` against reference ``y``, one value per image, with the rules
    above (float32, clamp, grayscale, minimum size, ramp)."""
    check_image_pair(x, y)
    spec = measure(name)
    side = min(x.shape[-2:])
    if side < spec.min_side:
        raise ValueError(f"{name} needs images of at least {spec.min_side} px, got {side} px")
    params = {**spec.defaults, **params}
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
    spec = measure(name)

    @register_loss(name, spec.summary, **spec.defaults, measure=spec.record)
    def _make(context: LossContext, **params) -> nn.Module:
        if context.image_size < spec.min_side:
            raise ValueError(f"{name} needs images of at least {spec.min_side} px, got {context.image_size} px")
        return PixelLoss(iqa_loss, measure_name=name, **params)


for _name in MEASURE_NAMES:
    _register(_name)
