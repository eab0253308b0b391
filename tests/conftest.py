"""Fixtures shared by the plugin tests (losses and models)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


@pytest.fixture
def clean_plugins(monkeypatch):
    """The test starts from the built-in losses and models and no plugins, and leaves them so."""
    from bench.config import plugins
    from bench.losses import registry as losses
    from bench.models import registry as models

    losses.loss_names(), models.model_names()  # built-ins registered
    monkeypatch.setattr(losses, "_LOSSES", dict(losses._LOSSES))
    monkeypatch.setattr(models, "_MODELS", dict(models._MODELS))
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
