"""Models chosen by name, as losses are (bench.losses.registry): ``register_model`` adds one, ``build_model``
makes a seed's initial model.

A factory takes a :class:`ModelContext` plus the model's parameters (with defaults declared at registration,
so ``bench list`` and suite validation know them) and returns an ``nn.Module`` mapping a batch of input images
(N, C, H, W) in [0, 1] to reconstructions in [0, 1] of the targets' shape (the same as the input's, but for
super-resolution, whose inputs are ``scale_factor`` times smaller). The built-in models
(bench.train.model) register here too; plugins load as for losses (bench.config.plugins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from bench.config.registry import (
    Registry,
    add_registry,
    BUILTIN,
    check_name,
    current_source,
    resolve_parameters,
)
from bench.errors import BenchInputError

OUTPUT_RANGE = (0.0, 1.0)  # the range of the targets, and the only one BCE, the IQA measures and LPIPS accept


@dataclass(frozen=True)
class ModelContext:
    """What a factory may need to know about the images its model will see."""

    image_size: int  # side of the square output images (the targets')
    channels: int  # channels of the input and of the output (3: RGB)
    task: str  # "autoencode" (the input is the target), or a restoration task (bench.data.degrade)
    scale_factor: int = 1  # the input's side is image_size // scale_factor (super_resolution: data.scale_factor)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    factory: Callable[..., nn.Module]
    defaults: Mapping[str, Any]
    summary: str
    source: str = BUILTIN  # "built-in" or the plugin that registered it


_MODELS = Registry("model", lambda: _import_builtin_models())


def register_model(name: str, summary: str, **defaults: Any) -> Callable:
    """Decorator: register ``factory(context, **params)`` as the model ``name``.

    ``summary`` is the one line ``bench list`` shows; ``defaults`` declare every parameter with its default
    (a suite's ``[model]`` table may set only these, with values of the default's type)."""
    check_name("model", name)

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS.add(name, ModelInfo(name, factory, dict(defaults), summary, current_source(factory)))
        return factory

    return decorator


def model_names() -> list[str]:
    """Every registered model (built-in, and from the plugins loaded so far), sorted."""
    return _MODELS.names()


def get_model_info(name: str, *, where: str = "") -> ModelInfo:
    return _MODELS.info(name, where=where)


def resolve_model_params(name: str, params: Mapping[str, Any], *, where: str = "") -> dict[str, Any]:
    """The model's defaults updated by ``params``; unknown or mistyped parameters are input errors."""
    return resolve_parameters("model", name, get_model_info(name, where=where).defaults, params, where=where)


def build_model(name: str, params: Mapping[str, Any], context: ModelContext, seed: int) -> nn.Module:
    """The initial model of a seed, built under its own RNG so that every entry can start from a copy of it.
    A ``ValueError`` from the factory is a bad parameter (an input error); anything else it raises is the
    model's own fault, for its entries to report."""
    info = get_model_info(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = info.factory(context, **resolve_model_params(name, params))
        except ValueError as error:
            raise BenchInputError(
                f"model {name!r} could not be built: {error}",
                where=f"model ({info.source})",
                fix="change its parameters in [model] (see `python -m bench list`)",
            ) from None
    if not isinstance(model, nn.Module):
        raise BenchInputError(
            f"the factory of model {name!r} returned {type(model).__name__}, not an nn.Module",
            where=info.source,
            fix="return an nn.Module mapping images to images of the same shape",
        )
    return model


def check_output(name: str, inputs: torch.Tensor, output: Any, targets: torch.Tensor) -> None:
    """Refuses a model whose output LossBench cannot train on: not a tensor of the targets' shape, or outside
    [0, 1] (the targets' range, which BCE, the image-quality measures and LPIPS require)."""
    where = f"model {name!r} ({get_model_info(name).source})"
    shape = tuple(getattr(output, "shape", ()))
    if not isinstance(output, torch.Tensor) or shape != tuple(targets.shape):
        found = f"a {type(output).__name__}" if not isinstance(output, torch.Tensor) else f"shape {shape}"
        smaller = (
            " (the context's scale_factor: the input is that many times smaller)"
            if inputs.shape != targets.shape
            else ""
        )
        raise BenchInputError(
            f"returns {found} for inputs of shape {tuple(inputs.shape)}, whose targets have shape "
            f"{tuple(targets.shape)}",
            where=where,
            fix="return one tensor shaped like the targets (N, channels, image_size, image_size); "
            f"the factory's context gives channels and image_size{smaller}",
        )
    low, high = output.min().item(), output.max().item()
    if not (OUTPUT_RANGE[0] <= low and high <= OUTPUT_RANGE[1]):
        raise BenchInputError(
            f"returns values in [{low:.4g}, {high:.4g}], outside [0, 1]",
            where=where,
            fix="end the model with a sigmoid (or clamp its output to [0, 1]): the targets are in "
            "[0, 1], and BCE, the image-quality measures and LPIPS accept nothing else",
        )


def _import_builtin_models() -> None:
    import bench.train.model  # noqa: F401 - registration happens on import


# A lambda: the registry is looked up when a plugin fails, so a test may swap in a copy.
add_registry(_import_builtin_models, lambda source: _MODELS.withdraw(source))
