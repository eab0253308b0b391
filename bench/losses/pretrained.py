"""Loss networks and where their weights come from.

``weights`` is one policy for every pretrained network (VGG for ``perceptual``/``style``, the LPIPS
backbone for the ``lpips`` loss and metric):

- ``"auto"``: ImageNet weights through torchvision's weights API, which reads the torch hub cache
  (``torch.hub.get_dir()/checkpoints``) and downloads only when the file is absent; if that fails
  (offline), a random initialisation seeded with ``seed``, with a warning naming the file to put in place.
- ``"imagenet"``: the same, but failure is an error.
- ``"random"``: the random initialisation seeded with ``seed``.
- anything else: the path of a ``state_dict`` of the whole torchvision model, loaded with
  ``weights_only=True``.

Every loader returns the provenance too (``"imagenet"``, ``"random"`` or the path) for result rows.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import lpips
import torch
import torchvision
from torch import nn

from bench.errors import BenchInputError
from bench.losses.combo import freeze

# LPIPS names its backbones differently from torchvision.
LPIPS_BACKBONES = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}
# The smallest image side each trunk's poolings accept (AlexNet's stride-4 first conv needs the most).
LPIPS_MIN_SIDE = {"alex": 31, "vgg": 16, "squeeze": 17}


class WeightsUnavailableError(BenchInputError):
    """ImageNet weights were required (``weights="imagenet"``) but could not be loaded."""


def imagenet_weights_file(arch: str) -> tuple[Path, str]:
    """The hub-cache file torchvision reads ``arch``'s ImageNet weights from, and the URL it downloads it from."""
    url = torchvision.models.get_model_weights(arch).IMAGENET1K_V1.url
    return hub_file(url), url


def hub_file(url: str) -> Path:
    """Where the torch hub cache keeps the file at ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def hub_state_dict(url: str, check_hash: bool) -> dict:
    """The state_dict at ``url`` through the torch hub cache (downloaded, with a progress bar, only when absent).

    torch.hub prints "Downloading: ..." before it tries, so offline every attempt (a run loads a network for
    training, for metrics and for timing) would print one, ahead of a warning shown once; it is silenced here
    and a single line follows a download that succeeded."""
    cached = hub_file(url)
    absent = not cached.is_file()
    with contextlib.redirect_stdout(io.StringIO()):
        state = torch.hub.load_state_dict_from_url(
            url, progress=absent, check_hash=check_hash, map_location="cpu", weights_only=True
        )
    if absent:
        print(f"downloaded {url} to {cached} (later runs read it from there)", file=sys.stderr)
    return state


def load_backbone(arch: str, weights: str = "auto", seed: int = 0) -> tuple[nn.Module, str]:
    """The torchvision model ``arch`` (e.g. ``"vgg19"``) with weights by the policy above, and their provenance."""
    if weights == "random":
        return _seeded_random(arch, seed), "random"
    if weights in ("auto", "imagenet"):
        return _imagenet_or_fallback(arch, weights, seed)
    path = Path(str(weights))
    if not path.is_file():
        raise BenchInputError(
            f"weights file {weights!r} for {arch} does not exist",
            where="weights",
            fix='give the path of a saved state_dict, or use weights "auto", "imagenet" or "random".',
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    return _with_state(arch, state, source=str(path)), str(path)


def build_lpips(net: str = "alex", weights: str = "auto", seed: int = 0) -> tuple[lpips.LPIPS, str]:
    """A frozen ``lpips.LPIPS`` whose backbone follows the weights policy; its linear heads come with the package.

    Call it as ``metric(x, y, normalize=True)`` on [0, 1] RGB images; it returns one distance per image
    (shape N x 1 x 1 x 1). ``bench.losses.perceptual.lpips_per_image(metric, x, y)`` does the same after
    checking shapes and expanding grayscale. The provenance returned is the backbone's.
    """
    if net not in LPIPS_BACKBONES:
        raise ValueError(f"LPIPS net must be one of {', '.join(LPIPS_BACKBONES)}, got {net!r}")
    backbone, provenance = load_backbone(LPIPS_BACKBONES[net], weights, seed)
    # pnet_rand=False would make lpips download ImageNet weights itself, bypassing the policy; build it
    # with a random trunk (without touching the caller's random state) and copy the chosen weights in.
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # lpips still calls torchvision's deprecated ``pretrained=`` API; the deprecation is no news to our users.
        warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
        metric = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
    # lpips cuts the torchvision ``features`` into slices whose children keep their index in ``features``.
    for piece in metric.net.children():
        for index, layer in piece.named_children():
            layer.load_state_dict(backbone.features[int(index)].state_dict())
    return freeze(metric), provenance


class MetricLoss(nn.Module):
    """Thin module over a frozen, pretrained metric (LPIPS, DISTS): the batch mean of
    ``per_image(metric, reconstruction, target)``. The metric stays in eval mode whatever mode the module is
    switched to (LPIPS's heads hold dropout layers), as a measuring instrument should."""

    def __init__(
        self,
        metric: nn.Module,
        per_image: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
        weights_used: str,
    ) -> None:
        super().__init__()
        self.metric = metric
        self.per_image = per_image
        self.weights_used = weights_used

    def train(self, mode: bool = True) -> "MetricLoss":
        super().train(mode)
        self.metric.eval()
        return self

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.per_image(self.metric, reconstruction, target).mean()


def _seeded_random(arch: str, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torchvision.models.get_model(arch, weights=None)


def _imagenet_or_fallback(arch: str, weights: str, seed: int) -> tuple[nn.Module, str]:
    cached, url = imagenet_weights_file(arch)
    try:
        state = hub_state_dict(url, check_hash=True)
    except Exception as error:  # offline (URLError), a bad download, a corrupt cache file: all are "unavailable"
        if weights == "imagenet":
            raise WeightsUnavailableError(
                f"could not load ImageNet weights for {arch}: {error}",
                where="weights",
                fix=f"download {url} and put it at {cached} (torch.hub.get_dir()/checkpoints), "
                'or use weights "random" or the path of a state_dict.',
            ) from error
        warnings.warn(
            f"ImageNet weights for {arch} are unavailable ({error}); using a random initialisation "
            f"(seed {seed}). For ImageNet weights, download {url} and put it at {cached}.",
            stacklevel=3,
        )
        return _seeded_random(arch, seed), "random"
    return _with_state(arch, state, source=str(cached)), "imagenet"


def _with_state(arch: str, state: dict, source: str) -> nn.Module:
    # Built on the meta device, the model skips a random initialisation (seconds for VGG) that the
    # loaded tensors would replace anyway; assign=True makes them the parameters.
    with torch.device("meta"):
        model = torchvision.models.get_model(arch, weights=None)
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as error:
        raise BenchInputError(
            f"{source} is not a state_dict of torchvision's {arch}: {' '.join(str(error).split())[:300]}",
            where="weights",
            fix=f"save it with torch.save(torchvision.models.{arch}().state_dict(), path).",
        ) from error
    return model
