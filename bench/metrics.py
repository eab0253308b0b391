"""Quality metrics on held-out images, per image (so results do not depend on the batch size), in float32 on
clamped [0, 1] images. SSIM and MS-SSIM are pytorch-msssim's: the mean of the sliding Gaussian-window map
(not Zhao et al.'s patch-centre evaluation). LPIPS is the lpips package's (AlexNet head by default)."""

from __future__ import annotations


import torch
from pytorch_msssim import ssim

from bench.losses.structural import most_levels, ms_ssim_index

WINDOW = 11


def _prepare(reconstruction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if reconstruction.shape != target.shape or reconstruction.ndim != 4:
        raise ValueError(f"expected two N x C x H x W tensors of one shape, got {tuple(reconstruction.shape)} "
                         f"and {tuple(target.shape)}")
    return reconstruction.detach().float().clamp(0, 1), target.detach().float().clamp(0, 1)


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for data range 1."""
    x, y = _prepare(reconstruction, target)
    mse = (x - y).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def ms_ssim_per_image(reconstruction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int]:
    """MS-SSIM with as many scales as the image allows (5 from 161 px up; pytorch-msssim refuses smaller
    images outright), its standard weights renormalised; the level count is returned to be reported."""
    x, y = _prepare(reconstruction, target)
    levels = most_levels(min(x.shape[-2:]), WINDOW)
    return ms_ssim_index(x, y, levels=levels, size_average=False), levels


class QualityMetrics:
    """Holds the LPIPS network (built once) and computes every metric for one set of reconstructions."""

    def __init__(self, lpips_net: str, lpips_weights: str, device: torch.device, seed: int = 0) -> None:
        from bench.losses.pretrained import LPIPS_MIN_SIDE, build_lpips

        self.lpips_min_side = LPIPS_MIN_SIDE[lpips_net]

        self.lpips, self.lpips_weights_used = build_lpips(lpips_net, lpips_weights, seed)
        self.lpips = self.lpips.to(device)
        self.lpips_net = lpips_net

    @torch.no_grad()
    def __call__(self, reconstruction: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """The mean of every metric over the images, and how the metrics were computed."""
        values, levels = self.per_image(reconstruction, target)
        means = {name: value.mean().item() for name, value in values.items()}  # NaN where not computable
        means.update(ms_ssim_levels=levels, lpips_net=self.lpips_net, lpips_weights=self.lpips_weights_used)
        return means

    @torch.no_grad()
    def per_image(self, reconstruction: torch.Tensor, target: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        """One value per image for each metric (on the CPU), and the MS-SSIM level count used."""
        x, y = _prepare(reconstruction, target)
        ms_values, levels = ms_ssim_per_image(x, y)
        values = {
            "psnr": psnr(x, y),
            "ssim": ssim(x, y, data_range=1.0, size_average=False),
            "ms_ssim": ms_values,
            "lpips": self._lpips(x, y),
            "l1": (x - y).abs().flatten(1).mean(1),
            "mse": (x - y).pow(2).flatten(1).mean(1),
        }
        return {name: value.float().cpu() for name, value in values.items()}, levels

    def _lpips(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One value per image; NaN below the backbone's smallest input."""
        from bench.losses.perceptual import lpips_per_image

        if min(x.shape[-2:]) < self.lpips_min_side:
            return torch.full((len(x),), float("nan"))
        return lpips_per_image(self.lpips, x, y)  # per image: no batch statistics inside LPIPS
