"""Losses chosen by name (as timm chooses models): ``register_loss`` adds one, ``build_loss`` makes one.

A factory takes a :class:`LossContext` plus the loss's parameters (with defaults declared at
registration, so ``bench list`` and suite validation know them) and returns an ``nn.Module`` (or a plain
function) whose ``forward(reconstruction, target)`` returns a scalar tensor. Modules that load pretrained
networks set ``weights_used`` (``"imagenet"``, ``"random"`` or a file path) so every result row can say which.

Losses from outside LossBench register the same way, while ``bench.config.plugins`` imports their plugin inside
``bench.config.registry.registering_as(source)``, so each loss knows where it came from and a plugin that fails
to import leaves nothing half-registered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from bench.config.registry import (
    Registry,
    add_registry,
    only_in_this_process,
    BUILTIN,
    check_name,
    current_source,
    resolve_parameters,
)
from bench.errors import BenchInputError
from bench.losses.measures import Measure


@dataclass(frozen=True)
class LossContext:
    """What a factory may need to know about where the loss will run."""

    image_size: int  # side of the square images the loss will see
    seed: int = 0  # seeds any random fallback initialisation of a loss network
    precision: str = "fp32"  # of a frozen loss network's forward: "fp32" or "bf16" (bench.losses.precision)


IMAGE_RANGE = (0.0, 1.0)  # the range of every image LossBench hands a loss


@dataclass(frozen=True)
class LossInfo:
    name: str
    factory: Callable[..., nn.Module]
    defaults: Mapping[str, Any]
    summary: str
    input_range: tuple[float, float] = IMAGE_RANGE  # images are mapped linearly from [0, 1] to this range
    pretrained: bool = False  # loads pretrained networks: its module must say which weights (``weights_used``)
    source: str = (
        BUILTIN  # "built-in" or the plugin that registered it, e.g. "plugin wavelet (lossbench-wavelet 0.1.0)"
    )
    measure: Measure | None = None  # the image-quality measure it is (label, direction, design size), if any


_LOSSES = Registry("loss", lambda: _import_builtin_losses())


def register_loss(
    name: str,
    summary: str,
    *,
    input_range: tuple[float, float] = IMAGE_RANGE,
    pretrained: bool = False,
    measure: Measure | None = None,
    **defaults: Any,
) -> Callable:
    """Decorator: register ``factory(context, **params)`` as the loss ``name``.

    ``summary`` is the one line ``bench list`` shows; ``defaults`` declare every parameter with its default
    (suites may set only these, with values of the default's type). ``input_range``: the range the loss
    expects its images in; LossBench's images are in [0, 1] and are mapped linearly to it (e.g. ``(-1, 1)``).
    ``pretrained``: the loss loads pretrained networks, so its module must set ``weights_used`` (for
    example ``"imagenet"``, ``"random"`` or a file path), which every result row records. The factory
    returns an ``nn.Module`` or a function of ``(reconstruction, target)`` giving a scalar tensor.
    ``measure``: the loss's record as an image-quality measure (``bench.losses.measures.Measure``): its label,
    direction, the metrics it optimises, its design size and its reference.
    """
    check_name("loss", name)
    low, high = (float(bound) for bound in input_range)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"input_range of loss {name!r} must be two finite numbers, low < high; got {input_range!r}")
    if measure is not None and not isinstance(measure, Measure):
        raise ValueError(f"measure of loss {name!r} must be a bench.losses.measures.Measure, got {measure!r}")

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _LOSSES.add(
            name,
            LossInfo(
                name, factory, dict(defaults), summary, (low, high), bool(pretrained), current_source(factory), measure
            ),
        )
        return factory

    return decorator


def loss_names() -> list[str]:
    """Every registered loss (built-in, and from the plugins loaded so far), sorted."""
    return _LOSSES.names()


def get_loss_info(name: str, *, where: str = "") -> LossInfo:
    return _LOSSES.info(name, where=where)


def measure_of(name: str) -> Measure | None:
    """The measure record of loss ``name``; None for a loss without one, or one not registered."""
    _import_builtin_losses()
    return _LOSSES[name].measure if name in _LOSSES else None


def resolve_params(name: str, params: Mapping[str, Any], *, where: str = "") -> dict[str, Any]:
    """The loss's defaults updated by ``params``; unknown or mistyped parameters are input errors."""
    return resolve_parameters("loss", name, get_loss_info(name, where=where).defaults, params, where=where)


def build_loss(name: str, params: Mapping[str, Any], context: LossContext) -> nn.Module:
    info = get_loss_info(name)
    resolved = resolve_params(name, params)
    if info.source == BUILTIN or only_in_this_process(info.source):
        loss = info.factory(context, **resolved)
    else:  # whatever a plugin's factory raises is that plugin's input error, named as such
        try:
            loss = info.factory(context, **resolved)
        except Exception as error:  # noqa: BLE001
            raise BenchInputError(
                f"loss {name!r} could not be built: {type(error).__name__}: {error}",
                where=info.source,
                fix="change its parameters, or fix the plugin",
            ) from None
    return _as_loss_module(info, loss)


class FunctionLoss(nn.Module):
    """A plain function of (reconstruction, target) returned by a factory, as a module."""

    def __init__(self, function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.function = function

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.function(reconstruction, target)


class InputRange(nn.Module):
    """Maps [0, 1] images linearly to the range ``loss`` expects before calling it."""

    def __init__(self, loss: nn.Module, low: float, high: float) -> None:
        super().__init__()
        self.loss, self.low, self.high = loss, low, high

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        scale = self.high - self.low
        return self.loss(reconstruction * scale + self.low, target * scale + self.low)

    @property
    def weights_used(self) -> str:  # an AttributeError when the loss inside records none, so hasattr() holds
        return self.loss.weights_used


def _as_loss_module(info: LossInfo, loss: Any) -> nn.Module:
    if not isinstance(loss, nn.Module):
        if not callable(loss):
            raise BenchInputError(
                f"the factory of loss {info.name!r} returned {type(loss).__name__}, not a loss",
                where=info.source,
                fix="return an nn.Module (or a function) whose forward(reconstruction, target) returns a scalar tensor",
            )
        loss = FunctionLoss(loss)
    if not getattr(loss, "learns_with_model", False):
        # A loss is a fixed measuring instrument unless it says otherwise: a plugin's network left trainable
        # would otherwise be optimised with the model (bench.train.loop learns every loss parameter that requires grad).
        loss.requires_grad_(False)
    if info.pretrained and not hasattr(loss, "weights_used"):
        raise BenchInputError(
            f"loss {info.name!r} is registered with pretrained=True but its module does not say "
            "which weights it loaded",
            where=info.source,
            fix='set weights_used on the module, e.g. self.weights_used = "imagenet" (or "random", '
            "or the file path), so every result row records it",
        )
    if info.input_range != IMAGE_RANGE:
        loss = InputRange(loss, *info.input_range)
    return loss


def _import_builtin_losses() -> None:
    # Registration happens on import of the loss modules; importing here keeps callers from caring.
    import bench.losses.dists  # noqa: F401
    import bench.losses.frequency  # noqa: F401
    import bench.losses.iqa  # noqa: F401
    import bench.losses.nlpd  # noqa: F401
    import bench.losses.perceptual  # noqa: F401
    import bench.losses.pixel  # noqa: F401
    import bench.losses.robust  # noqa: F401
    import bench.losses.structural  # noqa: F401


# A lambda: the registry is looked up when a plugin fails, so a test may swap in a copy.
add_registry(_import_builtin_losses, lambda source: _LOSSES.withdraw(source))
