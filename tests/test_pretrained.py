"""The weights policy of loss networks: "auto", "imagenet", "random" or a state_dict file.

SqueezeNet 1.1 (5 MB) stands in for VGG: the policy does not depend on the architecture. Downloads are
made to fail, so these tests behave the same with or without a network.
"""

from __future__ import annotations

import urllib.error
import warnings

import pytest
import torch
import torchvision

from bench.errors import BenchInputError
from bench.losses import LossContext, build_loss
from bench.losses.pretrained import WeightsUnavailableError, build_lpips, imagenet_weights_file, load_backbone

ARCH = "squeezenet1_1"


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub cache, with downloads failing as they do offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert torch.hub.get_dir().startswith(str(tmp_path)), "torch.hub.set_dir was called elsewhere"

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path


def _state(seed: int, arch: str = ARCH) -> dict:
    torch.manual_seed(seed)
    return torchvision.models.get_model(arch, weights=None).state_dict()


def _assert_weights(model: torch.nn.Module, state: dict) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for key, tensor in state.items():
        assert torch.equal(loaded[key], tensor), key


def test_auto_falls_back_to_a_seeded_random_init_and_says_where_the_file_goes(hub_dir):
    cached, url = imagenet_weights_file(ARCH)
    assert cached.parent == hub_dir / "hub" / "checkpoints"
    with pytest.warns(UserWarning, match="ImageNet weights for squeezenet1_1 are unavailable") as caught:
        model, provenance = load_backbone(ARCH, "auto", seed=5)
    assert provenance == "random"
    message = str(caught[0].message)
    assert str(cached) in message and url in message
    _assert_weights(model, load_backbone(ARCH, "random", seed=5)[0].state_dict())


def test_imagenet_is_an_input_error_naming_the_file_and_url(hub_dir):
    cached, url = imagenet_weights_file(ARCH)
    with pytest.raises(WeightsUnavailableError) as caught:
        load_backbone(ARCH, "imagenet")
    assert isinstance(caught.value, BenchInputError)
    assert str(cached) in str(caught.value) and url in str(caught.value)


def test_the_hub_cache_is_read(hub_dir):
    # torch.hub checks the hash prefix in the file name only while downloading, so a file already under
    # the expected name is loaded as it is: a stand-in state_dict shows the cache is read.
    cached, _ = imagenet_weights_file(ARCH)
    cached.parent.mkdir(parents=True)
    state = _state(seed=7)
    torch.save(state, cached)
    model, provenance = load_backbone(ARCH, "imagenet")
    assert provenance == "imagenet"
    _assert_weights(model, state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_backbone(ARCH, "auto")[1] == "imagenet"


def test_a_state_dict_file_is_loaded(tmp_path):
    path = tmp_path / "weights.pt"
    state = _state(seed=11)
    torch.save(state, path)
    model, provenance = load_backbone(ARCH, str(path))
    assert provenance == str(path)
    _assert_weights(model, state)


def test_a_missing_or_mismatched_file_is_an_input_error(tmp_path):
    with pytest.raises(BenchInputError, match="does not exist"):
        load_backbone(ARCH, str(tmp_path / "nowhere.pt"))
    path = tmp_path / "squeezenet1_0.pt"
    torch.save(_state(seed=0, arch="squeezenet1_0"), path)
    with pytest.raises(BenchInputError, match="is not a state_dict of torchvision's squeezenet1_1"):
        load_backbone(ARCH, str(path))


def test_random_is_seeded_and_leaves_the_global_random_stream_alone():
    torch.manual_seed(0)
    expected_next = torch.rand(1)
    torch.manual_seed(0)
    first = load_backbone(ARCH, "random", seed=1)[0].state_dict()
    assert torch.equal(torch.rand(1), expected_next)
    _assert_weights(load_backbone(ARCH, "random", seed=1)[0], first)
    other = load_backbone(ARCH, "random", seed=2)[0].state_dict()
    assert not torch.equal(other["features.0.weight"], first["features.0.weight"])


def test_lpips_backbone_follows_the_policy(tmp_path, hub_dir):
    path = tmp_path / "squeeze.pt"
    state = _state(seed=3)
    torch.save(state, path)
    metric, provenance = build_lpips("squeeze", str(path))
    assert provenance == str(path)
    for piece in metric.net.children():
        for index, layer in piece.named_children():
            for key, tensor in layer.state_dict().items():
                assert torch.equal(tensor, state[f"features.{index}.{key}"])
    assert not metric.training and not any(p.requires_grad for p in metric.parameters())
    loss = build_loss("lpips", {"net": "squeeze", "weights": str(path)}, LossContext(64))
    assert loss.weights_used == str(path)

    with pytest.raises(WeightsUnavailableError):
        build_lpips("alex", "imagenet")
    with pytest.warns(UserWarning, match="unavailable"):
        assert build_lpips("alex", "auto", seed=1)[1] == "random"
    with pytest.raises(ValueError, match="one of alex, vgg, squeeze, got 'resnet'"):
        build_lpips("resnet", "random")


def test_lpips_heads_come_from_the_package():
    random_heads = build_lpips("alex", "random", seed=0)[0]
    other_seed = build_lpips("alex", "random", seed=1)[0]
    # The backbone changes with the seed; the calibrated linear heads do not.
    assert not torch.equal(random_heads.net.slice1[0].weight, other_seed.net.slice1[0].weight)
    for ours, theirs in zip(random_heads.lins.parameters(), other_seed.lins.parameters()):
        assert torch.equal(ours, theirs) and (ours >= 0).all()


def test_a_run_warns_once_per_unavailable_network(hub_dir, tmp_path, recwarn, capsys, tiny_suite):
    """The VGG16 of `perceptual` loads for training and again for the loss timing; offline, one warning and
    none of torch.hub's "Downloading:" lines, which it prints before each attempt."""
    from bench.cli import main

    suite = tmp_path / "s.toml"
    suite.write_text(
        tiny_suite(
            [{"name": "p", "loss": "perceptual", "net": "vgg16", "layers": ["relu1_2"]}],
            name="w",
            data={"scale": None, "images": 3, "eval_crops": 2},
            train={"steps": 1, "batch_size": None, "log_every": None, "eval_every": None},
            timing={"warmup": None},
            metrics={"lpips_weights": "random"},
        )
    )
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    messages = [str(w.message) for w in recwarn if "ImageNet weights for vgg16 are unavailable" in str(w.message)]
    assert len(messages) == 1, messages
    printed = capsys.readouterr()
    assert "Downloading" not in printed.out + printed.err
