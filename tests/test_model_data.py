"""The model really reaches the configured resolution; every entry starts from the same weights and batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data.images import (
    BUNDLED_PHOTOS,
    OTHER_PHOTOS,
    bundled_photo,
    crop_schedule,
    load_images,
    make_batch,
    PhotoPixels,
    rescale,
    to_tensor,
)
from bench.errors import BenchInputError
from bench.models import ModelContext, build_model
from bench.train.model import Autoencoder, stage_channels
from bench.config.suite import DataConfig

CONTEXT = ModelContext(image_size=32, channels=3, task="autoencode")


@pytest.mark.parametrize("bottleneck", ["conv", "linear"])
def test_default_decoder_outputs_512x512_rgb_in_unit_range(bottleneck):
    model = Autoencoder(bottleneck=bottleneck)  # defaults: 512x512, latent 256, 8x8x512 decoder start
    decoder_stages = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(decoder_stages) == 6  # the seed's 4 stride-2 stages reach only 128x128
    assert decoder_stages[0].in_channels == 512
    latent = model.encoder(torch.rand(1, 3, 512, 512))
    assert latent.numel() == 256
    with torch.no_grad():
        out = model.decoder(latent)
    assert out.shape == (1, 3, 512, 512)
    assert 0 <= out.min() and out.max() <= 1


def test_seed_decoder_trap_pinned():
    """The seed's decoder has 4 stride-2 transposed convs from 8x8: 8 * 2**4 = 128, not 512."""
    assert len(stage_channels(128)) == 4 and len(stage_channels(512)) == 6


def test_conv_bottleneck_is_an_8x8_map_with_group_norm_and_linear_is_the_seeds():
    conv, linear = Autoencoder(64, 256, "conv", width=128), Autoencoder(64, 256, "linear", width=128)
    assert conv.encoder(torch.rand(2, 3, 64, 64)).shape == (2, 4, 8, 8)  # 8x8x4 = 256 numbers
    assert linear.encoder(torch.rand(2, 3, 64, 64)).shape == (2, 256)
    kinds = lambda model: {type(m) for m in model.modules()}
    assert torch.nn.GroupNorm in kinds(conv) and not {torch.nn.BatchNorm2d, torch.nn.Linear} & kinds(conv)
    assert {torch.nn.BatchNorm2d, torch.nn.Linear} <= kinds(linear) and torch.nn.GroupNorm not in kinds(linear)
    groups = [m for m in conv.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert all(m.num_channels // m.num_groups >= 8 for m in groups)  # never instance norm
    assert stage_channels(64, 128) == [128, 64, 32]


@pytest.mark.parametrize("resolution", [16, 32, 64, 128])
@pytest.mark.parametrize("bottleneck", ["conv", "linear"])
def test_autoencoder_round_trip_shape(resolution, bottleneck):
    model = Autoencoder(resolution, latent_dim=64, bottleneck=bottleneck, width=64).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, resolution, resolution)).shape == (2, 3, resolution, resolution)


def test_unreachable_resolution_or_bad_latent_is_refused():
    with pytest.raises(ValueError, match="8 \\* 2\\*\\*k"):
        Autoencoder(100)
    with pytest.raises(ValueError, match="divisible by 64"):
        Autoencoder(32, latent_dim=8, bottleneck="conv")


def test_same_seed_same_initial_weights_different_seed_different():
    a, b, c = (build_model("autoencoder", {"latent_dim": 64, "width": 32}, CONTEXT, seed) for seed in (0, 0, 1))
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))


def test_model_init_does_not_disturb_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model("autoencoder", {"latent_dim": 64, "width": 32}, CONTEXT, seed=5)
    assert torch.equal(torch.rand(3), expected)


SIZES = [(40, 50), (64, 36), (33, 90)]


def schedule(seed, steps=6, flip=True, rotate=True):
    return [crops.tolist() for crops in crop_schedule(SIZES, 32, 4, steps, seed, flip, rotate)]


def test_crop_schedule_depends_only_on_seed_and_stays_inside_each_photo():
    assert schedule(0) == schedule(0)
    assert schedule(0) != schedule(1)
    rows = [row for step in schedule(0, steps=200) for row in step]
    for photo, top, left, flip, turns in rows:
        height, width = SIZES[photo]
        assert 0 <= top <= height - 32 and 0 <= left <= width - 32
    photos, flips, turns = ({row[i] for row in rows} for i in (0, 3, 4))
    assert photos == {0, 1, 2} and flips == {0, 1} and turns == {0, 1, 2, 3}
    assert {row[3] for step in schedule(0, flip=False) for row in step} == {0}
    assert {row[4] for step in schedule(0, rotate=False) for row in step} == {0}


def test_make_batch_crops_flips_and_turns_as_scheduled():
    photos = tuple(torch.rand(3, h, w) for h, w in SIZES)
    crops = torch.tensor([[1, 5, 2, 0, 0], [2, 1, 40, 1, 0], [0, 3, 7, 1, 3]])
    batch = make_batch(PhotoPixels.pack(photos, 32), crops)
    reference = [
        photos[1].numpy()[:, 5:37, 2:34],
        photos[2].numpy()[:, 1:33, 40:72][:, :, ::-1],
        np.rot90(photos[0].numpy()[:, 3:35, 7:39][:, :, ::-1], 3, axes=(1, 2)),
    ]
    assert batch.shape == (3, 3, 32, 32)
    for got, expected in zip(batch, reference):
        np.testing.assert_array_equal(got.numpy(), expected)


def test_make_batch_gathers_every_flip_and_turn_like_numpy():
    """The one-gather batch equals numpy's slice, flip and rot90 of each crop, for every photograph, flip and
    quarter turn, on non-square photographs of different sizes."""
    photos = tuple(torch.rand(3, h, w) for h, w in SIZES)
    crops = torch.tensor(
        [
            [photo, 2 * photo + 1, 3 * turns + 2, flip, turns]
            for photo in range(len(SIZES))
            for flip in (0, 1)
            for turns in range(4)
        ]
    )
    batch = make_batch(PhotoPixels.pack(photos, 16), crops)
    for got, (photo, top, left, flip, turns) in zip(batch, crops.tolist()):
        crop = photos[photo].numpy()[:, top : top + 16, left : left + 16]
        expected = np.rot90(crop[:, :, ::-1] if flip else crop, turns, axes=(1, 2))
        np.testing.assert_array_equal(got.numpy(), expected)


def test_bundled_split_holds_out_whole_photographs():
    """Evaluation crops come only from held-out photographs, which training never draws from."""
    config = DataConfig(resolution=32, scale=0.25, images=8, eval_images=3, eval_crops=9)
    images = load_images(config)
    assert images.eval_photos == ("astronaut", "coffee", "chelsea")
    assert not set(images.train_names) & set(images.eval_photos) and len(images.train) == 5
    assert images.eval.shape == (9, 3, 32, 32) and images.eval.dtype == torch.float32
    assert {name.split("@")[0] for name in images.eval_names} == set(images.eval_photos)  # round-robin
    for crop, name in zip(images.eval, images.eval_names):  # each crop is the named part of its photograph
        photo, position = name.split("@")
        top, left = map(int, position.split(","))
        source = rescale(to_tensor(bundled_photo(photo)), 0.25, 32)[0]
        assert torch.equal(crop, source[:, top : top + 32, left : left + 32])
        for train_photo in images.train:  # and no training photograph is that photograph
            assert train_photo.shape != source.shape or not torch.equal(train_photo, source)
    again = load_images(config)
    assert torch.equal(images.eval, again.eval) and images.eval_names == again.eval_names


def test_every_bundled_photograph_loads_offline_as_rgb():
    images = load_images(DataConfig(resolution=16, scale=0.1, images=len(BUNDLED_PHOTOS + OTHER_PHOTOS), eval_images=4))
    assert len(images.train) + len(images.eval_photos) == len(BUNDLED_PHOTOS + OTHER_PHOTOS)
    for photo in images.train:
        assert photo.shape[0] == 3 and min(photo.shape[1:]) >= 16 and 0 <= photo.min() and photo.max() <= 1


def test_default_bundled_training_photographs_are_colour():
    """With the grayscale photographs in the default, most training crops were gray and L1-type losses learned
    gray reconstructions of colour crops for hundreds of steps."""
    images = load_images(DataConfig(resolution=16, scale=0.1))
    assert len(images.train) == 6 and images.eval_photos == ("astronaut", "coffee", "chelsea", "camera")
    for name, photo in zip(images.train_names, images.train):
        chroma = (photo - photo.mean(0, keepdim=True)).abs()  # exactly 0 for a grayscale photograph
        assert chroma.max() > 0.1 and chroma.mean() > 0.005, name


def test_too_many_bundled_photographs_is_input_error():
    with pytest.raises(BenchInputError, match="bundled photographs"):
        load_images(DataConfig(resolution=16, images=99, eval_images=2))


def test_to_tensor_handles_gray_rgba_and_bool():
    gray = np.full((40, 60), 255, dtype=np.uint8)
    rgba = np.zeros((50, 50, 4), dtype=np.uint8)
    mask = np.ones((20, 30), dtype=bool)
    for array, value in ((gray, 1.0), (rgba, 0.0), (mask, 1.0)):
        tensor = to_tensor(array)
        assert tensor.shape == (3, *array.shape[:2])
        assert torch.allclose(tensor, torch.full_like(tensor, value), atol=1e-6)


def test_rescale_enlarges_only_photographs_too_small_for_a_crop():
    photo = torch.rand(3, 100, 60)
    half, enlarged = rescale(photo, 0.5, 16)
    assert half.shape == (3, 50, 30) and not enlarged
    fitted, enlarged = rescale(photo, 0.2, 16)
    assert fitted.shape[1:] == (27, 16) and enlarged


def test_folder_source_reads_images_recursively_and_skips_corrupt(tmp_path):
    from PIL import Image

    (tmp_path / "sub").mkdir()
    for i in range(4):
        Image.fromarray(np.full((40, 40, 3), 60 * i, dtype=np.uint8)).save(
            tmp_path / ("sub" if i % 2 else "") / f"{i}.png"
        )
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    config = DataConfig(source="folder", path=str(tmp_path), resolution=32, eval_images=1, eval_crops=3)
    with pytest.warns(UserWarning, match="broken.jpg"):
        images = load_images(config, tmp_path)
    assert len(images.train) == 3 and images.eval_photos == ("sub/1.png",)  # every k-th file in name order
    assert images.eval.shape == (3, 3, 32, 32) and torch.allclose(images.eval, torch.tensor(60 / 255))
    assert all(not torch.allclose(photo, torch.tensor(60 / 255)) for photo in images.train)


def test_folder_with_too_few_images_is_input_error(tmp_path):
    config = DataConfig(source="folder", path=str(tmp_path), resolution=32, eval_images=1)
    with pytest.raises(BenchInputError, match="usable images"):
        load_images(config, tmp_path)


def test_under_bf16_autocast_the_output_layer_stays_float32():
    """A bf16 sigmoid is exactly 1.0 from a logit of about 6 up, where BCE's gradient vanishes."""
    model = Autoencoder(resolution=16, latent_dim=64, width=16)
    with torch.no_grad():
        model.decoder.to_rgb.weight.zero_()
        model.decoder.to_rgb.bias.fill_(8.0)  # sigmoid(8) = 0.99966, 1.0 in bf16
    target = torch.ones(1, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(torch.rand(1, 3, 16, 16))
    loss = torch.nn.functional.binary_cross_entropy(output.float(), target)
    assert output.dtype == torch.float32 and (output < 1).all()
    loss.backward()
    assert model.decoder.to_rgb.bias.grad.abs().min() > 0
