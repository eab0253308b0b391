"""The model really reaches the configured resolution; every entry starts from the same weights and batches."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from bench.data import batch_schedule, load_images, make_batch, procedural_image, to_square_tensor
from bench.errors import BenchInputError
from bench.model import Autoencoder, build_model, stage_channels
from bench.suite import DataConfig


def test_default_decoder_outputs_512x512_rgb_in_unit_range():
    model = Autoencoder()  # defaults: 512x512
    decoder_stages = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(decoder_stages) == 6  # the seed's 4 stride-2 stages reach only 128x128
    with torch.no_grad():
        out = model.decoder(torch.randn(1, 256))
    assert out.shape == (1, 3, 512, 512)
    assert 0 <= out.min() and out.max() <= 1


def test_seed_decoder_trap_pinned():
    """The seed's decoder has 4 stride-2 transposed convs from 8x8: 8 * 2**4 = 128, not 512."""
    assert len(stage_channels(128)) == 4 and len(stage_channels(512)) == 6


@pytest.mark.parametrize("resolution", [16, 32, 64, 128])
def test_autoencoder_round_trip_shape(resolution):
    model = Autoencoder(resolution, latent_dim=8).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, resolution, resolution)).shape == (2, 3, resolution, resolution)


def test_unreachable_resolution_is_refused():
    with pytest.raises(ValueError, match="8 \\* 2\\*\\*k"):
        Autoencoder(100)


def test_same_seed_same_initial_weights_different_seed_different():
    a, b, c = (build_model("autoencode", 32, 8, seed) for seed in (0, 0, 1))
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))


def test_model_init_does_not_disturb_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model("autoencode", 32, 8, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_batch_schedule_depends_only_on_seed():
    def schedule(seed):
        return [(i.tolist(), f.tolist()) for i, f in batch_schedule(10, 4, 7, seed, flip=True)]

    assert schedule(0) == schedule(0)
    assert schedule(0) != schedule(1)
    first_epoch = list(itertools.chain(*[i for i, _ in schedule(0)]))[:10]
    assert sorted(first_epoch) == list(range(10))  # each image once per epoch


def test_make_batch_flips_only_flagged_images():
    images = torch.rand(3, 3, 4, 4)
    batch = make_batch(images, torch.tensor([2, 0]), torch.tensor([True, False]))
    assert torch.equal(batch[0], images[2].flip(-1)) and torch.equal(batch[1], images[0])


def test_bundled_images_are_disjoint_and_offline():
    config = DataConfig(resolution=32, images=20, eval_images=4)
    images = load_images(config)
    assert images.train.shape == (16, 3, 32, 32) and images.eval.shape == (4, 3, 32, 32)
    assert not set(images.train_names) & set(images.eval_names)
    assert any(n.startswith("skimage:") for n in images.train_names)
    assert any(n.startswith("procedural:") for n in images.train_names + images.eval_names)
    assert images.train.min() >= 0 and images.train.max() <= 1 and images.train.dtype == torch.float32
    again = load_images(config)
    assert torch.equal(images.train, again.train)


def test_square_crop_and_resize_handles_gray_rgba_and_bool():
    gray = np.full((40, 60), 255, dtype=np.uint8)
    rgba = np.zeros((50, 50, 4), dtype=np.uint8)
    mask = np.ones((20, 30), dtype=bool)
    for array, value in ((gray, 1.0), (rgba, 0.0), (mask, 1.0)):
        tensor = to_square_tensor(array, 16)
        assert tensor.shape == (3, 16, 16)
        assert torch.allclose(tensor, torch.full_like(tensor, value), atol=1e-6)


def test_procedural_images_are_deterministic_and_distinct():
    assert torch.equal(procedural_image(3, 32), procedural_image(3, 32))
    assert not torch.equal(procedural_image(3, 32), procedural_image(4, 32))


def test_folder_source_reads_images_recursively_and_skips_corrupt(tmp_path):
    from PIL import Image

    (tmp_path / "sub").mkdir()
    for i in range(4):
        Image.fromarray(np.full((40, 40, 3), 60 * i, dtype=np.uint8)).save(tmp_path / ("sub" if i % 2 else "") / f"{i}.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    config = DataConfig(source="folder", path=str(tmp_path), resolution=32, eval_images=1)
    with pytest.warns(UserWarning, match="broken.jpg"):
        images = load_images(config, tmp_path)
    assert len(images.train) + len(images.eval) == 4


def test_folder_with_too_few_images_is_input_error(tmp_path):
    config = DataConfig(source="folder", path=str(tmp_path), resolution=32, eval_images=1)
    with pytest.raises(BenchInputError, match="usable images"):
        load_images(config, tmp_path)
