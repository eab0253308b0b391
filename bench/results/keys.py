"""The content key of one training: a SHA-256 of canonical JSON naming everything the training's result depends on.

Two trainings with the same key give the same quality row, history, per-image rows and reconstructions (on a
CPU, bit for bit; on a GPU, samples of the same settings), so the store (``bench.results.store``) may hand one
in for the other. The key is content, never names: the entry's name is left out (a renamed entry reuses its
trainings), and every piece of code that could change a result is in it by its bytes:

* the resolved entry: each term's loss, weight, label and parameters (defaults filled in), and the entry's own
  overrides; the loss as built on this device (the pretrained weights it found, what it chose for the image
  size: ``weights_used`` and ``loss_config``);
* the seed, the task, the device profile that shaped the settings;
* the data settings (all of ``[data]`` but the folder paths, which name where the photographs are, not what
  they are), the photographs' hash (``images_sha256``) and the evaluation set: its crops' names and a hash of
  their pixels;
* the model's name and every parameter;
* the train settings (steps, batch, rates, ``schedule``, ``warmup``, ``min_lr``, ``min_lr_rate``, EMA, bf16,
  channels-last, on_nan, ...), the loss networks' precision as resolved on this device;
* the held-out metrics computed and the weights their networks loaded;
* the device kind: ``cpu`` with the CPU's model name, or ``cuda`` with the GPU's name; deterministic kernels;
  CPU threads per training;
* the torch version;
* a fingerprint of LossBench's code: the SHA-256 of every ``.py`` file of the ``bench`` package;
* the source of every plugin providing a loss or the model the entry uses: the SHA-256 of the plugin's module
  file (of every ``.py`` file of its package, for a plugin that is a package).

Any file named by a parameter (a weights file) is in the key by its SHA-256 too. A loss or model whose code
cannot be read (defined in an interactive session) has no key: its trainings are never stored or reused.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

FORMAT = 1  # of the key's contents and of the store's folders; a change makes every stored training a miss
DATA_PATHS = ("path", "eval_path", "cache")  # where the photographs are: their content is hashed instead
BENCH_ROOT = Path(__file__).resolve().parents[1]


class Unkeyable(Exception):
    """A training whose result cannot be named by content (its code cannot be read)."""


@dataclass(frozen=True)
class TrainingKey:
    sha256: str
    contents: dict  # what was hashed, for the store's folder (key.json) and for debugging a miss

    @property
    def short(self) -> str:
        return self.sha256[:12]


def canonical_json(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), allow_nan=True)


def make_key(contents: Mapping[str, Any]) -> TrainingKey:
    contents = json.loads(canonical_json(contents))
    return TrainingKey(hashlib.sha256(canonical_json(contents).encode()).hexdigest(), contents)


def _plain(value: Any) -> Any:
    """Plain JSON data: dataclasses, mappings (keys as text), tuples and paths."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


@functools.lru_cache(maxsize=None)
def code_fingerprint(root: Path = BENCH_ROOT) -> str:
    """SHA-256 over every ``.py`` file of the package at ``root``: relative path and bytes."""
    return _tree_sha256(root)


def _tree_sha256(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def factory_source_sha256(factory: Any) -> str:
    """The code behind a registered factory: its package's ``.py`` files, or its module's file; ``Unkeyable``
    where neither can be read."""
    module_name = getattr(factory, "__module__", None) or ""
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except Exception:  # noqa: BLE001 - any failure means the code cannot be read
            raise Unkeyable(f"the code of {factory!r} cannot be found") from None
    top = sys.modules.get(module_name.split(".")[0])
    package_dirs = [Path(folder) for folder in getattr(top, "__path__", [])] if "." in module_name else []
    if package_dirs and all(folder.is_dir() for folder in package_dirs):
        return hashlib.sha256("".join(_tree_sha256(folder) for folder in package_dirs).encode()).hexdigest()
    file = getattr(module, "__file__", None)
    if file and Path(file).is_file():
        return _file_sha256(Path(file))
    try:  # a module without a file (built in a notebook cell): the factory's own source at least
        return hashlib.sha256(inspect.getsource(factory).encode()).hexdigest()
    except (OSError, TypeError):
        raise Unkeyable(f"the code of {factory!r} cannot be read") from None


def plugin_sources(spec) -> dict[str, str]:
    """``{"loss NAME" | "model NAME": sha256 of its code}`` for each loss and the model of ``spec`` that a plugin
    (or code outside LossBench) registered; the built-ins are in the code fingerprint."""
    from bench.config.registry import BUILTIN
    from bench.losses.registry import get_loss_info
    from bench.models.registry import get_model_info

    infos = [("loss", get_loss_info(term.loss)) for term in spec.entry.terms]
    infos.append(("model", get_model_info(spec.model.name)))
    return {
        f"{kind} {info.name}": factory_source_sha256(info.factory) for kind, info in infos if info.source != BUILTIN
    }


def named_files(value: Any) -> dict[str, str]:
    """``{path: sha256}`` of each string inside ``value`` that names an existing file (a weights file)."""
    found: dict[str, str] = {}
    if isinstance(value, Mapping):
        for item in value.values():
            found.update(named_files(item))
    elif isinstance(value, (list, tuple)):
        for item in value:
            found.update(named_files(item))
    elif isinstance(value, str) and ("/" in value or "\\" in value or "." in value):
        path = Path(value).expanduser()
        try:
            if path.is_file():
                found[value] = _file_sha256(path)
        except OSError:
            pass
    return found


def device_kind(device: torch.device) -> dict[str, str]:
    """``cpu`` with the CPU's model name (oneDNN picks its kernels by the instruction set), or ``cuda`` with the
    GPU's name."""
    from bench.results import device_name

    return {"type": _device_type(device), "name": device_name(device)}


def _device_type(device: torch.device) -> str:
    return device.type


def eval_set_sha256(eval_images: torch.Tensor, eval_names) -> str:
    digest = hashlib.sha256("\n".join(eval_names).encode() + b"\0")
    digest.update(eval_images.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def training_key(
    spec,
    *,
    images,
    loss,
    metrics,
    device: torch.device,
    threads: int,
    deterministic: bool,
    loss_networks: str,
) -> TrainingKey:
    """The key of training ``spec`` (a ``RunSpec``) with ``images`` (its ``ImageSet``), ``loss`` (the entry's loss
    as built on ``device``), ``metrics`` (the ``QualityMetrics`` that score it), ``threads`` CPU threads,
    ``deterministic`` kernels and ``loss_networks`` (the loss networks' precision as resolved). Raises
    ``Unkeyable`` where a loss's or the model's code cannot be read."""
    entry = spec.entry
    data = {key: value for key, value in _plain(spec.data).items() if key not in DATA_PATHS}
    metric_settings = {"compute": list(metrics.compute), "provenance": dict(metrics.provenance)}
    contents = {
        "format": FORMAT,
        "entry": {"terms": entry.terms, "overrides": entry.overrides},
        "loss": {
            "weights_used": getattr(loss, "weights_used", "none"),
            "loss_config": getattr(loss, "loss_config", ""),
        },
        "seed": spec.seed,
        "task": spec.task,
        "profile": spec.profile,
        "data": {
            **data,
            "images_sha256": images.images_sha256,
            "eval_set_sha256": eval_set_sha256(images.eval, images.eval_names),
        },
        "model": {"name": spec.model.name, "params": spec.model.params},
        "train": {**_plain(spec.train), "loss_networks_resolved": loss_networks},
        "metrics": metric_settings,
        "device": device_kind(device),
        "deterministic": bool(deterministic),
        "threads": int(threads),
        "torch": torch.__version__,
        "code": code_fingerprint(),
        "plugins": plugin_sources(spec),
        "files": named_files([_plain(entry.terms), _plain(spec.model.params), metric_settings]),
    }
    return make_key(contents)
