"""The loss library: a registry of losses by name, and weighted combinations of them."""

from bench.losses.combo import WeightedSum, build_entry_loss, freeze
from bench.losses.registry import LossContext, build_loss, get_loss_info, loss_names, register_loss, resolve_params

__all__ = [
    "LossContext",
    "WeightedSum",
    "build_entry_loss",
    "build_loss",
    "freeze",
    "get_loss_info",
    "loss_names",
    "register_loss",
    "resolve_params",
]
