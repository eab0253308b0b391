"""The built-in models, registered as "autoencoder" (what every entry trains unless the suite's [model] names
another), "denoiser" (a small fully convolutional net, the default for the restoration tasks whose input has the
target's size) and "upsampler" (the default for super-resolution: the denoiser's body on the small input, then
the decoder's stride-2 transposed-convolution stages up to the target's size).

The decoder follows the seed design (latent -> 8x8x512 map -> stride-2 ConvTranspose2d + norm + ReLU stages) with
as many stages as the resolution needs: log2(R / 8), so 6 for 512x512 (the seed's 4 stages reach only 128x128).
A sigmoid keeps outputs in [0, 1], the range every loss and metric expects. Two bottlenecks (``model.bottleneck``):

- ``"linear"``, the seed's: the encoder's 8x8x512 map flattened through a Linear layer to ``latent_dim`` numbers
  and back, with BatchNorm in the stages;
- ``"conv"``: the latent is itself an 8x8 map of ``latent_dim / 64`` channels, reached by 1x1 convolutions in and
  out, with GroupNorm in the stages (no batch statistics, so evaluation behaves as training).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bench.models.registry import ModelContext, register_model

BASE_SIDE = 8
BASE_CHANNELS = 512
MIN_CHANNELS = 16
GROUPS = 32  # GroupNorm groups (fewer where a stage has fewer channels)


def stage_channels(resolution: int, width: int = BASE_CHANNELS) -> list[int]:
    """Channels at each decoder stage input, from the 8x8 map of ``width`` channels up: 512, 256, ... (never
    below 16)."""
    stages = math.log2(resolution / BASE_SIDE)
    if stages < 1 or stages != int(stages):
        raise ValueError(f"resolution must be 8 * 2**k with k >= 1 (16, 32, ..., 512), got {resolution}")
    return [max(width >> i, MIN_CHANNELS) for i in range(int(stages))]


def norm_layer(bottleneck: str, channels: int) -> nn.Module:
    """BatchNorm for the seed's linear bottleneck; GroupNorm of at least 8 channels per group otherwise (one
    channel per group would be instance norm, which discards each channel's brightness)."""
    if bottleneck == "linear":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(max(1, min(GROUPS, channels // 8)), channels)


class Encoder(nn.Module):
    """Mirror of the decoder: stride-2 Conv + norm + ReLU stages down to 8x8x512, then to the latent."""

    def __init__(self, resolution: int, latent_dim: int, bottleneck: str = "conv", width: int = BASE_CHANNELS) -> None:
        super().__init__()
        channels = [3] + stage_channels(resolution, width)[::-1]
        self.stages = nn.Sequential(
            *[
                nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), norm_layer(bottleneck, c_out), nn.ReLU())
                for c_in, c_out in zip(channels[:-1], channels[1:])
            ]
        )
        if bottleneck == "linear":
            self.to_latent = nn.Sequential(nn.Flatten(), nn.Linear(BASE_SIDE * BASE_SIDE * width, latent_dim))
        else:
            self.to_latent = nn.Conv2d(width, latent_channels(latent_dim), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.stages(images))


class Decoder(nn.Module):
    def __init__(self, resolution: int, latent_dim: int, bottleneck: str = "conv", width: int = BASE_CHANNELS) -> None:
        super().__init__()
        channels = stage_channels(resolution, width)
        if bottleneck == "linear":
            self.from_latent = nn.Sequential(
                nn.Linear(latent_dim, BASE_SIDE * BASE_SIDE * width), nn.Unflatten(1, (width, BASE_SIDE, BASE_SIDE))
            )
        else:
            self.from_latent = nn.Conv2d(latent_channels(latent_dim), width, 1)
        self.stages = nn.Sequential(
            *[
                nn.Sequential(
                    nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), norm_layer(bottleneck, c_out), nn.ReLU()
                )
                for c_in, c_out in zip(channels[:-1], channels[1:])
            ]
        )
        self.to_rgb = nn.ConvTranspose2d(channels[-1], 3, 4, stride=2, padding=1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.from_latent(latent))
        # The output layer in float32 even under bf16 autocast (train.bf16): a bf16 sigmoid rounds to exactly
        # 1.0 from a logit of about 6 up, where BCE's gradient then vanishes.
        with torch.autocast(features.device.type, enabled=False):
            return torch.sigmoid(self.to_rgb(features.float()))


def latent_channels(latent_dim: int) -> int:
    if latent_dim % (BASE_SIDE * BASE_SIDE):
        raise ValueError(f"a conv bottleneck needs latent_dim divisible by {BASE_SIDE * BASE_SIDE}, got {latent_dim}")
    return latent_dim // (BASE_SIDE * BASE_SIDE)


class Autoencoder(nn.Module):
    def __init__(
        self, resolution: int = 512, latent_dim: int = 256, bottleneck: str = "conv", width: int = BASE_CHANNELS
    ) -> None:
        super().__init__()
        if bottleneck not in ("conv", "linear"):
            raise ValueError(f"bottleneck must be 'conv' or 'linear', got {bottleneck!r}")
        self.encoder = Encoder(resolution, latent_dim, bottleneck, width)
        self.decoder = Decoder(resolution, latent_dim, bottleneck, width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(images))


class Denoiser(nn.Module):
    """A small fully convolutional restoration net in the spirit of Zhao et al. 2017, for every restoration task
    (denoise, deblur, jpeg): it predicts the degradation's residual, so the output is input - residual, clamped
    smoothly into [0, 1] by a sigmoid on the logit."""

    def __init__(self, width: int = 64, depth: int = 5) -> None:
        super().__init__()
        layers = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        logits = torch.logit(noisy.clamp(1e-3, 1 - 1e-3))
        return torch.sigmoid(logits - self.body(noisy))


class Upsampler(nn.Module):
    """Super-resolution by ``factor`` (a power of two): convolutions on the small input, one stride-2
    ConvTranspose2d + ReLU stage per doubling, as in the autoencoder's decoder, and a residual over the bicubic
    enlargement of the input, so the output starts near it (in logit space, squashed into [0, 1] by a sigmoid)."""

    def __init__(self, factor: int, width: int = 64, depth: int = 5) -> None:
        super().__init__()
        doublings = math.log2(factor)
        if factor < 2 or doublings != int(doublings):
            raise ValueError(f"the upsampler needs a power-of-two data.scale_factor (2, 4, 8), got {factor}")
        layers = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        for _ in range(int(doublings)):
            layers += [nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.factor = factor

    def forward(self, small: torch.Tensor) -> torch.Tensor:
        enlarged = nn.functional.interpolate(small, scale_factor=self.factor, mode="bicubic", align_corners=False)
        with torch.autocast(small.device.type, enabled=False):
            residual = self.body(small).float()
            return torch.sigmoid(torch.logit(enlarged.float().clamp(1e-3, 1 - 1e-3)) + residual)


@register_model(
    "autoencoder",
    "the built-in autoencoder: stride-2 conv encoder to the latent, upsampling decoder from an 8x8 map, sigmoid output",
    latent_dim=256,
    bottleneck="conv",
    width=BASE_CHANNELS,
)
def make_autoencoder(context: ModelContext, latent_dim: int, bottleneck: str, width: int) -> Autoencoder:
    return Autoencoder(context.image_size, latent_dim, bottleneck, width)


@register_model(
    "denoiser",
    "the built-in restoration net (every task but autoencode): a fully convolutional net "
    "predicting the residual from the degraded input",
    width=64,
    depth=5,
)
def make_denoiser(context: ModelContext, width: int, depth: int) -> Denoiser:
    return Denoiser(width, depth)


@register_model(
    "upsampler",
    "the built-in super-resolution net: the denoiser's convolutions on the small input, "
    "a stride-2 transposed-convolution stage per doubling, a residual over the enlarged "
    "input",
    width=64,
    depth=5,
)
def make_upsampler(context: ModelContext, width: int, depth: int) -> Upsampler:
    return Upsampler(context.scale_factor, width, depth)
