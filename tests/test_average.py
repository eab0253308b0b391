"""The training's weight average (bench.train.average) against torch.optim.swa_utils' EMA, the reference it
replaces: the same averaged weights and buffers after every update, BatchNorm's integer batch count included."""

from __future__ import annotations

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from bench.models import ModelContext, build_model
from bench.train.average import WeightAverage


def trained_beside_torch_ema(bottleneck: str, decay: float, steps: int):
    """Yields (model, torch's EMA of it, its WeightAverage) after each of ``steps`` Adam steps of a 16 px
    autoencoder on random images."""
    model = build_model(
        "autoencoder",
        {"latent_dim": 64, "width": 16, "bottleneck": bottleneck},
        ModelContext(16, 3, "autoencode"),
        seed=0,
    )
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    average = WeightAverage(model, decay)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        images = torch.rand(4, 3, 16, 16, generator=generator)
        loss = (model(images) - images).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        reference.update_parameters(model)
        average.update()
        yield model, reference, average


def assert_same_state(reference: AveragedModel, average: WeightAverage) -> None:
    expected, got = reference.module.state_dict(), average.module.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


@pytest.mark.parametrize("bottleneck", ["conv", "linear"])  # linear: BatchNorm, with running stats and a count
# A decay of 0.5 moves even the rounded-down integer count within four steps.
def test_weight_average_equals_torch_ema_at_every_step(bottleneck):
    for model, reference, average in trained_beside_torch_ema(bottleneck, 0.5, steps=4):
        assert_same_state(reference, average)
    key = "decoder.to_rgb.weight"
    assert not torch.equal(average.module.state_dict()[key], model.state_dict()[key])  # it averages, not copies


@pytest.mark.parametrize("bottleneck", ["conv", "linear"])
def test_a_decay_other_than_a_half_weighs_the_average_by_decay_and_the_model_by_one_minus_it(bottleneck):
    """At 0.7, unlike 0.5, swapping ``decay`` and ``1 - decay`` changes every weight and the integer count."""
    decay = 0.7
    by_hand: dict[str, torch.Tensor] = {}  # float64: average = decay * average + (1 - decay) * model
    counts = []
    for model, reference, average in trained_beside_torch_ema(bottleneck, decay, steps=6):
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                value = value.double()
                by_hand[key] = value.clone() if key not in by_hand else decay * by_hand[key] + (1 - decay) * value
        assert_same_state(reference, average)
        got = average.module.state_dict()
        for key, value in by_hand.items():
            torch.testing.assert_close(got[key].double(), value, rtol=1e-5, atol=1e-6, msg=key)
        counts += [int(value) for key, value in got.items() if key.endswith("num_batches_tracked")]
    if bottleneck == "linear":
        # The model's count after step k is k; rounded down, 0.7 * average + 0.3 * k is 1, 1.3, 1.6, 1.9, 2.2,
        # then 0.7 * 2 + 0.3 * 6 = 3.2 (with the two swapped: 1, 1.7, 2.4, 3.4, 4.4, 5.4).
        assert counts == [1, 1, 1, 1, 2, 3]
    else:
        assert counts == []
