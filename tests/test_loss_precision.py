"""Frozen loss networks in bfloat16 (train.loss_networks, bench.losses.precision): the network's forward only,
its outputs back in float32, close to float32's; float32 untouched, an enclosing autocast kept; "auto" asks torch."""

from __future__ import annotations

import os

import pytest
import torch

import bench.losses.precision as precision
from bench.losses import LossContext, build_loss
from bench.losses.perceptual import VGGFeatures


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 32, 32, generator=generator), torch.rand(2, 3, 32, 32, generator=generator)


def _loss(name: str, dtype: str, **params):
    return build_loss(name, {"weights": "random", **params}, LossContext(32, 0, dtype))


@pytest.mark.parametrize(("name", "params"), [("perceptual", {"net": "vgg16", "layers": ["relu2_2"]}), ("lpips", {})])
def test_bf16_loss_network_is_close_to_fp32_and_gives_float32(images, name, params):
    x, y = images
    fp32, bf16 = _loss(name, "fp32", **params), _loss(name, "bf16", **params)
    x32, x16 = x.clone().requires_grad_(), x.clone().requires_grad_()
    value32, value16 = fp32(x32, y), bf16(x16, y)
    value32.backward()
    value16.backward()
    assert value16.dtype == torch.float32 and x16.grad.dtype == torch.float32
    assert value16.item() == pytest.approx(value32.item(), rel=2e-2)
    assert value16.item() != value32.item()  # it did run in bfloat16
    cosine = torch.nn.functional.cosine_similarity(x16.grad.flatten(), x32.grad.flatten(), dim=0)
    assert cosine > 0.99


def test_vgg_features_in_bf16_come_back_in_float32_and_fp32_keeps_an_enclosing_autocast(images):
    x, _ = images
    bf16 = VGGFeatures("vgg16", ["relu1_2", "relu2_2"], "random", precision="bf16")
    assert all(f.dtype == torch.float32 for f in bf16(x))
    fp32 = VGGFeatures("vgg16", ["relu1_2"], "random", precision="fp32")
    with torch.autocast("cpu", dtype=torch.bfloat16):  # train.bf16 around the whole step
        (feature,) = fp32(x)
    assert feature.dtype == torch.bfloat16


def test_auto_takes_bf16_only_on_a_cpu_that_computes_it_natively(monkeypatch):
    cpu = torch.device("cpu")
    assert precision.loss_network_precision("fp32", cpu) == "fp32"
    assert precision.loss_network_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert precision.loss_network_precision("auto", cpu) == "bf16"
    assert precision.loss_network_precision("auto", torch.device("cuda")) == "fp32"
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert precision.loss_network_precision("auto", cpu) == "fp32"


def test_native_bf16_agrees_with_the_cpu_flags():
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo to read the CPU's flags from")
    flags = open("/proc/cpuinfo").read().split()
    has_instructions = "avx512_bf16" in flags or "amx_bf16" in flags
    assert precision.native_bf16(torch.device("cpu")) == (has_instructions and "avx512f" in flags)
