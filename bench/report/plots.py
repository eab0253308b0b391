"""The report's figures, each returned as a PNG data URI so the page needs no other file.

Figures are plain matplotlib ``Figure`` objects on the Agg canvas, never registered with pyplot, so nothing is
left open and no global backend or style is changed. Every function takes ``order`` (entries top to bottom, as in
the summary table) and ``palette`` (entry -> colour, built once by ``entry_palette``) and returns None when the
run has nothing to draw.
"""

from __future__ import annotations

import base64
import glob
import io
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from PIL import Image

from bench.data.baselines import PREFIX as BASELINE_PREFIX
from bench.config.names import file_stem
from bench.report import Run, higher_is_better, label

LOG_SCALE_RATIO = 30  # above this max/min spread, linear bars hide the cheap losses
TILE_PX = 144  # one reconstruction tile on the page
GRID_CROPS = 8  # held-out crops shown per row of the reconstruction grid (the first ones: they span the photos)


def entry_palette(entries: list[str]) -> dict[str, tuple]:
    """One colour per entry, in suite order, so an entry keeps its colour in every figure and whatever the sort;
    baselines are shades of grey."""
    baselines = [e for e in entries if e.startswith(BASELINE_PREFIX)]
    greys = dict(zip(baselines, sns.color_palette("Greys_r", len(baselines) + 2)))
    entries = [e for e in entries if e not in greys]
    if len(entries) <= 10:
        colours = sns.color_palette("tab10", len(entries))
    elif len(entries) <= 20:  # tab20's dark shades first: neighbouring entries must not get a light/dark pair
        pairs = sns.color_palette("tab20", 20)
        colours = pairs[0::2] + pairs[1::2]
    else:
        colours = sns.color_palette("husl", len(entries))
    return {**dict(zip(entries, colours)), **greys}


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _render(
    draw: Callable[[Figure, np.ndarray], None],
    *,
    panels: int = 1,
    cols: int = 1,
    panel_size: tuple[float, float] = (5.0, 3.5),
) -> str:
    """A figure of ``panels`` axes (``cols`` per row) filled by ``draw(fig, axes)``, as a PNG data URI."""
    return png_uri(figure_png(draw, panels=panels, cols=cols, panel_size=panel_size))


def figure_png(
    draw: Callable[[Figure, np.ndarray], None],
    *,
    panels: int = 1,
    cols: int = 1,
    panel_size: tuple[float, float] = (5.0, 3.5),
) -> bytes:
    """The PNG bytes of ``_render``'s figure (the same style), for pages that link image files."""
    rows = -(-panels // cols)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        fig = Figure(figsize=(panel_size[0] * cols, panel_size[1] * rows), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for unused in axes[panels:]:
            unused.set_visible(False)
        draw(fig, axes[:panels])
        buffer = io.BytesIO()
        # No "Software" text chunk: matplotlib's would name its web site, and the page must hold no URL at all.
        fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def _entry_legend(fig: Figure, entries: list[str], palette: dict) -> None:
    handles = [Line2D([], [], color=palette[e], marker="o", lw=2) for e in entries]
    fig.legend(handles, entries, loc="outside right upper", title="entry", frameon=False)


def _entries_height(order: list[str]) -> float:
    return 1.2 + 0.3 * len(order)


def quality_bars(run: Run, order: list[str], palette: dict) -> str | None:
    """One horizontal bar panel per quality metric; error bars are the std across seeds when there are several."""
    ok = run.ok
    metrics = [m for m in run.metrics if ok[m].notna().any()]
    if not metrics:
        return None
    several_seeds = ok.groupby("entry")["seed"].nunique().max() > 1

    def draw(fig, axes):
        for ax, metric in zip(axes, metrics):
            sns.barplot(
                data=ok,
                x=metric,
                y="entry",
                hue="entry",
                order=order,
                hue_order=order,
                palette=palette,
                errorbar="sd" if several_seeds else None,
                legend=False,
                ax=ax,
            )
            stats = ok.groupby("entry")[metric].agg(["mean", "std"]).reindex(order)
            for row, (mean, std) in enumerate(zip(stats["mean"], stats["std"].fillna(0))):
                # The value goes past the error bar, where it cannot be overdrawn.
                text, x, colour = ("failed", 0, "#c0392b") if pd.isna(mean) else (f"{mean:.4g}", mean + std, "0.15")
                ax.annotate(
                    text, (x, row), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8, color=colour
                )
            ax.margins(x=0.25)  # room for the value labels
            direction = higher_is_better(metric)
            ax.set(xlabel=f"{label(metric)}, {'higher' if direction else 'lower'} is better", ylabel="")
        if several_seeds:
            fig.suptitle("mean over seeds; error bars: std across seeds")

    return _render(draw, panels=len(metrics), cols=3, panel_size=(4.6, _entries_height(order)))


def speed_chart(run: Run, order: list[str], palette: dict) -> str | None:
    """Forward and backward medians stacked per entry, with the measured fwd+bwd total written at the bar end."""
    speed = run.speed_variant()
    if speed.empty:
        return None
    ms = speed.pivot_table(index="entry", columns="phase", values="median_ms")
    entries = [e for e in order if e in ms.index]
    ms = ms.reindex(entries)
    phases = [p for p in ("forward", "backward") if p in ms] or ["total"]
    stacked = ms[phases].sum(axis=1)
    total = ms["total"] if "total" in ms else stacked
    first = speed.iloc[0]
    log = stacked.max() / stacked[stacked > 0].min() > LOG_SCALE_RATIO

    def draw(fig, axes):
        ax = axes[0]
        rows = np.arange(len(entries))
        colours = [palette[e] for e in entries]
        left = np.zeros(len(entries))
        for phase, style in zip(phases, ({}, {"alpha": 0.45, "hatch": "//"})):
            ax.barh(rows, ms[phase], left=left, color=colours, edgecolor="white", **style)
            left += ms[phase].to_numpy()
        for row, value in zip(rows, total):
            ax.text(left[row], row, f"  {value:.3g} ms", va="center", fontsize=8)
        ax.set_yticks(rows, entries)
        ax.invert_yaxis()
        if log:
            ax.set_xscale("log")
        ax.margins(x=0.15)
        ax.set_xlabel(
            f"median time per call (ms{', log scale' if log else ''}); batch {first.get('batch_size', '?')} "
            f"at {first.get('resolution', '?')} px, {first.get('variant', '')}"
        )
        ax.set_title(f"loss forward and backward on {first.get('device_name', first.get('device', ''))}")
        legend = [Patch(facecolor="0.45", label=phases[0])]
        if len(phases) > 1:
            legend.append(Patch(facecolor="0.45", alpha=0.45, hatch="//", label=phases[1]))
        fig.legend(handles=legend, loc="outside right upper", frameon=False)

    return _render(draw, panel_size=(11.0, _entries_height(entries)))


def pareto_front(cost: pd.Series, value: pd.Series, higher_better: bool) -> list:
    """Index labels of the points no other point beats on both cost (lower) and value, cheapest first."""
    signed = value if higher_better else -value
    front, best = [], -np.inf
    for key in sorted(cost.index, key=lambda k: (cost[k], -signed[k])):
        if signed[key] > best:
            front.append(key)
            best = signed[key]
    return front


def pareto_chart(run: Run, order: list[str], palette: dict) -> str | None:
    """Quality against the loss's fwd+bwd time (log x), with the Pareto front dashed and ringed."""
    summary = run.summary.set_index("entry")
    if "loss_fwd_bwd_ms" not in summary:
        return None
    metrics = [m for m in ("psnr", "lpips") if m in summary and summary[m].notna().any()]
    if not metrics:
        return None

    def draw(fig, axes):
        plotted = set()
        for ax, metric in zip(axes, metrics):
            data = summary[["loss_fwd_bwd_ms", metric]].dropna()
            plotted.update(data.index)
            cost, value = data["loss_fwd_bwd_ms"], data[metric]
            ax.scatter(cost, value, c=[palette[e] for e in data.index], s=50, zorder=3)
            for entry in data.index:
                ax.annotate(entry, (cost[entry], value[entry]), xytext=(5, 4), textcoords="offset points", fontsize=8)
            front = pareto_front(cost, value, bool(higher_is_better(metric)))
            ax.plot(cost[front], value[front], drawstyle="steps-post", ls="--", color="0.35", label="Pareto front")
            ax.scatter(cost[front], value[front], s=160, facecolors="none", edgecolors="0.25", zorder=4)
            ax.set_xscale("log")
            ax.margins(x=0.15, y=0.12)
            better = "higher" if higher_is_better(metric) else "lower"
            ax.set(xlabel="loss fwd+bwd (ms, log scale)", ylabel=f"{label(metric)}, {better} is better")
            ax.legend(loc="best", fontsize=8)
        _entry_legend(fig, [e for e in order if e in plotted], palette)

    return _render(draw, panels=len(metrics), cols=len(metrics), panel_size=(6.0, 4.2))


def training_curves(run: Run, order: list[str], palette: dict) -> str | None:
    """Loss / first logged loss against step, and eval PSNR against step and against training seconds.

    One line per entry and seed (same colour for every seed of an entry), so seeds are shown, not averaged.
    """
    history = run.history
    if history.empty or "loss" not in history:
        return None
    history = history.sort_values(["entry", "seed", "step"])
    first = history.groupby(["entry", "seed"])["loss"].transform("first")
    history = history.assign(relative_loss=history["loss"] / first.where(first > 0))  # a ratio needs a positive start
    evals = history.dropna(subset=["eval_psnr"]) if "eval_psnr" in history else history.iloc[:0]
    present = [e for e in order if e in set(history["entry"])]
    panels = [("step", "relative_loss", history, "loss / first logged loss (log scale)")]
    if not evals.empty:
        panels += [("step", "eval_psnr", evals, "eval PSNR (dB)"), ("seconds", "eval_psnr", evals, "eval PSNR (dB)")]

    baselines = run.ok[run.ok["entry"].str.startswith(BASELINE_PREFIX)].groupby("entry", sort=False)["psnr"].mean()

    def draw(fig, axes):
        for ax, (x, y, data, ylabel) in zip(axes, panels):
            sns.lineplot(
                data=data,
                x=x,
                y=y,
                hue="entry",
                hue_order=present,
                palette=palette,
                units="seed",
                estimator=None,
                marker="o",
                markersize=6,
                legend=False,
                ax=ax,
            )
            ax.set(xlabel="training step" if x == "step" else "training time (s, eval excluded)", ylabel=ylabel)
            if y == "eval_psnr":  # the baselines' held-out PSNR, which a trained entry should clear
                _baseline_lines(ax, baselines, palette, x=0.01, lw=1.2)
        axes[0].set_yscale("log")
        _entry_legend(fig, present, palette)

    return _render(draw, panels=len(panels), cols=len(panels), panel_size=(4.4, 3.6))


def _baseline_lines(ax, baselines: pd.Series, palette: dict, *, x: float, lw: float) -> None:
    """Each baseline's held-out PSNR as a dashed line named at ``x`` (a fraction of the axes' width)."""
    for name, value in baselines.items():
        ax.axhline(value, ls="--", lw=lw, color=palette.get(name, "0.4"))
        ax.annotate(
            name[len(BASELINE_PREFIX) :],
            (x, value),
            xycoords=("axes fraction", "data"),
            xytext=(0, 2),
            textcoords="offset points",
            fontsize=7,
            color="0.3",
        )


def psnr_curves(run: Run, order: list[str], palette: dict) -> str | None:
    """One small panel per entry: its held-out PSNR against training step (one line per seed), with the
    baselines dashed, so a user sees whether each entry had converged or was still improving."""
    history = run.history
    if history.empty or "eval_psnr" not in history or history["eval_psnr"].isna().all():
        return None
    evals = history.dropna(subset=["eval_psnr"]).sort_values(["entry", "seed", "step"])
    present = [e for e in order if e in set(evals["entry"])]
    baselines = run.ok[run.ok["entry"].str.startswith(BASELINE_PREFIX)].groupby("entry", sort=False)["psnr"].mean()
    gains = run.summary.set_index("entry").get("psnr_gain_last20", pd.Series(dtype=float))
    values = pd.concat([evals["eval_psnr"], baselines])
    low, high = values.min(), values.max()
    pad = 0.05 * (high - low or 1.0)

    def draw(fig, axes):
        for ax, entry in zip(axes, present):
            for _, runs in evals[evals["entry"] == entry].groupby("seed"):
                ax.plot(runs["step"], runs["eval_psnr"], color=palette[entry], marker="o", markersize=3, lw=1.5)
            _baseline_lines(ax, baselines, palette, x=0.02, lw=1)
            gain = gains.get(entry, np.nan)
            ax.set_title(entry + ("" if pd.isna(gain) else f"  ({gain:+.2f} dB in last 20%)"), fontsize=9)
            ax.set_ylim(low - pad, high + pad)
            ax.set(xlabel="step", ylabel="held-out PSNR (dB)")

    cols = min(5, len(present))
    return _render(draw, panels=len(present), cols=cols, panel_size=(3.2, 2.4))


def ranking_curves(run: Run, order: list[str], palette: dict) -> str | None:
    """One panel per metric evaluated during training: each entry's held-out score (mean over seeds) against the
    step, with the steps at 50% and 75% of training marked, where rank stability compares with the end."""
    metrics = [c for c in run.history if c.startswith("eval_")] if not run.history.empty else []
    evals = {c: run.history.dropna(subset=[c]) for c in metrics}
    evals = {c: frame for c, frame in evals.items() if not frame.empty}
    if not evals:
        return None

    def draw(fig, axes):
        for ax, (column, frame) in zip(axes, evals.items()):
            means = frame.groupby(["entry", "step"])[column].mean()
            for entry in [e for e in order if e in means.index.get_level_values(0)]:
                ax.plot(means[entry].index, means[entry].values, color=palette[entry], lw=1.5)
            last = frame["step"].max()
            for fraction in (0.5, 0.75):
                ax.axvline(fraction * last, color="0.4", ls=":", lw=1)
            ax.set(xlabel="step", ylabel=f"held-out {label(column.removeprefix('eval_'))}")
        _entry_legend(fig, [e for e in order if e in set(run.history["entry"])], palette)

    return _render(draw, panels=len(evals), cols=len(evals), panel_size=(5.0, 3.6))


def reconstruction_strips(run: Run, order: list[str]) -> tuple[list[tuple[str, int | None, str | None]], float]:
    """(name, seed, strip) rows, "original" first, and the zoom factor of the centre crops (0: none).

    A strip is the first GRID_CROPS held-out crops at TILE_PX (enlarged with nearest neighbour where they are
    smaller) and, for crops larger than a tile, then their centre crops (a quarter of the width) enlarged with
    nearest neighbour, so blur and texture differences between losses stay visible. The lowest seed with a PNG
    stands for each entry; ``strip`` is None where an entry has none (it failed).
    """
    files, crop = reconstruction_files(run, order)
    rows = [(name, seed, _strip(path, crop) if path else None) for name, seed, path in files]
    return rows, (TILE_PX / crop if crop else 0.0)


def reconstruction_files(run: Run, order: list[str]) -> tuple[list[tuple[str, int | None, Path | None]], int]:
    """``reconstruction_strips``' rows as (name, seed, PNG path or None), and the side of the centre crops."""
    folder = run.folder / "reconstructions"
    originals = sorted(folder.glob("original__*px.png"))
    if not originals:
        return [], 0
    wanted = folder / f"original__{run.env.get('train_resolution')}px.png"
    original = wanted if wanted in originals else originals[0]
    with Image.open(original) as image:
        side = image.height
    crop = max(side // 4, 1) if side > TILE_PX else 0
    rows: list[tuple[str, int | None, Path | None]] = [("original", None, original)]
    for entry in order:
        stem = file_stem(entry)
        seeds = sorted(
            (int(m.group(1)), path)
            for path in folder.glob(f"{glob.escape(stem)}__seed*.png")
            if (m := re.fullmatch(rf"{re.escape(stem)}__seed(\d+)\.png", path.name))
        )
        rows.append((entry, seeds[0][0], seeds[0][1]) if seeds else (entry, None, None))
    return rows, crop


def _strip(path: Path, crop: int) -> str:
    return png_uri(strip_png(path, crop))


def strip_png(path: Path, crop: int) -> bytes:
    """The PNG bytes of one reconstruction strip (``reconstruction_strips``)."""
    with Image.open(path) as image:
        image = image.convert("RGB")
    side = image.height
    tiles = [image.crop((i * side, 0, (i + 1) * side, side)) for i in range(min(image.width // side, GRID_CROPS))]
    shrink = Image.Resampling.LANCZOS if side > TILE_PX else Image.Resampling.NEAREST
    low = (side - crop) // 2
    cells = [t.resize((TILE_PX, TILE_PX), shrink) for t in tiles]
    if crop:
        cells += [
            t.crop((low, low, low + crop, low + crop)).resize((TILE_PX, TILE_PX), Image.Resampling.NEAREST)
            for t in tiles
        ]
    gap, divider = 4, 20  # the wider gap separates whole images from crops
    width = len(cells) * TILE_PX + (len(cells) - 1) * gap + (divider - gap if crop else 0)
    canvas = Image.new("RGB", (width, TILE_PX), "white")
    x = 0
    for index, cell in enumerate(cells):
        canvas.paste(cell, (x, 0))
        x += TILE_PX + (divider if index == len(tiles) - 1 else gap)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
