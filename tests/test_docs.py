"""The documentation's generated pages match the code, and README stays the short front door that links to them.

``docs/hooks.py`` generates the suite format reference from the dataclasses of ``bench.config.suite`` and the
losses reference from the registries at every ``mkdocs build``; these tests read the same pages and hold them
against the dataclasses' defaults and against ``python -m bench list``. Skipped where MkDocs is not installed
(the ``docs`` extra; ``.ci/run`` installs it and runs this file).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs")

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
README_MAX_LINES = 250


@pytest.fixture(scope="module")
def hooks():
    spec = importlib.util.spec_from_file_location("lossbench_docs_hooks", REPO / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sections(page: str, levels: str = "##") -> dict[str, str]:
    """The page's sections by heading, at the levels given: ``"##"``, or ``"##|###"`` (a section then ends where
    the next ``###`` heading starts)."""
    parts = re.split(rf"(?m)^(?:{levels}) ", page)
    return {part.splitlines()[0].strip(): part for part in parts[1:]}


def _rows(section: str) -> list[list[str]]:
    """The cells of the rows of the section's first table, header rows left out, split on unescaped pipes."""
    table = re.search(r"(?m)^\|.*\|$(?:\n^\|.*\|$)*", section).group(0)
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in table.splitlines()[2:]]


def _toml(cell: str):
    """The value of a default cell written as a TOML value in backticks."""
    assert cell.startswith("`") and cell.endswith("`"), cell
    return tomllib.loads(f"value = {cell[1:-1]}")["value"]


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _suite_dataclasses():
    from bench.config import suite

    return [
        obj
        for obj in vars(suite).values()
        if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == suite.__name__
    ]


def test_suite_page_lists_every_dataclass_field_with_its_default(hooks, tmp_path):
    sections = _sections(hooks.suite_reference(), "##|###")
    classes = _suite_dataclasses()
    assert {"Suite", "DataConfig", "TrainConfig", "TimingConfig", "MetricsConfig", "VerdictConfig"} <= {
        cls.__name__ for cls in classes
    }
    for cls in classes:
        [section] = [text for heading, text in sections.items() if f"(`{cls.__name__}`)" in heading]
        rows = _rows(section)
        fields = dataclasses.fields(cls)
        assert len(rows) == len(fields), f"{cls.__name__}: {len(rows)} rows for {len(fields)} fields"
        for item, row in zip(fields, rows):
            key, default = row[0], row[2]
            assert f"`{item.name}`" in key or f"[{item.name}]" in key, f"{cls.__name__}.{item.name}: row {key}"
            if item.default is not dataclasses.MISSING:
                if item.default is None:
                    assert default == hooks.NOT_SET, f"{cls.__name__}.{item.name}: {default}"
                else:
                    assert _toml(default) == _plain(item.default), f"{cls.__name__}.{item.name}: {default}"
            elif item.default_factory is not dataclasses.MISSING:
                made = item.default_factory()
                if dataclasses.is_dataclass(made):
                    assert "defaults" in default, f"{cls.__name__}.{item.name}: {default}"
                else:
                    assert _toml(default) == _plain(made), f"{cls.__name__}.{item.name}: {default}"

    # the Suite fields without a dataclass default show what reading a file applies
    from bench.config.suite import load_suite

    minimal = tmp_path / "minimal.toml"
    minimal.write_text('[[entry]]\nname = "mse"\nloss = "mse"\n')
    read = load_suite(minimal)
    suite_rows = {row[0]: row[2] for row in _rows(sections["Top level (`Suite`)"])}
    for name in ("task", "device", "seeds"):
        assert _toml(suite_rows[f"`{name}`"]) == _plain(getattr(read, name)), name


def test_suite_page_lists_each_built_in_models_parameters(hooks):
    _, models = _bench_list()
    from bench.models import get_model_info

    section = _sections(hooks.suite_reference(), "##|###")["Built-in models' parameters"]
    listed = {(row[0].strip("`"), row[1].strip("`")): _toml(row[2]) for row in _rows(section)}
    expected = {(name, key): _plain(value) for name in models for key, value in get_model_info(name).defaults.items()}
    assert listed == expected


@functools.lru_cache(maxsize=1)
def _bench_list() -> tuple[list[str], list[str]]:
    """The loss names and the model names that ``python -m bench list`` prints with installed plugins off: the
    built-in ones, which the pages document (plugins loaded in this test process are left out of the pages)."""
    env = {**os.environ, "LOSSBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "bench", "list"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    losses_part, models_part = out.split("\nmodels (", 1)
    names = lambda text: [line.split()[0] for line in text.splitlines() if line and not line[0].isspace()]
    return names(losses_part), names(models_part.split("\n", 1)[1])


def _headings(section: str) -> list[str]:
    return re.findall(r"(?m)^### `([^`]+)`$", section)


def test_losses_page_lists_exactly_what_bench_list_lists(hooks):
    losses, models = _bench_list()
    assert "mse" in losses and "autoencoder" in models
    sections = _sections(hooks.losses_reference())
    for kind, listed, page in (
        ("losses", losses, _headings(sections["Losses"])),
        ("models", models, _headings(sections["Models"])),
    ):
        assert page == listed, (
            f"{kind} the page lacks: {sorted(set(listed) - set(page))}; "
            f"lists but bench list does not: {sorted(set(page) - set(listed))}"
        )


def test_losses_page_gives_each_losss_parameters_with_the_registered_defaults(hooks):
    from bench.losses import get_loss_info

    section = _sections(hooks.losses_reference())["Losses"]
    for block in re.split(r"(?m)^### ", section)[1:]:
        name = block.split("`")[1]
        line = re.search(r"(?m)^- parameters: (.*)$", block).group(1)
        listed = {} if line == "none" else tomllib.loads("\n".join(re.findall(r"`([^`]+)`", line)))
        assert listed == _plain(dict(get_loss_info(name).defaults)), name


def test_every_loss_with_a_check_record_is_a_registered_loss(hooks):
    losses, _ = _bench_list()
    assert set(hooks.LOSS_CHECKS) <= set(losses), set(hooks.LOSS_CHECKS) - set(losses)


def test_metrics_table_lists_every_metric_once(hooks):
    from bench.evaluate.metrics import METRICS

    rows = _rows(_sections(hooks.losses_reference())["Held-out metrics"])
    assert [row[0].strip("*`") for row in rows] == list(METRICS)


def test_readme_is_short_and_links_only_to_docs_pages_that_exist():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < README_MAX_LINES
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", text)
    assert links, "README links to no docs page"
    for link in links:
        assert (REPO / link).is_file(), link


def test_readme_sections_the_docs_include_exist():
    text = README.read_text(encoding="utf-8")
    included = set()
    for page in (REPO / "docs").rglob("*.md"):
        included |= set(re.findall(r'(?m)^--8<-- "README\.md:([\w-]+)"$', page.read_text(encoding="utf-8")))
    assert included
    for name in included:
        assert f"--8<-- [start:{name}]" in text and f"--8<-- [end:{name}]" in text, name


def test_the_annotated_suite_in_the_usage_page_is_valid(tmp_path):
    from bench.config.suite import load_suite

    usage = (REPO / "docs" / "usage.md").read_text(encoding="utf-8")
    example = usage.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "annotated.toml"
    path.write_text(example)
    suite = load_suite(path)
    assert [entry.name for entry in suite.entries] == ["ssim", "perceptual+mse", "l1-fast"]
