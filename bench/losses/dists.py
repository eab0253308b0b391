"""DISTS (Ding, Ma, Wang & Simoncelli, "Image Quality Assessment: Unifying Structure and Texture Similarity",
TPAMI 2020), piq's implementation, under LossBench's weights policy.

piq's ``DISTS()`` downloads two files when built: torchvision's ImageNet VGG16 and its own per-channel
weights (``alpha``/``beta``, 12 kB). Here the VGG16 follows ``weights`` exactly as for ``perceptual`` and
``lpips`` (``bench.losses.pretrained``), and the per-channel weights come from the torch hub cache
(downloaded there only when missing):

- ``"auto"``: both if they can be had, otherwise a seeded random VGG16 and/or uniform channel weights, with a
  warning naming the file to put in place;
- ``"imagenet"``: both, or an error naming the files;
- ``"random"``: a seeded random VGG16 and uniform channel weights;
- a path: a VGG16 ``state_dict`` file, and the channel weights from the hub cache (or an error).

Provenance (``weights_used``) is the backbone's, followed by ``"; uniform head"`` when the channel weights were
not the trained ones while the backbone was, or ``"; trained head"`` the other way round.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from bench.losses.checks import as_rgb, check_image_pair
from bench.losses.pretrained import (
    MetricLoss,
    WeightsUnavailableError,
    hub_file,
    hub_state_dict,
    imagenet_weights_file,
    load_backbone,
)
from bench.losses.measures import DesignSize, Measure
from bench.losses.registry import LossContext, register_loss

HEAD_URL = "https://github.com/photosynthesis-team/piq/releases/download/v0.4.1/dists_weights.pt"
LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
CHANNELS = (3, 64, 128, 256, 512, 512)  # the image itself, then each layer's features
MIN_SIDE = 16  # four stride-2 poolings before relu5_3


def missing_files() -> list[Path]:
    """The trained-weight files of DISTS not yet in the torch hub cache."""
    return [path for path in (imagenet_weights_file("vgg16")[0], hub_file(HEAD_URL)) if not path.is_file()]


def load_head(weights: str, url: str = HEAD_URL) -> tuple[list[torch.Tensor], bool]:
    """DISTS's per-channel weights (alpha for the structure terms, then beta for the texture terms, split per
    layer) and whether they are the trained ones (False: uniform, summing to 1 like the trained ones)."""
    if weights != "random":
        try:
            state = hub_state_dict(url, check_hash=False)
            return list(state["alpha"].split(CHANNELS, dim=1)) + list(state["beta"].split(CHANNELS, dim=1)), True
        except Exception as error:  # offline, a bad download, a file of another shape: all are "unavailable"
            fix = f"download {url} and put it at {hub_file(url)} (torch.hub.get_dir()/checkpoints)"
            if weights != "auto":
                raise WeightsUnavailableError(
                    f"could not load DISTS's channel weights: {error}",
                    where="weights",
                    fix=fix + ', or use weights "auto" or "random".',
                ) from error
            warnings.warn(
                f"DISTS's channel weights are unavailable ({error}); using uniform ones. For the trained ones, {fix}.",
                stacklevel=3,
            )
    uniform = torch.full((1, 2 * sum(CHANNELS), 1, 1), 1 / (2 * sum(CHANNELS)))
    return list(uniform[:, : sum(CHANNELS)].split(CHANNELS, dim=1)) + list(
        uniform[:, sum(CHANNELS) :].split(CHANNELS, dim=1)
    ), False


def build_dists(weights: str = "auto", seed: int = 0) -> tuple[nn.Module, str]:
    """piq's DISTS (a module returning 1 - DISTS per image) with the VGG16 and channel weights chosen by the
    policy above, frozen, and their provenance."""
    import piq
    from piq.perceptual import VGG16_LAYERS, ContentLoss

    backbone, provenance = load_backbone("vgg16", weights, seed)
    head, trained = load_head(weights)

    class PolicyDISTS(piq.DISTS):
        def __init__(self) -> None:
            # piq.DISTS.__init__ would download both files; its parent takes the network and weights given.
            ContentLoss.__init__(
                self,
                feature_extractor=backbone.features,
                layers=[VGG16_LAYERS[n] for n in LAYERS],
                weights=head,
                replace_pooling=True,
                reduction="none",
                normalize_features=False,
                allow_layers_weights_mismatch=True,
            )

    metric = PolicyDISTS().eval()
    for parameter in metric.parameters():
        parameter.requires_grad_(False)
    if trained != (provenance != "random"):
        provenance += "; trained head" if trained else "; uniform head"
    return metric, provenance


def dists_per_image(metric: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """DISTS distance (0 for identical images) of each pair, for [0, 1] images, grayscale or RGB, in float32."""
    check_image_pair(x, y)
    side = min(x.shape[-2:])
    if side < MIN_SIDE:
        raise ValueError(f"dists needs images of at least {MIN_SIDE} px, got {side} px")
    with torch.autocast(x.device.type, enabled=False):
        wide = torch.promote_types(x.dtype, torch.float32)
        return metric(as_rgb(x.to(wide)), as_rgb(y.to(wide)))


@register_loss(
    "dists",
    "DISTS, structure and texture similarity of VGG16 features (Ding et al. 2020), piq",
    weights="auto",
    measure=Measure(
        "DISTS",
        False,
        ("dists",),
        DesignSize(
            256,
            "Ding et al. 2020: the authors' code resizes images larger than "
            "256 px to a 256 px shorter side; VGG16 learnt ImageNet at 224 px",
        ),
        "piq, [metrics] dists_weights",
    ),
)
def _make_dists(context: LossContext, weights) -> nn.Module:
    if context.image_size < MIN_SIDE:
        raise ValueError(f"dists needs images of at least {MIN_SIDE} px, got {context.image_size} px")
    metric, provenance = build_dists(weights, context.seed)
    return MetricLoss(metric, dists_per_image, provenance)
