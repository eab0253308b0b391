"""Process settings: CPU threading for `bench run`, and deterministic kernels for `bench run --deterministic`.

CPU threading for `bench run`: OpenMP worker threads that sleep, rather than spin, while they wait.

PyTorch's OpenMP threads spin between parallel regions by default. On a CPU whose cores other processes share,
a spinning thread holds a core its partner needs, and every small operator waits: on this project's 2-core VM
under load, one MSE training step of the CPU profile's autoencoder took 2.3 s with 2 spinning threads, 0.12 s
with 1 thread and 0.05 s with 2 sleeping threads (OMP_WAIT_POLICY=PASSIVE). The policy is read when OpenMP
loads, so this must run before torch is imported; a value the user set is kept.

Deterministic kernels for a process: the driver of `bench run --deterministic` and each of its Ray workers.
torch is imported inside ``make_deterministic`` so that importing this module does not load it (the wait
policy above must be set first).
"""

from __future__ import annotations

import os

VARIABLE = "OMP_WAIT_POLICY"


def prefer_passive_waits() -> str:
    """Set OMP_WAIT_POLICY=PASSIVE unless it is set already; returns the policy in force."""
    os.environ.setdefault(VARIABLE, "PASSIVE")
    return os.environ[VARIABLE]


def make_deterministic() -> None:
    """The settings PyTorch documents for reproducible CUDA results (docs: notes/randomness)."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs this before its first call
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
