"""The degradations of the restoration tasks, applied to a network's input only (its target stays clean).

- ``denoise``: additive Gaussian noise of ``data.noise_std``, from a seeded generator (``bench.data.images``);
- ``deblur``: a Gaussian blur of ``data.blur_sigma`` px (torchvision's, reflect padding);
- ``jpeg``: a JPEG round trip at ``data.jpeg_quality`` (PIL's encoder and decoder, 8-bit, 4:2:0 chroma);
- ``super_resolution``: the image shrunk by ``data.scale_factor`` by PIL's bicubic resampling (antialiased) on
  float pixels. The net sees the small image and upsamples it (the built-in "upsampler"); its trivial baseline
  is the small image enlarged back by PIL's bicubic filter (``degraded_view``).

Blur and JPEG are deterministic, and the noise depends on the seed and step only, so every entry of a seed sees
the same degraded inputs.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.functional import gaussian_blur

from bench.data.images import add_noise

RESTORATION_TASKS = ("denoise", "deblur", "jpeg", "super_resolution")


def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    kernel = 2 * math.ceil(3 * sigma) + 1  # +-3 sigma holds all but 0.3% of the Gaussian's weight
    return gaussian_blur(images, [kernel, kernel], [sigma, sigma])


def jpeg_compressed(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Each image saved as a JPEG at ``quality`` by PIL and decoded again."""
    decoded = []
    for image in images:
        pixels = (image.detach().permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        array = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.float32) / 255
        decoded.append(torch.from_numpy(array).permute(2, 0, 1))
    return torch.stack(decoded).to(images)


def _each_channel(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Each channel resized to ``size`` (height, width) by PIL's bicubic filter on float32 pixels, unclamped."""
    height, width = images.shape[-2:]
    channels = [
        np.asarray(Image.fromarray(channel, mode="F").resize(size[::-1], Image.BICUBIC))
        for channel in images.detach().float().cpu().reshape(-1, height, width).numpy()
    ]
    return torch.from_numpy(np.stack(channels)).reshape(*images.shape[:-2], *size).to(images)


def shrunk(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Each image shrunk by ``factor`` (antialiased bicubic, PIL), clamped to [0, 1]."""
    height, width = images.shape[-2:]
    return _each_channel(images, (height // factor, width // factor)).clamp(0, 1)


def shrunk_and_enlarged(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Each image shrunk by ``factor`` and enlarged back to its size with PIL's bicubic filter."""
    height, width = images.shape[-2:]
    small = _each_channel(images, (height // factor, width // factor))
    return _each_channel(small, (height, width)).clamp(0, 1)


def input_scale(task: str, data) -> int:
    """How many times smaller than its target the network's input is (``ModelContext.scale_factor``)."""
    return data.scale_factor if task == "super_resolution" else 1


def degrade(task: str, images: torch.Tensor, data, noise_seed: int) -> torch.Tensor:
    """``images`` as the network of ``task`` sees them (``data``: the suite's DataConfig); unchanged when
    autoencoding."""
    if task == "denoise":
        return add_noise(images, data.noise_std, noise_seed)
    if task == "deblur":
        return blurred(images, data.blur_sigma)
    if task == "jpeg":
        return jpeg_compressed(images, data.jpeg_quality)
    if task == "super_resolution":
        return shrunk(images, data.scale_factor)
    return images


def degraded_view(task: str, images: torch.Tensor, data, noise_seed: int) -> torch.Tensor:
    """The degraded input at the target's size: the task's trivial answer (bench.data.baselines)."""
    if task == "super_resolution":
        return shrunk_and_enlarged(images, data.scale_factor)
    return degrade(task, images, data, noise_seed)
