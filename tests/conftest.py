"""Fixtures shared across test modules: the tiny and small suites tests run, and the plugin tests' clean
registries and hand-made installed distribution."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import pytest

# A 16 px autoencoder trained for a few steps on a few bundled photographs and timed at 16 px: a whole run takes
# seconds on a CPU.
TINY_SUITE: dict[str, Any] = {
    "name": "tiny",
    "seeds": [0],
    "data": {"resolution": 16, "scale": 0.125, "images": 4, "eval_images": 1, "eval_crops": 4},
    "model": {"latent_dim": 64, "width": 16},
    "train": {"steps": 4, "batch_size": 2, "log_every": 2, "eval_every": 2},
    "timing": {"resolution": 16, "batch_size": 1, "min_repeats": 2, "min_time_s": 0.0, "warmup": 0},
}
# 32 px crops of the bundled photographs at a quarter of their size, the task's default model, held-out SSIM
# only: enough training for a baseline or a verdict to mean something, still short.
SMALL_SUITE: dict[str, Any] = {
    "name": "small",
    "seeds": [0],
    "data": {"resolution": 32, "scale": 0.25, "eval_crops": 6},
    "train": {"steps": 20, "batch_size": 4, "eval_every": 0},
    "metrics": {"compute": ["ssim"]},
}


@pytest.fixture(scope="session")
def tiny_suite():
    """``tiny_suite(entries=("mse",), *, head="", **changes) -> str``: the TOML of ``TINY_SUITE``, changed.

    ``entries``: loss names (an entry named after its loss) and entry tables (dicts), or TOML text of
    ``[[entry]]`` tables. ``head``: TOML lines for the top level, verbatim. ``changes``: a top-level key's value,
    or a section (``data``, ``train``, ``metrics``, ...) as a dict merged into the suite's, as TOML text that
    replaces its body, or None to leave it out; within a dict, None leaves that key out.
    """
    return functools.partial(suite_text, TINY_SUITE)


@pytest.fixture(scope="session")
def small_suite():
    """``small_suite(entries=("mse",), *, head="", **changes) -> str``: the TOML of ``SMALL_SUITE``, changed as
    ``tiny_suite`` changes its own."""
    return functools.partial(suite_text, SMALL_SUITE)


def suite_text(
    base: Mapping[str, Any],
    entries: Sequence[str | Mapping[str, Any]] | str = ("mse",),
    *,
    head: str = "",
    **changes: Any,
) -> str:
    top = {key: value for key, value in base.items() if not isinstance(value, dict)}
    sections: dict[str, Any] = {key: value for key, value in base.items() if isinstance(value, dict)}
    for key, value in changes.items():
        if isinstance(value, Mapping):
            sections[key] = {**(sections.get(key) or {}), **value}
        elif key in sections:
            sections[key] = value
        else:
            top[key] = value
    lines = [f"{key} = {_toml(value)}" for key, value in top.items() if value is not None]
    lines += [head] if head else []
    for name, body in sections.items():
        if body is not None:
            lines.append(f"[{name}]")
            lines += [body.rstrip("\n")] if isinstance(body, str) else _keys(body)
    if isinstance(entries, str):
        lines.append(entries.rstrip("\n"))
    else:
        for entry in entries:
            lines += ["[[entry]]", *_keys({"name": entry, "loss": entry} if isinstance(entry, str) else entry)]
    return "\n".join(lines) + "\n"


def _keys(table: Mapping[str, Any]) -> list[str]:
    return [f"{key} = {_toml(value)}" for key, value in table.items() if value is not None]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + " }"
    return "[" + ", ".join(_toml(item) for item in value) + "]"


@pytest.fixture
def clean_plugins(monkeypatch):
    """The test starts from the built-in losses and models and no plugins, and leaves them so."""
    from bench.config import plugins
    from bench.losses import registry as losses
    from bench.models import registry as models

    losses.loss_names(), models.model_names()  # built-ins registered
    monkeypatch.setattr(losses, "_LOSSES", losses._LOSSES.copy())
    monkeypatch.setattr(models, "_MODELS", models._MODELS.copy())
    monkeypatch.setattr(plugins, "_LOADED", {})
    modules = set(sys.modules)
    yield
    for name in set(sys.modules) - modules:
        if name.startswith(("lossbench_plugin_", "lbtest_")):
            del sys.modules[name]


@pytest.fixture
def installed_distribution(monkeypatch):
    """``install(root, source, module, group)``: a distribution 'lbtest-losses' on sys.path, made by hand: its
    module (``source``) and a dist-info folder whose entry_points.txt declares the module under ``group`` (what
    pip writes from a pyproject)."""

    def install(root: Path, source: str, module: str = "", group: str = "lossbench.losses") -> str:
        module = module or f"lbtest_{root.name.replace('-', '_')}"
        root.mkdir(parents=True, exist_ok=True)
        (root / f"{module}.py").write_text(source)
        info = root / "lbtest_losses-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lbtest-losses\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[{group}]\nmine = {module}\n")
        monkeypatch.syspath_prepend(str(root))
        return module

    return install


def logged_run(command: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """Runs ``command`` from the repository with stdout and stderr both the file ``log``, as ``python -m bench run
    ... > run.log 2>&1``; its exit code and all it wrote. ``env``: the environment (default: this one, plugins
    not loaded automatically)."""
    env = {**os.environ, "LOSSBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"} if env is None else env
    with log.open("wb") as file:
        done = subprocess.run(
            list(command),
            stdout=file,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            timeout=600,
        )
    return done.returncode, log.read_bytes().decode()


def tiny_training(tmp_path: Path, loss: str, train: str):
    """(spec, model, loss, images) of one 16 px training of ``loss`` on random images, ``train``: the [train]
    table's lines (steps, checkpoint_every, schedule, ...), for tests that call ``bench.train.loop.train``."""
    import tomllib

    import torch

    from bench.config.plan import make_plan
    from bench.config.suite import parse_suite
    from bench.data.images import ImageSet
    from bench.losses import LossContext, WeightedSum, build_loss
    from bench.models import ModelContext, build_model

    text = (
        "[data]\nresolution = 16\n[model]\nwidth = 16\nlatent_dim = 64\n[train]\nbatch_size = 2\neval_every = 0\n"
        f'{train}\n[[entry]]\nname = "{loss}"\nloss = "{loss}"\n'
    )
    (spec,) = make_plan(parse_suite(tomllib.loads(text), path=tmp_path / "s.toml"), "none")
    generator = torch.Generator().manual_seed(0)
    images = ImageSet(
        train=tuple(torch.rand(3, 24, 24, generator=generator) for _ in range(2)),
        eval=torch.rand(1, 3, 16, 16, generator=generator),
        train_names=("a", "b"),
        eval_names=("c@0,0",),
        eval_photos=("c",),
        images_sha256="",
    )
    loss_fn = WeightedSum([loss], [1.0], [build_loss(loss, {}, LossContext(16))])
    model = build_model("autoencoder", {"latent_dim": 64, "width": 16}, ModelContext(16, 3, "autoencode"), 0)
    return spec, model, loss_fn, images


def interrupted_and_resumed(monkeypatch, checkpoint: Path, spec, model, loss, images):
    """(uninterrupted, resumed): ``spec`` trained whole, and trained again stopped right after its first
    checkpoint (saved to ``checkpoint``) and resumed from it."""
    import torch

    import bench.train.loop as loop

    cpu = torch.device("cpu")
    whole = loop.train(spec, model, loss, images, cpu, show_progress=False)

    class Stop(Exception):
        pass

    real_save = loop.save_checkpoint

    def save_then_stop(*args, **kwargs):
        real_save(*args, **kwargs)
        raise Stop

    monkeypatch.setattr(loop, "save_checkpoint", save_then_stop)
    with pytest.raises(Stop):
        loop.train(spec, model, loss, images, cpu, show_progress=False, checkpoint=checkpoint)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    return whole, loop.train(spec, model, loss, images, cpu, show_progress=False, checkpoint=checkpoint)


def _own_store(tmp_path_factory):
    """A store of finished trainings of its own (never the user's cache), empty at first."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOSSBENCH_STORE", str(tmp_path_factory.mktemp("store")))
        yield


# Every test has a store of its own, so that no test reuses another's trainings; so do the runs of module- and
# session-scoped fixtures (set up before a test's own store), each scope's apart from the others'.
_session_store = pytest.fixture(scope="session", autouse=True)(_own_store)
_module_store = pytest.fixture(scope="module", autouse=True)(_own_store)
_test_store = pytest.fixture(autouse=True)(_own_store)
