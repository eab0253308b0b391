"""Deterministic kernels for a process: the driver of `bench run --deterministic` and each of its Ray workers."""

from __future__ import annotations

import os

import torch


def make_deterministic() -> None:
    """The settings PyTorch documents for reproducible CUDA results (docs: notes/randomness)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs this before its first call
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
