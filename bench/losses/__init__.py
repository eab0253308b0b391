"""The loss library: a registry of losses by name, and weighted combinations of them."""

from bench.losses.combo import LOSS_NETWORK_SEED, WeightedSum, build_entry_loss, build_suite_losses, freeze
from bench.losses.registry import LossContext, build_loss, get_loss_info, loss_names, register_loss, resolve_params

__all__ = [
    "LOSS_NETWORK_SEED",
    "LossContext",
    "WeightedSum",
    "build_entry_loss",
    "build_loss",
    "build_suite_losses",
    "freeze",
    "get_loss_info",
    "loss_names",
    "register_loss",
    "resolve_params",
]
