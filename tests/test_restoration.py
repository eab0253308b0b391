"""Restoration tasks (deblur, jpeg, super_resolution; denoise as before): the degradation is applied to the
network's input only, is the same for every entry of a seed, and matches an independent computation (scipy's
Gaussian filter, a PIL JPEG file at the same quality, torch's bicubic); the degraded input itself is the task's
trivial baseline."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import ndimage

from bench.cli import main
from bench.config.plan import RunSpec
from bench.config.suite import DataConfig, Entry, ModelConfig, Term, TrainConfig, load_suite
from bench.data.degrade import degrade, degraded_view
from bench.data.images import load_images
from bench.errors import BenchInputError
from bench.train.loop import model_inputs
from bench.config.suite import DEFAULT_MODELS
from bench.models import ModelContext, build_model
from bench.train.model import Denoiser, Upsampler

IMAGES = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
JPEG = dict(name="jpeg_task", task="jpeg", data={"jpeg_quality": 15})  # changes to the small suite


def pil_jpeg(image: torch.Tensor, quality: int, folder: Path) -> np.ndarray:
    """``image`` (3 x H x W) through a JPEG file written and read by PIL, as H x W x 3 floats in [0, 1]."""
    pixels = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(pixels).save(folder / "image.jpg", quality=quality)
    with Image.open(folder / "image.jpg") as file:
        return np.asarray(file.convert("RGB"), dtype=np.float32) / 255


def spec(task: str, entry: str, **data) -> RunSpec:
    return RunSpec(
        Entry(entry, (Term(entry, 1.0, {}, entry),)),
        0,
        task,
        DataConfig(**data),
        ModelConfig(DEFAULT_MODELS[task], ()),
        TrainConfig(),
        "none",
    )


def test_blur_and_jpeg_match_scipy_and_a_pil_jpeg_file(tmp_path):
    expected = np.stack(
        [
            [ndimage.gaussian_filter(channel, 1.5, mode="mirror", truncate=3.0) for channel in image]
            for image in IMAGES.numpy()
        ]
    )
    np.testing.assert_allclose(degrade("deblur", IMAGES, DataConfig(blur_sigma=1.5), 0).numpy(), expected, atol=1e-5)
    jpeg = degrade("jpeg", IMAGES, DataConfig(jpeg_quality=20), 0)
    for ours, image in zip(jpeg, IMAGES):
        np.testing.assert_array_equal(ours.permute(1, 2, 0).numpy(), pil_jpeg(image, 20, tmp_path))
    assert torch.equal(degrade("autoencode", IMAGES, DataConfig(), 0), IMAGES)


def test_super_resolution_inputs_are_a_bicubic_shrink_and_the_baseline_enlarges_them_back():
    ours = degrade("super_resolution", IMAGES, DataConfig(scale_factor=4), 0)
    small = torch.nn.functional.interpolate(IMAGES, scale_factor=0.25, mode="bicubic", antialias=True)
    assert ours.shape == small.shape == (2, 3, 6, 6)
    # PIL's and torch's bicubic kernels differ slightly (a = -0.5 against -0.75): close, never equal.
    assert (ours - small.clamp(0, 1)).abs().mean() < 0.01
    view = degraded_view("super_resolution", IMAGES, DataConfig(scale_factor=4), 0)
    torch_bicubic = torch.nn.functional.interpolate(small, size=(24, 24), mode="bicubic").clamp(0, 1)
    assert (view - torch_bicubic).abs().mean() < 0.01 < (view - IMAGES).abs().mean()


def test_the_upsampler_turns_the_small_input_into_the_target_size_and_a_same_size_net_is_refused(tmp_path, small_suite):
    model = build_model("upsampler", {}, ModelContext(24, 3, "super_resolution", scale_factor=4), seed=0)
    small = degrade("super_resolution", IMAGES, DataConfig(scale_factor=4), 0)
    assert isinstance(model, Upsampler) and model(small).shape == IMAGES.shape
    (tmp_path / "sr.toml").write_text(
        small_suite(name="jpeg_task", task="super_resolution", data={"scale_factor": 4}, model={"name": "denoiser"})
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(["run", str(tmp_path / "sr.toml"), "--out", str(tmp_path), "--no-progress", "--no-timing"]) == 2
    assert "model 'denoiser'" in err.getvalue()
    assert "whose targets have shape (2, 3, 32, 32)" in err.getvalue()


@pytest.mark.parametrize("task", ["denoise", "deblur", "jpeg", "super_resolution"])
def test_every_entry_of_a_seed_sees_the_same_degraded_inputs_and_the_clean_target_is_untouched(task):
    clean = IMAGES.clone()
    first, second = model_inputs(spec(task, "mse"), clean, 7), model_inputs(spec(task, "l1"), clean, 7)
    assert torch.equal(first, second) and not torch.equal(first, clean)
    assert torch.equal(clean, IMAGES)  # degrading made a copy: the target stays clean
    scale = 4 if task == "super_resolution" else 1
    model = build_model(DEFAULT_MODELS[task], {}, ModelContext(32, 3, task, scale_factor=scale), seed=0)
    assert isinstance(model, Upsampler if task == "super_resolution" else Denoiser)


def test_bad_degradation_settings_are_one_clear_error(tmp_path):
    suite = tmp_path / "bad.toml"
    suite.write_text('task = "jpeg"\n[data]\njpeg_quality = 0\n[[entry]]\nname = "mse"\nloss = "mse"\n')
    with pytest.raises(BenchInputError, match=r"bad.toml: data.jpeg_quality"):
        load_suite(suite)


def test_a_jpeg_run_scores_the_jpeg_input_as_its_trivial_baseline(tmp_path, small_suite):
    (tmp_path / "jpeg.toml").write_text(small_suite(**JPEG))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["run", str(tmp_path / "jpeg.toml"), "--out", str(tmp_path), "--no-progress", "--no-timing"]) == 0
    (folder,) = (tmp_path / "jpeg_task").iterdir()
    quality = pd.read_csv(folder / "quality.csv").set_index("entry")
    assert list(quality.index) == ["mse", "baseline-jpeg-input", "baseline-mean-colour"]
    crops = load_images(load_suite(tmp_path / "jpeg.toml").data).eval
    psnr = [
        10 * np.log10(1 / np.mean((pil_jpeg(crop, 15, tmp_path) - crop.permute(1, 2, 0).numpy()) ** 2))
        for crop in crops
    ]
    assert quality.loc["baseline-jpeg-input", "psnr"] == pytest.approx(np.mean(psnr), abs=1e-3)
