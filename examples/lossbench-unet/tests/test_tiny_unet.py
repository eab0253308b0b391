"""tiny_unet's shape, range and skip connections, and LossBench finding it by its entry point."""

import pytest
import torch

import bench
from lossbench_unet import TinyUNet


def test_it_returns_images_of_the_input_shape_in_the_unit_range():
    model = TinyUNet(channels=3, width=4, depth=2)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    output = model(images)
    assert output.shape == images.shape
    assert 0 <= output.min().item() and output.max().item() <= 1
    assert [stage[0].stride for stage in model.down] == [(2, 2), (2, 2)]  # 16 -> 8 -> 4 px


def test_each_level_up_sees_the_features_of_its_size_from_the_way_down():
    model = TinyUNet(channels=3, width=4, depth=2)
    # The merge blocks take twice the channels their transposed convolution gives: half come from the skip.
    assert [merge[0].in_channels for merge in model.merge] == [16, 8]
    assert [up.out_channels for up in model.up] == [8, 4]


def test_lossbench_finds_it_by_its_entry_point_and_checks_its_parameters():
    bench.load_plugins()
    assert "tiny_unet" in bench.model_names()
    suite = bench.build_suite(["mse"], task="denoise", model={"name": "tiny_unet", "depth": 3}, data={"resolution": 32})
    assert suite.model.settings == {"width": 16, "depth": 3}
    with pytest.raises(bench.BenchInputError, match="model 'tiny_unet' has no parameter 'levels'"):
        bench.build_suite(["mse"], model={"name": "tiny_unet", "levels": 2})
