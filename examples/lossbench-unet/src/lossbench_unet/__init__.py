"""tiny_unet: a small U-Net (Ronneberger et al. 2015) for LossBench, an example model plugin.

Each level halves the image with a stride-2 convolution and doubles the channels; the way back up doubles it
with a transposed convolution and concatenates the features of the same size from the way down (the skip
connections), so fine detail need not pass through the coarsest level. A sigmoid keeps the output in [0, 1].

With its skips a U-Net can copy its input, so it suits the denoising task (``task = "denoise"``), not the
autoencoding one, whose models must squeeze the image through a bottleneck.
"""

from __future__ import annotations

import torch
from torch import nn

from bench import ModelContext, register_model

__all__ = ["TinyUNet"]


def block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels_out, channels_out, 3, padding=1),
        nn.ReLU(),
    )


class TinyUNet(nn.Module):
    def __init__(self, channels: int, width: int, depth: int) -> None:
        super().__init__()
        widths = [width * 2**level for level in range(depth + 1)]
        self.stem = block(channels, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(w_in, w_out, 4, stride=2, padding=1), nn.ReLU(), block(w_out, w_out))
            for w_in, w_out in zip(widths[:-1], widths[1:])
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(w_in, w_out, 4, stride=2, padding=1)
            for w_in, w_out in zip(widths[:0:-1], widths[-2::-1])
        )
        self.merge = nn.ModuleList(block(2 * w, w) for w in widths[-2::-1])  # after concatenating the skip
        self.to_image = nn.Conv2d(widths[0], channels, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = [self.stem(images)]
        for down in self.down:
            features.append(down(features[-1]))
        x = features.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([up(x), features.pop()], dim=1))
        return torch.sigmoid(self.to_image(x))


@register_model(
    "tiny_unet",
    "a small U-Net: stride-2 levels down, transposed convolutions up, skip connections, sigmoid output",
    width=16,
    depth=2,
)
def _make_tiny_unet(context: ModelContext, width: int, depth: int) -> TinyUNet:
    if width < 1 or depth < 1 or context.image_size % 2**depth:
        raise ValueError(
            f"width and depth must be >= 1 and 2**depth must divide the image size "
            f"{context.image_size}, got width = {width}, depth = {depth}"
        )
    return TinyUNet(context.channels, width, depth)
