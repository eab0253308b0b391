"""Losses and models from outside LossBench, found the way pytest finds its plugins.

* Installed packages declare a module (or a ``module:function``) under the entry-point group
  ``lossbench.losses`` (or ``lossbench.models``) in their own ``pyproject.toml``; every command loads them at
  start-up, as pytest loads ``pytest11`` plugins (``LOSSBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` turns that off, as
  ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does for pytest).
* ``-p MODULE`` or ``--plugin path/to/losses.py`` (repeatable) loads a module or a single file that is not
  installed as a package.

Importing a plugin registers its losses (``@register_loss``) and models (``@register_model``); a named function
is called, with no arguments, after its module is imported. A suite never names code to import: it may only say
which plugins it needs (``requires``), and a missing one is an input error saying how to install or pass it.

Loading is idempotent: Ray workers and the speed gate's workers load the same plugins from
``command_line_plugins()``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import traceback
import zlib
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Callable, Iterable, Sequence

import bench.losses.registry  # noqa: F401 - its registry takes part in registering_as
import bench.models.registry  # noqa: F401 - so does this one
from bench.config.registry import DuplicateNameError, registering_as
from bench.errors import BenchInputError

ENTRY_POINT_GROUPS = ("lossbench.losses", "lossbench.models")  # a plugin may declare itself in either, or both
AUTOLOAD_OFF = "LOSSBENCH_DISABLE_PLUGIN_AUTOLOAD"


@dataclass(frozen=True)
class Plugin:
    name: str  # the entry point's name, the module's name or the file's stem: what `bench list` shows
    source: str  # how its losses' source reads, e.g. "plugin wavelet (lossbench-wavelet 0.1.0)"
    spec: str  # what loads it again in another process: a module name or a file's absolute path; "" if installed
    aliases: frozenset[str]  # names a suite's `requires` may use: this name, the distribution's, the module's


_LOADED: dict[str, Plugin] = {}  # key: "entry point GROUP NAME" (names are per group) or the spec


def load_plugins(specs: Iterable[str] = ()) -> list[Plugin]:
    """Load the installed plugins (unless ``LOSSBENCH_DISABLE_PLUGIN_AUTOLOAD`` is set), then each of
    ``specs``: a module name (``my_losses``) or the path of a ``.py`` file. Returns every plugin loaded so far."""
    if not os.environ.get(AUTOLOAD_OFF):
        for group in ENTRY_POINT_GROUPS:
            for entry_point in sorted(entry_points(group=group), key=lambda ep: ep.name):
                _load_entry_point(entry_point)
    for spec in specs:
        _load_spec(str(spec))
    return list(_LOADED.values())


def command_line_plugins() -> list[str]:
    """The plugins loaded by module name or file path (not installed ones, which every process finds itself)."""
    return [plugin.spec for plugin in _LOADED.values() if plugin.spec]


def check_required(names: Sequence[str], *, where: str) -> None:
    """A suite's ``requires``: each name must be a loaded plugin (by any of its names)."""
    known = {_normal(alias) for plugin in _LOADED.values() for alias in plugin.aliases}
    for name in names:
        if _normal(name) not in known:
            loaded = ", ".join(sorted(plugin.name for plugin in _LOADED.values())) or "none"
            raise BenchInputError(
                f"this suite requires the plugin {name!r}, which is not loaded (loaded plugins: {loaded})",
                where=where,
                fix=f"install it (e.g. pip install {name}; installed plugins load by their entry point in "
                f"{' or '.join(ENTRY_POINT_GROUPS)}), or pass it: -p MODULE or --plugin path/to/{name}.py",
            )


def _load_entry_point(entry_point: EntryPoint) -> None:
    key = f"entry point {entry_point.group} {entry_point.name}"
    if key in _LOADED:
        return
    dist = getattr(entry_point, "dist", None)
    origin = f"{dist.name} {dist.version}" if dist is not None else entry_point.value
    plugin = Plugin(
        name=entry_point.name,
        source=f"plugin {entry_point.name} ({origin})",
        spec="",
        aliases=frozenset({entry_point.name, entry_point.module, *([dist.name] if dist else [])}),
    )
    _register(plugin, key, entry_point.load)


def _load_spec(spec: str) -> None:
    if spec.endswith(".py") or os.sep in spec or (os.altsep and os.altsep in spec):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise BenchInputError(
                f"plugin file {spec!r} not found",
                where="--plugin",
                fix="give the path of a .py file that registers losses or models, or -p MODULE for a module",
            )
        key = str(path)
        module_name = f"lossbench_plugin_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{zlib.crc32(key.encode()):08x}"
        plugin = Plugin(name=path.stem, source=f"plugin {path.stem} ({path})", spec=key, aliases=frozenset({path.stem}))
        load = lambda: _import_file(module_name, path)  # noqa: E731
    else:
        key = spec
        plugin = Plugin(name=spec, source=f"plugin {spec}", spec=spec, aliases=frozenset({spec}))
        load = lambda: _import_module(spec)  # noqa: E731
    if key not in _LOADED:
        _register(plugin, key, load)


def _register(plugin: Plugin, key: str, load: Callable[[], object]) -> None:
    """Import the plugin (and call it, if it names a function), turning every failure into one input error."""
    where = plugin.source
    try:
        with registering_as(plugin.source):
            loaded = load()
            if callable(loaded):  # a module is not; an entry point naming a function is
                loaded()
    except BenchInputError:
        raise
    except DuplicateNameError as error:
        raise BenchInputError(
            f"registers the {error.kind} {error.name!r}, which {error.existing_source} already registers",
            where=where,
            fix=f"rename the {error.kind} in the plugin ({error.kind} names are global), or leave "
            "out one of the two plugins",
        ) from None
    except Exception as error:  # noqa: BLE001 - any failure of foreign code is reported as that plugin's
        raise BenchInputError(
            f"failed to load: {type(error).__name__}: {error}{_origin(error)}",
            where=where,
            fix="fix the plugin (or uninstall it, or set LOSSBENCH_DISABLE_PLUGIN_AUTOLOAD=1 to "
            "skip installed plugins)",
        ) from None
    _LOADED[key] = plugin


def _import_module(name: str) -> object:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        raise BenchInputError(
            f"no module named {name!r}",
            where=f"-p {name}",
            fix="install the package that holds it, or pass the file: --plugin path/to/file.py",
        ) from None


def _import_file(module_name: str, path: Path) -> object:
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _origin(error: Exception) -> str:
    """Where the plugin's code raised: the last frame of the traceback, as file:line."""
    frames = traceback.extract_tb(error.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503 normalisation, so lossbench_wavelet == lossbench-wavelet
