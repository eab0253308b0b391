"""Quality metrics on held-out images, per image (so results do not depend on the batch size), in float32 on
clamped [0, 1] images. SSIM and MS-SSIM are pytorch-msssim's: the mean of the sliding Gaussian-window map
(not Zhao et al.'s patch-centre evaluation). LPIPS is the lpips package's (AlexNet head by default); FSIM,
GMSD, MS-GMSD, HaarPSI, MDSI, VIF, VSI and DISTS are piq's (``bench.losses.iqa``, ``bench.losses.dists``), NLPD
is ``bench.losses.nlpd``'s.

``[metrics] compute`` chooses which are computed; PSNR always is (the "did it learn" verdict needs it).
"""

from __future__ import annotations

import torch
from pytorch_msssim import ssim

from bench.losses.measures import PER_PIXEL, Measure
from bench.losses.registry import measure_of
from bench.losses.structural import most_levels, ms_ssim_index

WINDOW = 11

# The one metric that is no loss; every other metric's record is its loss's (bench.losses.measures).
PSNR = Measure("PSNR", True, ("psnr",), PER_PIXEL, "10 log10(1 / MSE), per image", unit="dB")
# The metrics QualityMetrics computes, in the order of the tables' columns.
METRIC_NAMES = (
    "psnr",
    "ssim",
    "ms_ssim",
    "lpips",
    "l1",
    "mse",
    "fsim",
    "gmsd",
    "ms_gmsd",
    "haarpsi",
    "mdsi",
    "vif",
    "vsi",
    "dists",
    "nlpd",
)
METRICS: dict[str, Measure] = {name: PSNR if name == "psnr" else measure_of(name) for name in METRIC_NAMES}
# Today's metrics plus weight-free ones no loss of the default suite trains on, and DISTS where its weights load.
DEFAULT_METRICS = ("psnr", "ssim", "ms_ssim", "lpips", "l1", "mse", "fsim", "gmsd", "haarpsi", "dists")


def _prepare(reconstruction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if reconstruction.shape != target.shape or reconstruction.ndim != 4:
        raise ValueError(
            f"expected two N x C x H x W tensors of one shape, got {tuple(reconstruction.shape)} "
            f"and {tuple(target.shape)}"
        )
    return reconstruction.detach().float().clamp(0, 1), target.detach().float().clamp(0, 1)


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for data range 1."""
    x, y = _prepare(reconstruction, target)
    mse = (x - y).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def training_scores(reconstruction: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """The held-out scores taken every ``train.eval_every`` steps (history.csv's ``eval_<metric>``): the cheap
    ones, whose rankings over the steps tell how stable the final ranking is (bench.evaluate.stability)."""
    x, y = _prepare(reconstruction, target)
    return {
        "eval_psnr": psnr(x, y).mean().item(),
        "eval_ssim": ssim(x, y, data_range=1.0, size_average=False).mean().item(),
    }


def ms_ssim_per_image(reconstruction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int]:
    """MS-SSIM with as many scales as the image allows (5 from 161 px up; pytorch-msssim refuses smaller
    images outright), its standard weights renormalised; the level count is returned to be reported."""
    x, y = _prepare(reconstruction, target)
    levels = most_levels(min(x.shape[-2:]), WINDOW)
    return ms_ssim_index(x, y, levels=levels, size_average=False), levels


class QualityMetrics:
    """Holds the metric networks (built once) and computes the chosen metrics for one set of reconstructions.

    ``dists_weights = "auto"`` computes DISTS only if its trained weights (torchvision's VGG16 and piq's channel
    weights) are already in the torch hub cache: a DISTS of random features would rank nothing, and the default
    metrics should not download 528 MB. ``"imagenet"`` (downloading them if need be), ``"random"`` or a path
    compute it under the weights policy of ``bench.losses.dists``, as LPIPS does.
    """

    def __init__(
        self,
        lpips_net: str,
        lpips_weights: str,
        device: torch.device,
        seed: int = 0,
        compute: tuple[str, ...] = DEFAULT_METRICS,
        dists_weights: str = "auto",
        log=print,
    ) -> None:
        self.compute = ("psnr",) + tuple(name for name in compute if name != "psnr")
        self.lpips_net = lpips_net
        self.provenance: dict[str, object] = {}
        if "lpips" in self.compute:
            from bench.losses.pretrained import LPIPS_MIN_SIDE, build_lpips

            self.lpips_min_side = LPIPS_MIN_SIDE[lpips_net]
            self.lpips, self.lpips_weights_used = build_lpips(lpips_net, lpips_weights, seed)
            self.lpips = self.lpips.to(device)
            self.provenance.update(lpips_net=lpips_net, lpips_weights=self.lpips_weights_used)
        if "dists" in self.compute:
            from bench.losses.dists import build_dists, missing_files

            missing = missing_files() if dists_weights == "auto" else []
            if missing:  # the default metric set never downloads DISTS's 528 MB
                self.compute = tuple(name for name in self.compute if name != "dists")
                log(
                    f"DISTS metric left out: {' and '.join(str(path) for path in missing)} not in the torch hub cache; "
                    'put them there, or set [metrics] dists_weights = "imagenet" (downloads) or "random"'
                )
            else:
                self.dists, self.dists_weights_used = build_dists(dists_weights, seed)
                self.dists = self.dists.to(device)
                self.provenance.update(dists_weights=self.dists_weights_used)

    @torch.no_grad()
    def __call__(self, reconstruction: torch.Tensor, target: torch.Tensor) -> dict[str, object]:
        """The mean of every metric over the images, and how the metrics were computed."""
        values, levels = self.per_image(reconstruction, target)
        means: dict[str, object] = {name: value.mean().item() for name, value in values.items()}  # NaN: not computable
        if "ms_ssim" in values:
            means["ms_ssim_levels"] = levels
        means.update(self.provenance)
        return means

    @torch.no_grad()
    def per_image(self, reconstruction: torch.Tensor, target: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        """One value per image for each chosen metric (on the CPU), and the MS-SSIM level count used."""
        x, y = _prepare(reconstruction, target)
        levels = most_levels(min(x.shape[-2:]), WINDOW)
        values = {name: self._one(name, x, y).float().cpu() for name in self.compute}
        return values, levels

    def _one(self, name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One value per image; NaN where the images are smaller than the metric accepts."""
        from bench.losses import iqa, nlpd
        from bench.losses.dists import MIN_SIDE as DISTS_MIN_SIDE, dists_per_image
        from bench.losses.perceptual import lpips_per_image

        side, nan = min(x.shape[-2:]), torch.full((len(x),), float("nan"))
        if name == "psnr":
            return psnr(x, y)
        if name == "ssim":
            return ssim(x, y, data_range=1.0, size_average=False)
        if name == "ms_ssim":
            return ms_ssim_per_image(x, y)[0]
        if name == "l1":
            return (x - y).abs().flatten(1).mean(1)
        if name == "mse":
            return (x - y).pow(2).flatten(1).mean(1)
        if name == "lpips":
            return nan if side < self.lpips_min_side else lpips_per_image(self.lpips, x, y)
        if name == "dists":
            return nan if side < DISTS_MIN_SIDE else dists_per_image(self.dists, x, y)
        if name == "nlpd":
            levels = nlpd.most_nlpd_levels(side)
            return nan if not levels else torch.stack([nlpd.nlpd_loss(a[None], b[None], levels) for a, b in zip(x, y)])
        if side < iqa.measure(name).min_side:
            return nan
        return iqa.quality_index(name, x, y)
