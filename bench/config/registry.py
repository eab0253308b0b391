"""What the loss registry (bench.losses.registry) and the model registry (bench.models) share: where
registrations come from, their withdrawal when a plugin fails to import, and the checking of names and
parameters.

A plugin may register losses and models at once, so one ``registering_as(source)`` covers both registries:
``bench.config.plugins`` imports each plugin inside it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping

from bench.errors import BenchInputError, did_you_mean

BUILTIN = "built-in"  # the source of what LossBench itself registers
THIS_PROCESS = "this process"  # the source prefix of what other code registers outside a plugin

_sources: list[str] = [BUILTIN]  # the source that registrations come from now (a stack: see registering_as)
_registries: list[tuple[Callable[[], None], Callable[[str], None]]] = []  # (import the built-ins, withdraw a source)


class DuplicateNameError(ValueError):
    def __init__(self, kind: str, name: str, existing_source: str) -> None:
        super().__init__(f"{kind} {name!r} is registered twice (first by {existing_source})")
        self.kind, self.name, self.existing_source = kind, name, existing_source


def add_registry(import_builtins: Callable[[], None], withdraw: Callable[[str], None]) -> None:
    """A registry takes part in ``registering_as``: its built-ins are imported before any plugin (so a plugin
    reusing a built-in name is the one refused), and ``withdraw(source)`` drops what a failed plugin registered."""
    _registries.append((import_builtins, withdraw))


def current_source(factory: Callable | None = None) -> str:
    """Where a registration comes from: the plugin being imported, LossBench itself, or, for a ``factory``
    registered by other code outside any plugin (a notebook, a test), this process alone."""
    source = _sources[-1]
    module = getattr(factory, "__module__", None) or "?"
    if source == BUILTIN and factory is not None and module != "bench" and not module.startswith("bench."):
        return f"{THIS_PROCESS} ({module})"
    return source


def only_in_this_process(source: str) -> bool:
    """A registration from ``source`` is unknown to worker processes, which load built-ins and plugins only."""
    return source.startswith(THIS_PROCESS)


@contextlib.contextmanager
def registering_as(source: str) -> Iterator[None]:
    """Registrations inside come from ``source``; if the block raises, they are withdrawn from every registry."""
    for import_builtins, _ in _registries:
        import_builtins()
    _sources.append(source)
    try:
        yield
    except BaseException:
        for _, withdraw in _registries:
            withdraw(source)
        raise
    finally:
        _sources.pop()


class Registry(dict):
    """What is registered of one kind ("loss", "model"), by name, each record with its ``source``; the
    built-ins are imported on first use. Its module passes ``withdraw`` to ``add_registry``, so that a failed
    plugin's records are withdrawn (``registering_as``)."""

    def __init__(self, kind: str, import_builtins: Callable[[], None]) -> None:
        super().__init__()
        self.kind, self._import_builtins = kind, import_builtins

    def copy(self) -> "Registry":
        copied = Registry(self.kind, self._import_builtins)
        copied.update(self)
        return copied

    def names(self) -> list[str]:
        """Every registered name (built-in, and from the plugins loaded so far), sorted."""
        self._import_builtins()
        return sorted(self)

    def info(self, name: str, *, where: str = "") -> Any:
        self._import_builtins()
        if name not in self:
            raise unknown_name(self.kind, name, list(self), where=where)
        return self[name]

    def add(self, name: str, record: Any) -> None:
        if name in self:
            raise DuplicateNameError(self.kind, name, self[name].source)
        self[name] = record

    def withdraw(self, source: str) -> None:
        for name in [name for name, record in self.items() if record.source == source]:
            del self[name]


def check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-." for c in name):
        raise ValueError(f"{kind} name {name!r} must be non-empty letters, digits, '_', '-' or '.'")


def unknown_name(kind: str, name: str, known: list[str], *, where: str) -> BenchInputError:
    hint = did_you_mean(name, known)
    return BenchInputError(
        f"unknown {kind} {name!r}",
        where=where,
        fix=f"{hint}Known {kind} names: {', '.join(sorted(known))} (see `python -m bench list`). A {kind} from a "
        "plugin needs the plugin installed, or passed with -p MODULE / --plugin FILE.py.",
    )


def resolve_parameters(
    kind: str, name: str, defaults: Mapping[str, Any], params: Mapping[str, Any], *, where: str = ""
) -> dict[str, Any]:
    """``defaults`` updated by ``params``; unknown or mistyped parameters are input errors."""
    resolved = dict(defaults)
    for key, value in params.items():
        if key not in defaults:
            hint = did_you_mean(key, defaults)
            known = ", ".join(defaults) or "none"
            raise BenchInputError(
                f"{kind} {name!r} has no parameter {key!r}",
                where=f"{where}.{key}" if where else key,
                fix=f"{hint}Parameters of {name!r}: {known}.",
            )
        _check_type(kind, name, key, defaults[key], value, where)
        resolved[key] = value
    return resolved


def _check_type(kind: str, name: str, key: str, default: Any, value: Any, where: str) -> None:
    if default is None or isinstance(default, str) and isinstance(value, (int, float, str)):
        return  # None and string defaults admit alternatives ("auto" or a number, a path or a name)
    if value == "auto" and isinstance(default, int) and not isinstance(default, bool):
        return  # an integer chosen by the factory itself (e.g. MS-SSIM levels); factories without a rule refuse it
    numeric = (int, float)
    ok = isinstance(value, bool) == isinstance(default, bool) and (
        isinstance(value, numeric) if isinstance(default, numeric) else isinstance(value, type(default))
    )
    if not ok:
        raise BenchInputError(
            f"parameter {key!r} of {kind} {name!r} must be {type(default).__name__}, got {value!r}",
            where=f"{where}.{key}" if where else key,
            fix=f"use a value like the default, {default!r}.",
        )
