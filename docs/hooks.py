"""MkDocs hooks: the reference pages generated from the code, so that they cannot drift from it.

- ``reference/suite.md``: every key of a suite file, from the frozen dataclasses of ``bench.config.suite`` (field
  names, types, defaults) and the comments written beside each field there;
- ``reference/losses.md``: every loss and model that ``python -m bench list`` lists (built-in ones: installed
  plugins are left out), with its parameters and defaults, its measure record (``bench.losses.measures``), and
  its paper and tests from ``LOSS_CHECKS`` below; then the held-out metrics (``bench.evaluate.metrics.METRICS``).

The hooks also point pymdownx.snippets at the repository root (docs pages include sections of README.md) and
serve the screenshots under ``results/published/`` that the published-run pages show, and the leaderboard site
that ``python -m bench publish results/published`` builds, under ``leaderboard/``. ``tests/test_docs.py``
imports this file and pins the two pages against the dataclasses and ``python -m bench list``.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import math
import re
import sys
import tempfile
import tokenize
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "results" / "published"
PUBLISHED_SUFFIXES = (".jpg", ".jpeg", ".png", ".svg")
SUITE_PAGE = "reference/suite.md"
LOSSES_PAGE = "reference/losses.md"
LEADERBOARD = "leaderboard"  # where the site holds `bench publish results/published` (docs/runs/ pages link it)
_leaderboard_tmp: tempfile.TemporaryDirectory | None = None
NOT_SET = "not set"

# What the code does not record: each loss's paper, what computes it, and what the tests compare it with
# (tests/test_losses.py, tests/test_iqa_losses.py). A name here that is no registered loss fails tests/test_docs.py.
INVARIANTS = "invariants and monotonicity ([how](../losses.md#how-the-iqa-losses-are-checked))"
LOSS_CHECKS: dict[str, tuple[str, str, str]] = {  # name: (reference, implementation, checked against)
    "mse": ("-", "torch", "numpy"),
    "l1": ("-", "torch", "numpy"),
    "huber": ("-", "torch", "numpy"),
    "bce": ("-", "torch, float32", "numpy"),
    "charbonnier": ("Lai et al., LapSRN, CVPR 2017", "LossBench", "numpy"),
    "robust": (
        'Barron, "A General and Adaptive Robust Loss Function", CVPR 2019 (eq. 1)',
        "LossBench",
        "the closed forms of its named members: alpha 2 (L2), 1 (Charbonnier), 0 (Cauchy), -2 "
        "(Geman-McClure), -inf (Welsch), exactly; continuity at 0 and 2",
    ),
    "robust_adaptive": (
        "Barron 2019, sec. 3 (negative log-likelihood, learned alpha and scale)",
        "LossBench; log Z(alpha) integrated numerically on a grid of alphas",
        "Z(0) = pi sqrt(2), Z(1) = 2e K1(1), Z(2) = sqrt(2 pi) to 1e-6; alpha and scale change in training",
    ),
    "ssim": ("Wang et al. 2004", "pytorch-msssim", "pytorch-msssim, skimage"),
    "ms_ssim": ("Wang et al. 2003", "pytorch-msssim", "pytorch-msssim, skimage"),
    "ms_ssim_l1": ("Zhao et al., IEEE TCI 2017", "LossBench + pytorch-msssim", "the paper's formula"),
    "gradient": ("Mathieu et al., ICLR 2016", "LossBench", "-"),
    "focal_frequency": ("Jiang et al., ICCV 2021", "LossBench", "the authors' `focal-frequency-loss` package"),
    "nlpd": (
        'Laparra et al., "Perceptual image quality assessment using a normalized Laplacian pyramid", 2016',
        "LossBench, the authors' filters and constants as in Ding et al.'s IQA-pytorch",
        "IQA-pytorch's `NLPD`, relative 1e-4",
    ),
    "perceptual": ("Johnson et al. 2016", "LossBench + torchvision VGG", "-"),
    "style": ("Johnson et al. 2016; Gatys et al. 2016", "LossBench + torchvision VGG", "-"),
    "lpips": ("Zhang et al., CVPR 2018", "`lpips` package", "the package"),
    "fsim": ("Zhang et al., IEEE TIP 2011 (FSIMc on colour)", "piq", INVARIANTS),
    "gmsd": (
        "Xue et al., IEEE TIP 2014",
        "piq",
        "IQA-pytorch's `GMSD` (grayscale), relative 2e-3 (it takes the n-1 standard deviation)",
    ),
    "ms_gmsd": ("Zhang et al., 2017", "piq", INVARIANTS),
    "haarpsi": ("Reisenhofer et al., Signal Processing: Image Communication 2018", "piq", INVARIANTS),
    "mdsi": ("Nafchi et al., IEEE Access 2016", "piq", INVARIANTS),
    "vif": ("Sheikh & Bovik, IEEE TIP 2006 (pixel domain)", "piq", "IQA-pytorch's `VIFs` (grayscale), relative 1e-3"),
    "vsi": ("Zhang et al., IEEE TIP 2014", "piq", INVARIANTS),
    "dists": (
        "Ding et al., IEEE TPAMI 2020",
        "piq, VGG16 and channel weights under the weights policy",
        f"{INVARIANTS} (random VGG16 in tests)",
    ),
}


def _import_bench():
    """The checkout's own ``bench`` (not another installed copy)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import bench

    return bench


# ----------------------------------------------------------------------------------------------- formatting


def toml_value(value: Any) -> str:
    """``value`` written as a TOML value (what a suite file would say); ``NOT_SET`` for None."""
    if value is None:
        return NOT_SET
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _type_name(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
    return text.replace(" | ", " or ")


def field_comments(cls: type) -> dict[str, str]:
    """The comments written beside (or on the lines just above) each field of dataclass ``cls``."""
    source_path = Path(sys.modules[cls.__module__].__file__)
    source = source_path.read_text(encoding="utf-8")
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    lines = source.splitlines()
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    above, line = [], statement.lineno - 1
                    while line >= 1 and lines[line - 1].strip().startswith("#"):
                        above.insert(0, comments[line])
                        line -= 1
                    beside = [comments[n] for n in range(statement.lineno, statement.end_lineno + 1) if n in comments]
                    found[statement.target.id] = " ".join(above + beside)
    return found


def _docstring(cls: type) -> str:
    doc = cls.__doc__ or ""
    return "" if doc.startswith(f"{cls.__name__}(") else " ".join(doc.split())  # dataclasses' made-up signature


def default_of(item: dataclasses.Field) -> Any:
    """A field's default as the dataclass has it (a factory's product), or ``dataclasses.MISSING``."""
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return dataclasses.MISSING


# ----------------------------------------------------------------------------------------------- suite page


def _field_table(cls: type, *, key_of=None, default_note=None, header: str = "key") -> list[str]:
    """One row per field of ``cls``: key, type, default (as TOML), and the code's comment."""
    comments = field_comments(cls)
    rows = [f"| {header} | type | default | what it is |", "|---|---|---|---|"]
    for item in dataclasses.fields(cls):
        key = key_of(item.name) if key_of else f"`{item.name}`"
        default = default_of(item)
        shown, extra = (default_note(item) if default_note else None) or (None, "")
        if shown is None:
            if default is dataclasses.MISSING:
                shown = "required"
            elif dataclasses.is_dataclass(default):
                shown = "its table's defaults"
            else:
                shown = f"`{toml_value(default)}`" if default is not None else NOT_SET
        comment = comments.get(item.name, "")
        text = " ".join(part for part in (extra, comment[:1].upper() + comment[1:]) if part) or "-"
        rows.append(f"| {key} | `{_type_name(item.type)}` | {shown} | {_cell(text)} |")
    return rows


def suite_reference() -> str:
    """The suite format reference page (Markdown)."""
    _import_bench()
    from bench.config import suite as suite_module
    from bench.config.registry import BUILTIN
    from bench.config.suite import Entry, ModelConfig, Suite, Term, parse_suite
    from bench.models import get_model_info, model_names

    sections = suite_module.SECTIONS
    minimal = parse_suite({"entry": [{"name": "mse", "loss": "mse"}]}, path=Path("my_suite.toml"))
    applied = {  # defaults that parse_suite applies to the fields a Suite has no default for
        "name": ("the file's name without `.toml`", ""),
        "task": (f"`{toml_value(minimal.task)}`", f"One of {', '.join(f'`{t}`' for t in suite_module.TASKS)}."),
        "device": (f"`{toml_value(minimal.device)}`", ""),
        "seeds": (f"`{toml_value(list(minimal.seeds))}`", "Every entry runs once per seed."),
    }
    not_keys = {
        "path": "Not a key: the file read.",
        "sha256": "Not a key: SHA-256 of the file's bytes.",
        "text": "Not a key.",
    }

    def suite_key(name: str) -> str:  # the key a suite file writes; the field's name where that differs
        if name in sections or name == "model":
            return f"`[{name}]`"
        return {"entries": "`[[entry]]` (`entries`)", "profiles": "`[profile.cpu]`, `[profile.cuda]` (`profiles`)"}.get(
            name, f"`{name}`" if name not in not_keys else f"(`{name}`)"
        )

    def suite_note(item: dataclasses.Field):  # (default shown or None for the dataclass's, text before the comment)
        name = item.name
        if name in applied:
            shown, extra = applied[name]
            return shown, " ".join(part for part in ("Applied when the file is read.", extra) if part)
        if name in not_keys:
            return ("-" if default_of(item) is dataclasses.MISSING else None), not_keys[name]
        if name in sections or name == "model":
            return "its table's defaults", "The table below."
        if name == "entries":
            return "required", "At least one; see below."
        if name == "profiles":
            return "none", "Tables of the keys below, applied only on that device type; see below."
        return None

    out = [
        "# Suite format reference",
        "",
        "<!-- Generated by docs/hooks.py from bench/config/suite.py at every build: edit the code, not this page. -->",
        "",
        "Generated at build time from the frozen dataclasses of `bench.config.suite` that a suite file is parsed",
        "into: each key below is a field of one of them, with the field's type, its default as the dataclass has",
        "it, and the comment written beside the field in the code. Every key is optional except the entries;",
        'unknown keys are errors (with a "did you mean"). The [usage page](../usage.md#the-suite-format) shows an',
        "annotated suite.",
        "",
        "## Top level (`Suite`)",
        "",
        *_field_table(Suite, key_of=suite_key, default_note=suite_note),
        "",
    ]
    for name, cls in sections.items():
        doc = _docstring(cls)
        out += [f"## `[{name}]` (`{cls.__name__}`)", ""]
        if doc:
            out += [doc, ""]
        out += [*_field_table(cls), ""]
    out += [
        "## `[model]` (`ModelConfig`)",
        "",
        _docstring(ModelConfig),
        "",
        *_field_table(ModelConfig, header="field"),
        "",
        "### Built-in models' parameters",
        "",
        "In a suite, `[model]` holds `name` (a registered model; default: "
        f'`{toml_value(suite_module.DEFAULT_MODELS["autoencode"])}` for `task = "autoencode"`, '
        f"`{toml_value(suite_module.DEFAULT_MODELS['denoise'])}` for the restoration tasks) and that model's "
        "parameters, checked against the defaults it was registered with:",
        "",
        "| model | parameter | default |",
        "|---|---|---|",
    ]
    for model in model_names():
        if get_model_info(model).source != BUILTIN:
            continue
        for key, value in get_model_info(model).defaults.items():
            out.append(f"| `{model}` | `{key}` | `{toml_value(value)}` |")
    out += [
        "",
        "## `[[entry]]` (`Entry`)",
        "",
        "An entry is a table with `name` and either `loss` (one loss; the loss's parameters are keys beside it) or",
        "`terms` (an array of tables, each with `loss`, an optional `weight` and that loss's parameters). An entry",
        f"may also hold {', '.join(f'`{s}`' for s in suite_module.ENTRY_OVERRIDABLE)} tables that override the",
        "suite's settings for that entry alone. Parsed, an entry is:",
        "",
        *_field_table(Entry, header="field"),
        "",
        "### Terms (`Term`)",
        "",
        "Each term of an entry:",
        "",
        *_field_table(Term, header="field"),
        "",
        "A term's `weight` is 1 when not given. Loss parameters and their defaults are on the",
        "[losses reference](losses.md).",
        "",
        "## `[profile.cpu]` and `[profile.cuda]`",
        "",
        "A profile holds keys of the tables above, written `section.key = value` (e.g. `data.resolution = 64`),",
        "and may set `seeds`; it is applied only when the run's device is of that type. Command-line overrides",
        "win over profiles, which win over the shared settings.",
        "",
    ]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------- losses page


def _measure_lines(record) -> list[str]:
    direction = "higher is better" if record.higher_is_better else "lower is better"
    design = (
        f"{record.design.side} px ({record.design.source})" if record.design.side else f"none ({record.design.source})"
    )
    return [
        f"- measure: **{record.table_label}**, {direction}; optimises the held-out metrics "
        f"{', '.join(f'`{name}`' for name in record.optimises)}",
        f"- design size: {design}",
        f"- computed with: {record.reference}",
    ]


def losses_reference() -> str:
    """The losses, models and metrics reference page (Markdown)."""
    _import_bench()
    from bench.config.registry import BUILTIN
    from bench.evaluate.metrics import DEFAULT_METRICS, METRICS
    from bench.losses import get_loss_info, loss_names
    from bench.losses.registry import IMAGE_RANGE
    from bench.models import get_model_info, model_names

    out = [
        "# Losses, models and metrics reference",
        "",
        "<!-- Generated by docs/hooks.py from the loss and model registries at every build: edit the code. -->",
        "",
        "Generated at build time from the registries: exactly the losses and models that `python -m bench list`",
        "lists (built-in ones; plugins add theirs), each with its parameters and their defaults, and, for a loss",
        "that is an image-quality measure, its record in `bench.losses.measures`. Paper, implementation and what",
        "the tests compare each loss with come from `LOSS_CHECKS` in `docs/hooks.py`. How to read these, and the",
        "rules the IQA losses follow: [Losses and metrics](../losses.md).",
        "",
        "## Losses",
        "",
    ]
    for name in loss_names():  # built-in ones only, whatever plugins this process has loaded
        info = get_loss_info(name)
        if info.source != BUILTIN:
            continue
        params = ", ".join(f"`{key} = {toml_value(value)}`" for key, value in info.defaults.items())
        out += [f"### `{name}`", "", info.summary, ""]
        out.append(f"- parameters: {params or 'none'}")
        if tuple(info.input_range) != IMAGE_RANGE:
            out.append(f"- inputs mapped linearly from [0, 1] to [{info.input_range[0]:g}, {info.input_range[1]:g}]")
        if info.pretrained:
            out.append("- loads pretrained networks (`weights`: see [Pretrained weights](../pretrained-weights.md))")
        if info.measure is not None:
            out += _measure_lines(info.measure)
        if name in LOSS_CHECKS:
            reference, implementation, checked = LOSS_CHECKS[name]
            out += [f"- reference: {reference}", f"- implementation: {implementation}", f"- checked against: {checked}"]
        out += [f"- source: {info.source}", ""]
    out += ["## Models", "", 'A suite\'s `[model]` table names one (`name = "..."`) and sets its parameters.', ""]
    for name in model_names():
        info = get_model_info(name)
        if info.source != BUILTIN:
            continue
        params = ", ".join(f"`{key} = {toml_value(value)}`" for key, value in info.defaults.items())
        out += [
            f"### `{name}`",
            "",
            info.summary,
            "",
            f"- parameters: {params or 'none'}",
            f"- source: {info.source}",
            "",
        ]
    out += [
        "## Held-out metrics",
        "",
        "`[metrics] compute` chooses them (PSNR is always computed); **bold**: in the default set.",
        "",
        "| metric | label | better | design size | computed with |",
        "|---|---|---|---|---|",
    ]
    for name, record in METRICS.items():
        shown = f"**`{name}`**" if name in DEFAULT_METRICS else f"`{name}`"
        better = "higher" if record.higher_is_better else "lower"
        design = f"{record.design.side} px" if record.design.side else "none"
        out.append(
            f"| {shown} | {_cell(record.table_label)} | {better} | {design} ({_cell(record.design.source)}) "
            f"| {_cell(record.reference)} |"
        )
    out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------- MkDocs events


def on_config(config, **kwargs):
    snippets = config["mdx_configs"].setdefault("pymdownx.snippets", {})
    snippets["base_path"] = [str(ROOT)]
    return config


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    files.append(File.generated(config, SUITE_PAGE, content=suite_reference()))
    files.append(File.generated(config, LOSSES_PAGE, content=losses_reference()))
    for path in sorted(PUBLISHED.rglob("*")):  # served as published/..., linked as on GitHub (on_page_markdown)
        if path.suffix.lower() in PUBLISHED_SUFFIXES and "reconstructions" not in path.parts:
            uri = "published/" + path.relative_to(PUBLISHED).as_posix()
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    for name, path in leaderboard_site():  # the leaderboard of results/published, served as leaderboard/...
        files.append(File.generated(config, f"{LEADERBOARD}/{name}", abs_src_path=str(path)))
    return files


def leaderboard_site() -> list[tuple[str, Path]]:
    """``python -m bench publish results/published`` into a temporary folder (removed after the build): each
    file's path in the site and where it lies."""
    global _leaderboard_tmp
    _import_bench()
    from bench.report.publish import publish

    _leaderboard_tmp = tempfile.TemporaryDirectory(prefix="lossbench-leaderboard-")
    site = publish([PUBLISHED], Path(_leaderboard_tmp.name) / "site")
    return [(name, site.folder / name) for name in site.files]


def on_post_build(config, **kwargs):
    if _leaderboard_tmp is not None:
        _leaderboard_tmp.cleanup()


_PUBLISHED_LINK = re.compile(r"\]\(((?:\.\./)+)results/published/")


def on_page_markdown(markdown, page, **kwargs):
    """A link written as GitHub resolves it (``../results/published/x.jpg`` from ``docs/x.md``) points at the
    copy the site serves (``published/x.jpg``): one ``../`` less, the one that leaves ``docs/``."""
    return _PUBLISHED_LINK.sub(lambda match: "](" + match.group(1)[3:] + "published/", markdown)
