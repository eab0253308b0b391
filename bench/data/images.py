"""Training crops and held-out evaluation crops from bundled photographs, a folder of images or a named dataset
(bench.data.datasets: fetched once, then read from the cache).

Photographs are split once, by name, into training and held-out photographs (the same for every seed), or, with
``data.eval_source``, training uses every photograph of ``data.source`` and evaluation every one of the other
source. Training
draws random crops of the training resolution from the training photographs, at ``data.scale`` of their native
size, with random horizontal flips and quarter turns: the crop sequence comes from the run seed alone, so every
entry of a seed sees the same crops in the same order. Evaluation uses a fixed set of ``data.eval_crops`` crops of
the held-out photographs, drawn from a fixed generator (the same for every seed and entry), never flipped.

Images are float32 tensors 3 x H x W in [0, 1]; grayscale photographs are expanded to RGB.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from bench.errors import BenchInputError
from bench.config.suite import DataConfig

# Photographs that ship inside scikit-image's wheel (no download); grayscale ones are expanded to RGB.
BUNDLED_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "camera",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "moon",
    "brick",
    "grass",
    "gravel",
    "coins",
    "cell",
    "clock",
    "text",
    "page",
)
# Two more colour photographs from installed packages: matplotlib's sample data and scikit-image's stereo pair
# (its left view only: the right view is nearly the same picture).
OTHER_PHOTOS = ("grace_hopper", "motorcycle")
# The order data.images counts in: the held-out photographs first (data.eval_images = N holds out the first N),
# then the six colour photographs, then the grayscale ones. The default (data.images = 10) trains on colour
# photographs only: with the nine grayscale ones as well, most training crops were gray and L1-type losses
# sat for hundreds of steps, some seeds for the whole CPU run, on gray reconstructions of colour crops.
PHOTO_ORDER = (*BUNDLED_PHOTOS[:8], *OTHER_PHOTOS, *BUNDLED_PHOTOS[8:])
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
EVAL_CROP_SEED = 20_240_601  # the held-out crops' positions: fixed, whatever the run seed
EVAL_NOISE_SEED = 1_000_003  # the held-out noisy inputs of the denoise task: the same for every run


@dataclass(frozen=True)
class ImageSet:
    train: tuple[torch.Tensor, ...]  # training photographs, 3 x H x W each (H, W >= the training resolution)
    eval: torch.Tensor  # N x 3 x R x R held-out evaluation crops
    train_names: tuple[str, ...]  # one per training photograph
    eval_names: tuple[str, ...]  # one per evaluation crop: "photo@top,left"
    eval_photos: tuple[str, ...]  # the held-out photographs the evaluation crops come from
    images_sha256: str  # of the training and evaluation photographs' names and pixels (image_list_sha256)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxW, HxWx3 or HxWx4 array (uint8, bool or float) -> 3 x H x W float32 in [0, 1]."""
    array = np.asarray(image)
    if array.dtype == bool:
        array = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / np.iinfo(array.dtype).max
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if tensor.ndim == 2:
        return tensor[None].expand(3, -1, -1).contiguous()
    tensor = tensor[..., :3].permute(2, 0, 1)
    return (tensor.expand(3, -1, -1) if tensor.shape[0] == 1 else tensor).contiguous()


def rescale(photo: torch.Tensor, scale: float, min_side: int) -> tuple[torch.Tensor, bool]:
    """``photo`` resized by ``scale`` (antialiased), or enlarged so its shorter side is ``min_side`` if it would
    be smaller; the flag says whether it had to be enlarged."""
    height, width = photo.shape[-2:]
    factor = scale
    enlarged = min(height, width) * scale < min_side
    if enlarged:
        factor = min_side / min(height, width)
    if factor == 1.0:
        return photo, enlarged
    size = (max(min_side, round(height * factor)), max(min_side, round(width * factor)))
    resized = F.interpolate(photo[None], size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized[0].clamp(0, 1).contiguous(), enlarged


def bundled_photo(name: str) -> np.ndarray:
    from skimage import data as skdata

    if name == "grace_hopper":
        from matplotlib.cbook import get_sample_data
        from PIL import Image

        with get_sample_data("grace_hopper.jpg") as file, Image.open(file) as image:
            return np.asarray(image.convert("RGB"))
    if name == "motorcycle":
        return skdata.stereo_motorcycle()[0]
    return getattr(skdata, name)()


def bundled_names(count: int) -> list[str]:
    return list(PHOTO_ORDER[:count])


def folder_photos(folder: Path) -> list[tuple[str, Callable[[], np.ndarray]]]:
    from PIL import UnidentifiedImageError

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    photos = []
    for file in files:
        try:
            array = _photo(file)
        except (UnidentifiedImageError, OSError) as error:
            warnings.warn(f"skipping unreadable image {file}: {error}")
            continue
        photos.append((str(file.relative_to(folder)), lambda array=array: array))
    return photos


def dataset_photos(name: str, cache: Path | None, progress: bool) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """A named dataset's photographs, in name order, fetched into the cache first if they are not there; a .zip
    is read member by member, never unpacked."""
    from bench.data.datasets import DATASETS, fetch

    folder = fetch(name, cache, progress)
    photos = []
    for file in DATASETS[name].files:
        path = folder / file
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as archive:
                members = sorted(m for m in archive.namelist() if Path(m).suffix.lower() in IMAGE_SUFFIXES)
            photos += [(member, lambda path=path, member=member: _zip_photo(path, member)) for member in members]
        else:
            photos.append((file, lambda path=path: _photo(path)))
    return photos


def _photo(file) -> np.ndarray:
    from PIL import Image

    with Image.open(file) as opened:
        return np.asarray(opened.convert("RGB"))


def _zip_photo(archive: Path, member: str) -> np.ndarray:
    with zipfile.ZipFile(archive) as opened, opened.open(member) as file:
        return _photo(file)


def photo_sources(
    source: str, images: int, folder: Path | None, cache: Path | None, progress: bool
) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """(name, loader) of every photograph a source offers: the first ``images`` bundled ones, a folder's image
    files, or a named dataset's photographs."""
    if source == "bundled":
        if images > len(PHOTO_ORDER):
            raise BenchInputError(
                f"there are {len(PHOTO_ORDER)} bundled photographs, {images} were asked for",
                where="data.images",
                fix=f"use at most {len(PHOTO_ORDER)}, or a folder source",
            )
        return [(name, lambda name=name: bundled_photo(name)) for name in bundled_names(images)]
    if source == "folder":
        return folder_photos(folder)
    return dataset_photos(source, cache, progress)


def split_photos(names: list[str], eval_count: int, source: str) -> tuple[list[int], list[int]]:
    """(train, eval) indices: bundled photographs hold out the first ``eval_count`` (BUNDLED_PHOTOS lists them
    first); other sources hold out every k-th file in name order, so both sets span the source."""
    if source == "bundled":
        return list(range(eval_count, len(names))), list(range(eval_count))
    stride = len(names) / eval_count
    held_out = sorted({int(i * stride + stride / 2) for i in range(eval_count)})
    return [i for i in range(len(names)) if i not in held_out], held_out


def eval_crop_positions(sizes: list[tuple[int, int]], resolution: int, count: int) -> list[tuple[int, int, int]]:
    """(photo, top, left) of ``count`` crops, round-robin over the photographs, from a fixed generator."""
    generator = torch.Generator().manual_seed(EVAL_CROP_SEED)
    positions = []
    for index in range(count):
        photo = index % len(sizes)
        height, width = sizes[photo]
        top, left = (
            int(torch.randint(0, side - resolution + 1, (1,), generator=generator)) for side in (height, width)
        )
        positions.append((photo, top, left))
    return positions


def pixels_sha256(array: np.ndarray) -> str:
    """SHA-256 of a decoded photograph: its shape, dtype and pixels (not its file, so a re-encoded file with the
    same pixels has the same hash)."""
    array = np.ascontiguousarray(array)
    return hashlib.sha256(f"{array.shape} {array.dtype}\n".encode() + array.tobytes()).hexdigest()


def image_list_sha256(train: list[tuple[str, str]], held_out: list[tuple[str, str]]) -> str:
    """One hash of the exact photographs used, as (name, pixels_sha256) pairs, each with its role."""
    lines = [f"train\t{name}\t{digest}" for name, digest in train] + [
        f"eval\t{name}\t{digest}" for name, digest in held_out
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def load_images(
    config: DataConfig,
    folder: Path | None = None,
    *,
    eval_folder: Path | None = None,
    cache: Path | None = None,
    progress: bool = False,
) -> ImageSet:
    """``folder`` / ``eval_folder``: data.path / data.eval_path resolved; ``cache``: data.cache resolved."""
    sources = photo_sources(config.source, config.images, folder, cache, progress)
    if config.eval_source is None:
        if len(sources) <= config.eval_images:
            where, fix = {
                "bundled": ("data.images", "use more photographs or lower data.eval_images"),
                "folder": (f"data.path ({folder})", "add images to the folder or lower data.eval_images"),
            }.get(config.source, (f"data.source ({config.source})", "lower data.eval_images"))
            raise BenchInputError(
                f"found {len(sources)} usable images, need more than eval_images = {config.eval_images}",
                where=where,
                fix=fix,
            )
        train_index, eval_index = split_photos([name for name, _ in sources], config.eval_images, config.source)
        train_sources, eval_sources = [sources[i] for i in train_index], [sources[i] for i in eval_index]
    else:
        train_sources = sources
        eval_sources = photo_sources(config.eval_source, config.images, eval_folder, cache, progress)
    if config.split == "validation":  # the held-out photographs stay unseen: score on some training ones instead
        if len(train_sources) <= config.validation_images:
            raise BenchInputError(
                f"{len(train_sources)} training photographs cannot spare data.validation_images = "
                f"{config.validation_images} to choose learning rates on",
                where="data.validation_images",
                fix="use fewer, or more training photographs",
            )
        train_index, validation_index = split_photos(
            [name for name, _ in train_sources], config.validation_images, config.source
        )
        train_sources, eval_sources = (
            [train_sources[i] for i in train_index],
            [train_sources[i] for i in validation_index],
        )
    for role, found in (("data.source", train_sources), ("data.eval_source", eval_sources)):
        if not found:
            raise BenchInputError(
                "found no usable images",
                where=f"{role} ({getattr(config, role[5:])})",
                fix="add images to the folder, or choose another source",
            )
    train, train_digests = _prepare(train_sources, config)
    held_out, eval_digests = _prepare(eval_sources, config)
    positions = eval_crop_positions(
        [tuple(photo.shape[-2:]) for photo in held_out], config.resolution, config.eval_crops
    )
    side = config.resolution
    crops = [held_out[p][:, top : top + side, left : left + side] for p, top, left in positions]
    eval_names = [name for name, _ in eval_sources]
    return ImageSet(
        train=tuple(train),
        eval=torch.stack(crops).contiguous(),
        train_names=tuple(name for name, _ in train_sources),
        eval_names=tuple(f"{eval_names[p]}@{top},{left}" for p, top, left in positions),
        eval_photos=tuple(eval_names),
        images_sha256=image_list_sha256(train_digests, eval_digests),
    )


def _prepare(
    sources: list[tuple[str, Callable[[], np.ndarray]]], config: DataConfig
) -> tuple[list[torch.Tensor], list[tuple[str, str]]]:
    """Each photograph loaded, hashed and resized by data.scale (enlarged, with a warning, if too small)."""
    photos, digests = [], []
    for name, load in sources:
        array = load()
        digests.append((name, pixels_sha256(array)))
        photo, enlarged = rescale(to_tensor(array), config.scale, config.resolution)
        if enlarged:
            warnings.warn(f"{name} is smaller than {config.resolution} px at scale {config.scale}: enlarged to fit")
        photos.append(photo)
    return photos, digests


def crop_schedule(
    sizes: list[tuple[int, int]], resolution: int, batch_size: int, steps: int, seed: int, flip: bool, rotate: bool
) -> Iterator[torch.Tensor]:
    """Per step, a batch_size x 5 integer tensor (photo, top, left, flip, quarter turns), from the seed alone:
    every entry of a seed trains on the same crops in the same order. Photographs are drawn uniformly."""
    generator = torch.Generator().manual_seed(seed)
    heights = torch.tensor([h for h, _ in sizes])
    widths = torch.tensor([w for _, w in sizes])
    for _ in range(steps):
        photo = torch.randint(0, len(sizes), (batch_size,), generator=generator)
        where = torch.rand(batch_size, 2, generator=generator)
        top = (where[:, 0] * (heights[photo] - resolution + 1)).long()
        left = (where[:, 1] * (widths[photo] - resolution + 1)).long()
        flips = torch.rand(batch_size, generator=generator) < 0.5
        turns = torch.randint(0, 4, (batch_size,), generator=generator)
        yield torch.stack([photo, top, left, flips.long() * flip, turns * rotate], dim=1)


@dataclass(frozen=True)
class PhotoPixels:
    """The training photographs, whatever their sizes, as one C x (sum of H * W) tensor on the training device,
    with where each output pixel of a flipped and turned crop comes from, so that a batch of crops is a single
    gather: no per-crop slicing, flipping and stacking at every step."""

    pixels: torch.Tensor  # C x (sum over photographs of H * W), each photograph's rows one after another
    offsets: torch.Tensor  # where each photograph starts along pixels' second dimension
    widths: torch.Tensor
    sources: torch.Tensor  # 8 x 2 x R x R: per (flip, quarter turns), the (row, column) each crop pixel reads

    @classmethod
    def pack(cls, photos: tuple[torch.Tensor, ...], resolution: int, device: torch.device | str = "cpu") -> PhotoPixels:
        sizes = torch.tensor([photo.shape[-2] * photo.shape[-1] for photo in photos])
        line = torch.arange(resolution)
        grid = torch.stack(torch.meshgrid(line, line, indexing="ij"))  # each pixel's own (row, column)
        # Flipping and turning the grid of coordinates as make_batch's crops are flipped and turned says, for each
        # output pixel, which pixel of the crop it shows.
        sources = torch.stack(
            [
                torch.rot90(grid.flip(-1) if flip else grid, turns, dims=(-2, -1))
                for flip in (0, 1)
                for turns in range(4)
            ]
        )
        return cls(
            pixels=torch.cat([photo.reshape(photo.shape[0], -1) for photo in photos], dim=1).to(device),
            offsets=(sizes.cumsum(0) - sizes).to(device),
            widths=torch.tensor([photo.shape[-1] for photo in photos], device=device),
            sources=sources.to(device),
        )


def make_batch(photos: PhotoPixels, crops: torch.Tensor) -> torch.Tensor:
    """The crops one ``crop_schedule`` step names, flipped left-right and then turned by ``torch.rot90(crop,
    turns, dims=(-2, -1))``, as an N x C x R x R batch gathered on the photographs' device in one indexing
    operation."""
    photo, top, left, flips, turns = crops.to(photos.pixels.device, non_blocking=True).unbind(1)
    rows, cols = photos.sources[flips * 4 + turns].unbind(1)
    corner = photos.offsets[photo] + top * photos.widths[photo] + left
    index = corner.view(-1, 1, 1) + rows * photos.widths[photo].view(-1, 1, 1) + cols
    # index_select of the flattened indices: a quarter of advanced indexing's time on a CPU.
    return photos.pixels.index_select(1, index.flatten()).view(-1, *index.shape).transpose(0, 1)


def add_noise(images: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """Noisy inputs for the denoise task from a seeded generator on the images' own device: reproducible per
    device type, and no host-to-device copy in the training step."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype) * std
    return (images + noise).clamp(0, 1)
