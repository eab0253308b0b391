"""The precision of frozen loss networks (VGG features, LPIPS's trunk): bfloat16 where the device computes it
natively, float32 elsewhere, and float32 wherever the choice is "fp32".

A loss network's convolutions are most of a perceptual loss's cost on a CPU; oneDNN runs them in bfloat16 about
twice as fast on CPUs with AVX512-BF16 or AMX (VGG16 to relu2_2, 64 px, batch 8: 96 ms against 187 ms). Only the
network's forward runs under autocast: its outputs come back as float32, so distances, Gram matrices and the
normalisations after it keep float32's precision.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively, as torch reports it. On a CPU: oneDNN runs bfloat16 there
    and the CPU has bfloat16 instructions (AVX512-BF16 or AMX); oneDNN also accepts plain AVX-512, where it
    emulates bfloat16 in float32 instructions and gains little."""
    if device.type == "cpu":
        runs = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        return bool(runs and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()))
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return False


def loss_network_precision(setting: str, device: torch.device) -> str:
    """``train.loss_networks`` resolved on ``device``: "bf16" or "fp32". "auto" takes bf16 on a CPU that computes
    it natively only: GPU runs keep the float32 of their published results unless a suite asks for "bf16"."""
    if setting != "auto":
        return setting
    return "bf16" if device.type == "cpu" and native_bf16(device) else "fp32"


def bf16_autocast(device_type: str, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast when ``enabled``; otherwise nothing at all, so an enclosing autocast (train.bf16) holds."""
    return torch.autocast(device_type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def as_float32(outputs: Any) -> Any:
    """A network's outputs (a tensor, or a list or (named) tuple of them) in float32."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float()
    if isinstance(outputs, tuple) and hasattr(outputs, "_fields"):
        return type(outputs)(*map(as_float32, outputs))
    return type(outputs)(map(as_float32, outputs))


class InBF16(torch.nn.Module):
    """``network``'s forward under bfloat16 autocast, its outputs returned in float32."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, *inputs: torch.Tensor) -> Any:
        with bf16_autocast(inputs[0].device.type, True):
            outputs = self.network(*inputs)
        return as_float32(outputs)
