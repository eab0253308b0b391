"""The autoencoder every entry trains, and a small fully convolutional net for the denoising task.

The decoder follows the seed design (Linear latent -> 8x8x512 -> stride-2 ConvTranspose2d + BatchNorm + ReLU
stages) but with as many stages as the resolution needs: log2(R / 8), so 6 for 512x512 (the seed's 4 stages
reach only 128x128). A sigmoid keeps outputs in [0, 1], the range every loss and metric expects.
"""

from __future__ import annotations

import math

import torch
from torch import nn

BASE_SIDE = 8
BASE_CHANNELS = 512
MIN_CHANNELS = 16


def stage_channels(resolution: int) -> list[int]:
    """Channels at each decoder stage input, from the 8x8x512 map up: 512, 256, ... (never below 16)."""
    stages = math.log2(resolution / BASE_SIDE)
    if stages < 1 or stages != int(stages):
        raise ValueError(f"resolution must be 8 * 2**k with k >= 1 (16, 32, ..., 512), got {resolution}")
    return [max(BASE_CHANNELS >> i, MIN_CHANNELS) for i in range(int(stages))]


class Encoder(nn.Module):
    """Mirror of the decoder: stride-2 Conv + BatchNorm + ReLU stages down to 8x8x512, then Linear to the latent."""

    def __init__(self, resolution: int, latent_dim: int) -> None:
        super().__init__()
        channels = [3] + stage_channels(resolution)[::-1]
        self.stages = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())
            for c_in, c_out in zip(channels[:-1], channels[1:])
        ])
        self.linear = nn.Linear(BASE_SIDE * BASE_SIDE * BASE_CHANNELS, latent_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(self.stages(images).flatten(1))


class Decoder(nn.Module):
    def __init__(self, resolution: int, latent_dim: int) -> None:
        super().__init__()
        channels = stage_channels(resolution)
        self.linear = nn.Linear(latent_dim, BASE_SIDE * BASE_SIDE * BASE_CHANNELS)
        self.stages = nn.Sequential(*[
            nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())
            for c_in, c_out in zip(channels[:-1], channels[1:])
        ])
        self.to_rgb = nn.ConvTranspose2d(channels[-1], 3, 4, stride=2, padding=1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        features = self.linear(latent).view(-1, BASE_CHANNELS, BASE_SIDE, BASE_SIDE)
        return torch.sigmoid(self.to_rgb(self.stages(features)))


class Autoencoder(nn.Module):
    def __init__(self, resolution: int = 512, latent_dim: int = 256) -> None:
        super().__init__()
        self.encoder = Encoder(resolution, latent_dim)
        self.decoder = Decoder(resolution, latent_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(images))


class Denoiser(nn.Module):
    """A small fully convolutional restoration net in the spirit of Zhao et al. 2017: it predicts the noise
    residual, so the output is input - residual, clamped smoothly into [0, 1] by a sigmoid on the logit."""

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


def build_model(task: str, resolution: int, latent_dim: int, seed: int) -> nn.Module:
    """The initial model for a seed: built under its own RNG so every entry can start from a copy of it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if task == "denoise":
            return Denoiser()
        return Autoencoder(resolution, latent_dim)
