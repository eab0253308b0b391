"""Losses chosen by name (as timm chooses models): ``register_loss`` adds one, ``build_loss`` makes one.

A factory takes a :class:`LossContext` plus the loss's parameters (with defaults declared at
registration, so ``bench list`` and suite validation know them) and returns an ``nn.Module`` whose
``forward(reconstruction, target)`` returns a scalar tensor. Modules that load pretrained networks set
``weights_used`` (``"imagenet"``, ``"random"`` or a file path) so every result row can say which.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from torch import nn

from bench.errors import BenchInputError


@dataclass(frozen=True)
class LossContext:
    """What a factory may need to know about where the loss will run."""

    image_size: int  # side of the square images the loss will see
    seed: int = 0  # seeds any random fallback initialisation of a loss network


@dataclass(frozen=True)
class LossInfo:
    name: str
    factory: Callable[..., nn.Module]
    defaults: Mapping[str, Any]
    summary: str


_LOSSES: dict[str, LossInfo] = {}


def register_loss(name: str, summary: str, **defaults: Any) -> Callable:
    """Decorator: register ``factory(context, **params)`` under ``name`` with parameter defaults."""

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _LOSSES:
            raise ValueError(f"loss {name!r} is registered twice")
        _LOSSES[name] = LossInfo(name, factory, dict(defaults), summary)
        return factory

    return decorator


def loss_names() -> list[str]:
    _import_builtin_losses()
    return sorted(_LOSSES)


def get_loss_info(name: str, *, where: str = "") -> LossInfo:
    _import_builtin_losses()
    if name not in _LOSSES:
        close = difflib.get_close_matches(name, _LOSSES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise BenchInputError(
            f"unknown loss {name!r}",
            where=where,
            fix=f"{hint}Known losses: {', '.join(sorted(_LOSSES))} (see `python -m bench list`).",
        )
    return _LOSSES[name]


def resolve_params(name: str, params: Mapping[str, Any], *, where: str = "") -> dict[str, Any]:
    """The loss's defaults updated by ``params``; unknown or mistyped parameters are input errors."""
    info = get_loss_info(name, where=where)
    resolved = dict(info.defaults)
    for key, value in params.items():
        if key not in info.defaults:
            close = difflib.get_close_matches(key, info.defaults, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            known = ", ".join(info.defaults) or "none"
            raise BenchInputError(
                f"loss {name!r} has no parameter {key!r}",
                where=f"{where}.{key}" if where else key,
                fix=f"{hint}Parameters of {name!r}: {known}.",
            )
        _check_type(name, key, info.defaults[key], value, where)
        resolved[key] = value
    return resolved


def _check_type(name: str, key: str, default: Any, value: Any, where: str) -> None:
    if default is None or isinstance(default, str) and isinstance(value, (int, float, str)):
        return  # None and string defaults admit alternatives ("auto" or a number, a path or a name)
    if value == "auto" and isinstance(default, int) and not isinstance(default, bool):
        return  # an integer chosen by the loss itself (e.g. MS-SSIM levels); losses without a rule refuse it
    numeric = (int, float)
    ok = (
        isinstance(value, bool) == isinstance(default, bool)
        and (isinstance(value, numeric) if isinstance(default, numeric) else isinstance(value, type(default)))
    )
    if not ok:
        raise BenchInputError(
            f"parameter {key!r} of loss {name!r} must be {type(default).__name__}, got {value!r}",
            where=f"{where}.{key}" if where else key,
            fix=f"use a value like the default, {default!r}.",
        )


def build_loss(name: str, params: Mapping[str, Any], context: LossContext) -> nn.Module:
    info = get_loss_info(name)
    return info.factory(context, **resolve_params(name, params))


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
