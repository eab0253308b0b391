"""haar_l1 against hand-computed values and the transform's defining properties."""

import pytest
import torch

import bench
from lossbench_wavelet import haar_l1, haar_levels, haar_step


def test_one_level_on_a_two_by_two_image_matches_the_hand_computed_bands():
    image = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)  # a b / c d
    low, details = haar_step(image)
    assert low.item() == pytest.approx(5.0)  # (1 + 2 + 3 + 4) / 2
    assert details.flatten().tolist() == pytest.approx([-1.0, -2.0, 0.0])  # (a-b+c-d)/2, (a+b-c-d)/2, (a-b-c+d)/2


def test_the_transform_is_orthonormal_so_it_keeps_the_energy():
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    low, details = haar_levels(images, 3)
    energy = low.pow(2).sum() + sum(bands.pow(2).sum() for bands in details)
    assert energy.item() == pytest.approx(images.pow(2).sum().item(), rel=1e-5)


def test_loss_is_zero_for_equal_images_and_weights_the_bands():
    generator = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 16, 16, generator=generator), torch.rand(2, 3, 16, 16, generator=generator)
    assert haar_l1(x, x).item() == 0.0
    offset = torch.full_like(x, 0.25)  # a constant shift has no detail: only the LL band differs, by 0.25 * 2**levels
    assert haar_l1(x + offset, x, levels=2).item() == pytest.approx(0.25 * 4)
    assert haar_l1(x + offset, x, levels=2, lowpass_weight=0.5).item() == pytest.approx(0.5)
    assert haar_l1(x, y).item() > 0


def test_lossbench_finds_it_by_its_entry_point():
    bench.load_plugins()
    suite = bench.build_suite({"haar": {"loss": "haar_l1", "levels": 2}}, data={"resolution": 32})
    assert suite.entries[0].terms[0].params == {"levels": 2, "lowpass_weight": 1.0}
    with pytest.raises(bench.BenchInputError, match="levels"):
        bench.build_suite({"haar": {"loss": "haar_l1", "levels": "two"}})
