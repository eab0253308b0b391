"""The training's weight average (bench.train.average) against torch.optim.swa_utils' EMA, the reference it
replaces: the same averaged weights and buffers after every update, BatchNorm's integer batch count included."""

from __future__ import annotations

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from bench.models import ModelContext, build_model
from bench.train.average import WeightAverage


@pytest.mark.parametrize("bottleneck", ["conv", "linear"])  # linear: BatchNorm, with running stats and a count
# A decay of 0.5 moves even the rounded-down integer count within four steps.
def test_weight_average_equals_torch_ema_at_every_step(bottleneck):
    model = build_model(
        "autoencoder",
        {"latent_dim": 64, "width": 16, "bottleneck": bottleneck},
        ModelContext(16, 3, "autoencode"),
        seed=0,
    )
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True)
    average = WeightAverage(model, 0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):
        images = torch.rand(4, 3, 16, 16, generator=generator)
        loss = (model(images) - images).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        reference.update_parameters(model)
        average.update()
        expected, got = reference.module.state_dict(), average.module.state_dict()
        assert expected.keys() == got.keys()
        for key in expected:
            assert torch.equal(expected[key], got[key]), key
    key = "decoder.to_rgb.weight"
    assert not torch.equal(average.module.state_dict()[key], model.state_dict()[key])  # it averages, not copies
