"""Losses measured by a frozen network: VGG feature (perceptual) and Gram (style) losses, and LPIPS.

Gradients reach the reconstruction through the network; the network's own parameters never change.
"""

from __future__ import annotations

from typing import Callable, Sequence

import lpips
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from bench.losses.checks import as_rgb, check_image_pair
from bench.losses.combo import freeze
from bench.losses.pretrained import LPIPS_MIN_SIDE, MetricLoss, build_lpips, load_backbone
from bench.losses.measures import DesignSize, Measure
from bench.losses.precision import InBF16, as_float32, bf16_autocast
from bench.losses.registry import LossContext, register_loss

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG_NETS = ("vgg16", "vgg19")
# layers = [] takes the last ReLU of each of the first four blocks, whichever the net (VGG16's block 3 and 4
# have three convolutions, VGG19's four): Johnson et al. 2016's style layers on VGG16.
DEFAULT_LAYERS = {
    "vgg16": ["relu1_2", "relu2_2", "relu3_3", "relu4_3"],
    "vgg19": ["relu1_2", "relu2_2", "relu3_4", "relu4_4"],
}


def on_cpu_channels_last(images: torch.Tensor) -> torch.Tensor:
    """``images`` laid out channels-last on a CPU, where oneDNN's convolutions then run VGG16's forward and
    backward 26-29% faster (64 px batch 8 and 512 px batch 1, one thread) and AlexNet LPIPS's 18% faster at 512 px;
    as they are on a GPU, where an H200 ran VGG19's in channels-last fp32 7% slower."""
    return images.contiguous(memory_format=torch.channels_last) if images.device.type == "cpu" else images


def vgg_layer_names(features: nn.Sequential) -> list[str]:
    """Caffe-style names of the layers of a torchvision VGG's ``features``: conv1_1, relu1_1, ..., pool5."""
    names, block, index = [], 1, 1
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            names.append(f"conv{block}_{index}")
        elif isinstance(layer, nn.ReLU):
            names.append(f"relu{block}_{index}")
            index += 1
        elif isinstance(layer, nn.MaxPool2d):
            names.append(f"pool{block}")
            block, index = block + 1, 1
        else:
            raise ValueError(f"expected a VGG without batch norm (conv, relu, max pool), got {layer}")
    return names


class VGGFeatures(nn.Module):
    """Frozen VGG features at named layers, for [0, 1] images (grayscale or RGB) normalised as for ImageNet.

    The network is cut after the deepest requested layer: the rest would cost time and memory for nothing.
    """

    def __init__(
        self, net: str, layers: Sequence[str], weights: str = "auto", seed: int = 0, precision: str = "fp32"
    ) -> None:
        super().__init__()
        if net not in VGG_NETS:
            raise ValueError(f"net must be one of {', '.join(VGG_NETS)}, got {net!r}")
        if not layers:
            raise ValueError("expected at least one layer, got none")
        with torch.device("meta"):  # names first and free of charge, so a typo fails before weights load
            names = vgg_layer_names(torchvision.models.get_model(net, weights=None).features)
        unknown = [layer for layer in layers if layer not in names]
        if unknown:
            relus = ", ".join(name for name in names if name.startswith("relu"))
            raise ValueError(
                f"{net} has no layer {', '.join(unknown)}; its relu layers are {relus} "
                f"(conv and pool layers are named alike)"
            )
        self.layers = list(layers)
        self.bf16 = precision == "bf16"
        self.indices = [names.index(layer) for layer in layers]
        self.min_side = 2 ** sum(name.startswith("pool") for name in names[: max(self.indices) + 1])
        backbone, self.weights_used = load_backbone(net, weights, seed)
        self.features = freeze(backbone.features[: max(self.indices) + 1])
        for layer in self.features:
            if isinstance(layer, nn.ReLU):
                layer.inplace = False  # an in-place ReLU would overwrite a conv output taken as a feature
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (as_rgb(images) - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The features at the requested layers, in the order requested."""
        x = on_cpu_channels_last(self.normalize(images))
        taken = {}
        with bf16_autocast(x.device.type, self.bf16):
            for index, layer in enumerate(self.features):
                x = layer(x)
                if index in self.indices:
                    taken[index] = x
        features = [taken[index] for index in self.indices]
        return as_float32(features) if self.bf16 else features


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """N x C x C feature correlations, divided by C * H * W so layers of any size are comparable.

    In float32 outside autocast: in half precision the sums over H * W lose the small correlations.
    """
    n, c, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):
        flat = features.float().reshape(n, c, h * w)
        return flat @ flat.transpose(1, 2) / (c * h * w)


def gram_distance(reconstruction_features: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius norm of the difference of the Gram matrices (normalised by C * H * W), averaged over
    the batch: Johnson et al. 2016's style reconstruction loss, 4 times Gatys et al. 2016's per-layer E_l. A mean
    over the C x C entries instead would weight a 512-channel layer 64 times less than a 64-channel one."""
    difference = gram_matrix(reconstruction_features) - gram_matrix(target_features)
    return difference.pow(2).sum(dim=(1, 2)).mean()


FEATURE_DISTANCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss,
    "l2": F.mse_loss,
}


def feature_loss(
    features: VGGFeatures,
    reconstruction: torch.Tensor,
    target: torch.Tensor,
    layer_weights: Sequence[float],
    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """sum over layers of weight * distance(features of reconstruction, features of target)."""
    check_image_pair(reconstruction, target)
    recon_features = features(reconstruction)
    with torch.no_grad():  # the target is data: its features need no graph
        target_features = features(target)
    terms = [w * distance(r, t) for w, r, t in zip(layer_weights, recon_features, target_features)]
    return sum(terms)


class FeatureLoss(nn.Module):
    """Thin module: a VGG feature extractor, per-layer weights and a per-layer distance."""

    def __init__(self, features: VGGFeatures, layer_weights: Sequence[float], distance: Callable) -> None:
        super().__init__()
        self.features = features
        self.layer_weights = [float(w) for w in layer_weights]
        self.distance = distance

    @property
    def weights_used(self) -> str:
        return self.features.weights_used

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return feature_loss(self.features, reconstruction, target, self.layer_weights, self.distance)

    def extra_repr(self) -> str:
        pairs = ", ".join(f"{layer}: {w}" for layer, w in zip(self.features.layers, self.layer_weights))
        return f"{self.distance.__name__}, {{{pairs}}}, weights={self.weights_used}"


def lpips_per_image(metric: lpips.LPIPS, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """LPIPS distance of each image pair (shape N) for [0, 1] images, grayscale or RGB.

    ``normalize=True`` maps [0, 1] to the [-1, 1] LPIPS was calibrated on; fed raw [0, 1] images it
    would report distances on a different scale.
    """
    check_image_pair(reconstruction, target)
    return metric(
        on_cpu_channels_last(as_rgb(reconstruction)), on_cpu_channels_last(as_rgb(target)), normalize=True
    ).flatten()


def _vgg_features(loss: str, context: LossContext, net, layers, weights) -> VGGFeatures:
    layers = layers or DEFAULT_LAYERS.get(net, [])
    features = VGGFeatures(net, layers, weights, context.seed, context.precision)
    if context.image_size < features.min_side:
        raise ValueError(
            f"{loss} with layers {', '.join(layers)} needs images of at least {features.min_side} px "
            f"(one halving per pooling), got {context.image_size} px; use shallower layers"
        )
    return features


def _layer_weights(net: str, layers: Sequence[str], layer_weights: Sequence[float]) -> list[float]:
    layers = layers or DEFAULT_LAYERS.get(net, [])
    if not layer_weights:
        return [1.0] * len(layers)
    if len(layer_weights) != len(layers):
        raise ValueError(f"expected one layer weight per layer ({len(layers)}), got {len(layer_weights)}")
    return [float(w) for w in layer_weights]


@register_loss(
    "perceptual",
    "distance between VGG features (Johnson et al. 2016); layers = [] takes relu1_2, "
    "relu2_2 and the last ReLUs of blocks 3 and 4",
    net="vgg19",
    layers=[],
    layer_weights=[],
    distance="l1",
    weights="auto",
)
def _make_perceptual(context: LossContext, net, layers, layer_weights, distance, weights) -> nn.Module:
    if distance not in FEATURE_DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(FEATURE_DISTANCES)}, got {distance!r}")
    layer_weights = _layer_weights(net, layers, layer_weights)
    features = _vgg_features("perceptual", context, net, layers, weights)
    return FeatureLoss(features, layer_weights, FEATURE_DISTANCES[distance])


@register_loss(
    "style",
    "distance between Gram matrices of VGG features (Gatys et al. 2016); layers as perceptual's",
    net="vgg19",
    layers=[],
    layer_weights=[],
    weights="auto",
)
def _make_style(context: LossContext, net, layers, layer_weights, weights) -> nn.Module:
    layer_weights = _layer_weights(net, layers, layer_weights)
    return FeatureLoss(_vgg_features("style", context, net, layers, weights), layer_weights, gram_distance)


@register_loss(
    "lpips",
    "learned perceptual distance (Zhang et al. 2018), [0, 1] inputs",
    net="alex",
    weights="auto",
    measure=Measure(
        "LPIPS",
        False,
        ("lpips",),
        DesignSize(64, "Zhang et al. 2018: trained and validated on 64x64 patches (BAPPS)"),
        "lpips package, [metrics] lpips_net / lpips_weights",
    ),
)
def _make_lpips(context: LossContext, net, weights) -> nn.Module:
    if context.image_size < LPIPS_MIN_SIDE.get(net, 0):
        fitting = [f"{other!r} ({side} px)" for other, side in LPIPS_MIN_SIDE.items() if side <= context.image_size]
        raise ValueError(
            f"lpips with net={net!r} needs images of at least {LPIPS_MIN_SIDE[net]} px, got "
            f"{context.image_size} px" + (f"; use net {' or '.join(fitting)}" if fitting else "")
        )
    metric, provenance = build_lpips(net, weights, context.seed)
    if context.precision == "bf16":
        metric.net = InBF16(metric.net)  # the trunk only: LPIPS's normalisation and heads stay in float32
    return MetricLoss(metric, lpips_per_image, provenance)
