"""Images for training and evaluation, offline: scikit-image's bundled photographs, procedural images, or a folder.

All images become float32 tensors 3 x R x R in [0, 1]: centre square crop, then antialiased resize to R
(images smaller than R are upscaled bilinearly, and a warning says so). The train/eval split is fixed by the
image list, not by the run seed, so every seed evaluates on the same held-out images.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from bench.errors import BenchInputError
from bench.suite import DataConfig

# Sample photographs that ship inside the scikit-image wheel (no download); grayscale ones are expanded to RGB.
BUNDLED_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
    "camera", "moon", "brick", "grass", "gravel", "coins", "cell", "text", "page",
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


@dataclass(frozen=True)
class ImageSet:
    train: torch.Tensor  # N x 3 x R x R, float32 in [0, 1]
    eval: torch.Tensor
    train_names: tuple[str, ...]
    eval_names: tuple[str, ...]


def to_square_tensor(image: np.ndarray, resolution: int) -> torch.Tensor:
    """HxW, HxWx3 or HxWx4 array (uint8, bool or float) -> 3 x R x R float32 in [0, 1]."""
    array = np.asarray(image)
    if array.dtype == bool:
        array = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / np.iinfo(array.dtype).max
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if tensor.ndim == 2:
        tensor = tensor[None].expand(3, -1, -1)
    else:
        tensor = tensor[..., :3].permute(2, 0, 1)
        if tensor.shape[0] == 1:
            tensor = tensor.expand(3, -1, -1)
    height, width = tensor.shape[1:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = tensor[:, top:top + side, left:left + side][None]
    resized = F.interpolate(square, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return resized[0].clamp(0, 1).contiguous()


def procedural_image(index: int, resolution: int) -> torch.Tensor:
    """Deterministic synthetic image: smooth colour gradients, sharp shapes and fine texture, so that
    pixel, structural and frequency losses all have something to reconstruct."""
    generator = torch.Generator().manual_seed(10_000 + index)
    axis = torch.linspace(0, 1, resolution)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    colours = torch.rand(3, 3, generator=generator)
    angle = torch.rand(1, generator=generator).item() * 2 * torch.pi
    ramp = (x * np.cos(angle) + y * np.sin(angle)).clamp(0, 1)
    image = colours[0][:, None, None] * (1 - ramp) + colours[1][:, None, None] * ramp
    for _ in range(6):  # discs and rectangles with hard edges
        cx, cy, size = torch.rand(3, generator=generator).tolist()
        colour = torch.rand(3, 1, 1, generator=generator)
        if torch.rand(1, generator=generator).item() < 0.5:
            mask = ((x - cx) ** 2 + (y - cy) ** 2) < (0.05 + 0.2 * size) ** 2
        else:
            mask = ((x - cx).abs() < 0.05 + 0.15 * size) & ((y - cy).abs() < 0.05 + 0.1 * size)
        image = torch.where(mask, colour, image)
    frequency = 8 + 40 * torch.rand(1, generator=generator).item()
    stripes = 0.08 * torch.sin(2 * torch.pi * frequency * (x + 0.5 * y))
    return (image + stripes).clamp(0, 1)


def bundled_images(count: int, resolution: int) -> tuple[list[torch.Tensor], list[str]]:
    from skimage import data as skdata

    images, names = [], []
    for name in BUNDLED_PHOTOS[:count]:
        images.append(to_square_tensor(getattr(skdata, name)(), resolution))
        names.append(f"skimage:{name}")
    for index in range(count - len(images)):
        images.append(procedural_image(index, resolution))
        names.append(f"procedural:{index}")
    return images, names


def folder_images(folder: Path, resolution: int) -> tuple[list[torch.Tensor], list[str]]:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    images, names = [], []
    for file in files:
        try:
            with Image.open(file) as opened:
                array = np.asarray(opened.convert("RGB"))
        except (UnidentifiedImageError, OSError) as error:
            warnings.warn(f"skipping unreadable image {file}: {error}")
            continue
        if min(array.shape[:2]) < resolution:
            warnings.warn(f"{file} is {array.shape[1]}x{array.shape[0]}, smaller than {resolution}: upscaled")
        images.append(to_square_tensor(array, resolution))
        names.append(str(file.relative_to(folder)))
    return images, names


def load_images(config: DataConfig, folder: Path | None = None) -> ImageSet:
    if config.source == "folder":
        images, names = folder_images(folder, config.resolution)
        where = f"data.path ({folder})"
    else:
        images, names = bundled_images(config.images, config.resolution)
        where = "data.images"
    if len(images) <= config.eval_images:
        raise BenchInputError(
            f"found {len(images)} usable images, need more than eval_images = {config.eval_images}",
            where=where, fix="add images or lower data.eval_images",
        )
    # Every k-th image is held out, so both sets mix photographs and procedural images.
    stride = len(images) / config.eval_images
    eval_index = {int(i * stride + stride / 2) for i in range(config.eval_images)}
    train_index = [i for i in range(len(images)) if i not in eval_index]
    ordered_eval = sorted(eval_index)
    return ImageSet(
        train=torch.stack([images[i] for i in train_index]),
        eval=torch.stack([images[i] for i in ordered_eval]),
        train_names=tuple(names[i] for i in train_index),
        eval_names=tuple(names[i] for i in ordered_eval),
    )


def batch_schedule(num_images: int, batch_size: int, steps: int, seed: int, flip: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(indices, flip mask) per step, from the seed alone: every entry of a seed sees the same batches.

    Epochs are reshuffled permutations; a batch larger than the set draws with repetition across epochs.
    """
    generator = torch.Generator().manual_seed(seed)
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        while order.numel() < batch_size:
            order = torch.cat([order, torch.randperm(num_images, generator=generator)])
        indices, order = order[:batch_size], order[batch_size:]
        flips = torch.rand(batch_size, generator=generator) < 0.5 if flip else torch.zeros(batch_size, dtype=torch.bool)
        yield indices, flips


def make_batch(images: torch.Tensor, indices: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    batch = images[indices.to(images.device)]
    return torch.where(flips.to(images.device)[:, None, None, None], batch.flip(-1), batch)


def add_noise(images: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """Noisy inputs for the denoise task from a seeded generator on the images' own device: reproducible per
    device type, and no host-to-device copy in the training step."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype) * std
    return (images + noise).clamp(0, 1)
