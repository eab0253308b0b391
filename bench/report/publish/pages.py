"""The site's pages, each a plain HTML table page: leaderboards, losses, speed, runs and the index.

Every function returns text or bytes for ``build`` to place; nothing here writes a file or reads the clock, so
the same runs give the same site byte for byte. Cells that sort carry their raw number in ``data-sort``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from urllib.parse import unquote

import numpy as np
import pandas as pd
import seaborn as sns

from bench.config.names import file_stem
from bench.data.baselines import LEARNED_MARGIN_DB
from bench.evaluate.tables import QUALITY_COLUMNS
from bench.report import higher_is_better, label
from bench.report import plots
from bench.report.html import _duration, _esc, _flag, _names, _number, _rank_text, _verdict
from bench.report.publish.assets import CSS, JS
from bench.report.publish.runs import PublishedRun, Setting

NAV = (("index.html", "Leaderboards"), ("losses/index.html", "Losses"), ("speed.html", "Speed"), ("runs.html", "Runs"))
PLOTTED = ("psnr", "ssim", "lpips")  # the leaderboard figure's panels, where the runs have them
LOSS_PAGE_METRICS = ("psnr", "ssim", "ms_ssim", "lpips")


def build(runs: list[PublishedRun]) -> dict[str, str | bytes]:
    """Every file of the site: its path under the site folder -> its content."""
    files: dict[str, str | bytes] = {"assets/site.css": CSS, "assets/site.js": JS}
    boards: dict[Setting, list[PublishedRun]] = defaultdict(list)
    for run in runs:
        boards[run.setting].append(run)
    boards = {setting: sorted(boards[setting], key=lambda r: (r.label, r.id)) for setting in sorted(boards)}
    reports = {run.id: _copy_report(run, files) for run in runs}
    for setting, members in boards.items():
        files[f"leaderboards/{setting.slug}.html"] = _leaderboard(setting, members, files)
    entries = _entries(runs)
    for entry, stem in entries.items():
        files[f"losses/{stem}.html"] = _loss_page(entry, runs, files)
    files["losses/index.html"] = _losses_index(entries, runs)
    files["speed.html"] = _speed_page(runs, entries, files)
    files["runs.html"] = _runs_page(runs, reports)
    files["index.html"] = _index(boards)
    return dict(sorted(files.items()))


# ----------------------------------------------------------------------------------------------- page parts


def _page(title: str, body: str, depth: int) -> str:
    up = "../" * depth
    nav = " ".join(f'<a href="{up}{href}">{_esc(text)}</a>' for href, text in NAV)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{_esc(title)}</title>\n'
        f'<link rel="icon" href="data:,">\n<link rel="stylesheet" href="{up}assets/site.css">\n'
        f'<script defer src="{up}assets/site.js"></script>\n</head>\n<body>\n<nav class="site">{nav}</nav>\n'
        f"<h1>{_esc(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def _table(headers: list[tuple[str, str]], rows: list[tuple[str, list[str]]]) -> str:
    """A sortable table in a box that scrolls sideways with its first column kept in view. ``headers``: (label,
    filter name or ""); ``rows``: (the tr's attributes, its cells)."""
    head = "".join(f"<th{f' data-filter={chr(34)}{f}{chr(34)}' if f else ''}>{_esc(text)}</th>" for text, f in headers)
    body = "\n".join(f"<tr{attributes}>{''.join(cells)}</tr>" for attributes, cells in rows)
    return (
        f'<div class="wide"><table class="sortable">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n'
        "</table></div>"
    )


def _td(html_text: str, sort=None, classes: str = "") -> str:
    attributes = f' class="{classes}"' if classes else ""
    if sort is not None and not (isinstance(sort, float) and np.isnan(sort)):
        attributes += f' data-sort="{_esc(f"{sort:.10g}" if isinstance(sort, float) else sort)}"'
    return f"<td{attributes}>{html_text}</td>"


def _num(value, digits: str = ".4g") -> str:
    return _td("", classes="num") if value is None or pd.isna(value) else _td(f"{value:{digits}}", float(value), "num")


def _link(href: str, text: str) -> str:
    return f'<a href="{_esc(href)}">{_esc(text)}</a>'


def _board_href(setting: Setting, up: str) -> str:
    return f"{up}leaderboards/{setting.slug}.html"


def _run_href(run: PublishedRun, up: str) -> str:
    return f"{up}runs.html#run-{run.id}"


def _entries(runs: list[PublishedRun]) -> dict[str, str]:
    """Trained entry -> its loss page's file stem, in name order."""
    names = {
        entry
        for run in runs
        for entry, kind in zip(
            run.run.summary["entry"], run.run.summary.get("kind", ["trained"] * len(run.run.summary))
        )
        if kind != "baseline"
    }
    return {name: file_stem(name) for name in sorted(names)}


def _metrics(runs: list[PublishedRun]) -> list[str]:
    return [m for m in QUALITY_COLUMNS if any(m in r.run.summary and r.run.summary[m].notna().any() for r in runs)]


def _figure(files: dict, path: str, png: bytes | None, up: str, alt: str) -> str:
    if png is None:
        return ""
    files[path] = png
    return f'<img class="plot" alt="{_esc(alt)}" src="{up}{path}">'


# ----------------------------------------------------------------------------------------------- leaderboards


def _entry_cell(row: pd.Series, up: str, machine: str = "") -> str:
    entry = row["entry"]
    linked = True
    text = (
        _link(f"{up}losses/{file_stem(entry)}.html", entry) if linked and row.get("kind") != "baseline" else _esc(entry)
    )
    if row.get("kind") == "baseline":
        text += ' <span class="badge base">baseline</span>'
    elif _flag(row.get("learned")) is False:
        text += ' <span class="badge dnl">did not learn</span>'
    if _names(row.get("did_not_optimise")):
        text += ' <span class="badge dno">did not optimise its own measure</span>'
    if machine:  # the column stays in view when the table scrolls: which machine's row it is, too
        text += f'<br><span class="machine">{_esc(machine)}</span>'
    return _td(text, entry, "entry")


def _metric_cell(row: pd.Series, column: str) -> str:
    value = row.get(column)
    if value is None or pd.isna(value):
        return _td("", classes="num")
    low, high = row.get(f"{column}_ci_low"), row.get(f"{column}_ci_high")
    text = _esc(_number(value))
    if low is not None and high is not None and pd.notna(low) and pd.notna(high) and row.get("kind") != "baseline":
        text += f'<br><span class="ci">[{low:.3g}, {high:.3g}]</span>'
    classes = ["num"]
    mark = row.get(f"best_{column}")
    if mark in ("best", "tied"):
        classes.append(mark)
    if column in _names(row.get("trained_on")):
        classes.append("own")
        text += ' <span class="own-mark" title="trained on this metric">\u25c6</span>'
    return _td(text + _rank_text(row, column), float(value), " ".join(classes))


def _gain_cell(row: pd.Series) -> str:
    value = row.get("psnr_gain_last20")
    if value is None or pd.isna(value):
        return _td("", classes="num")
    trend = " \u2197 still improving" if _flag(row.get("still_improving")) else ""
    return _td(f"{value:+.2f}{_esc(trend)}", float(value), "num")


def _leaderboard(setting: Setting, members: list[PublishedRun], files: dict) -> str:
    up = "../"
    metrics = _metrics(members)
    tables = [run.run.summary.assign(_run=index) for index, run in enumerate(members)]
    rows_frame = pd.concat(tables, ignore_index=True)
    primary = metrics[0] if metrics else None
    order_key = rows_frame.groupby("entry", sort=False)[primary].mean() if primary else pd.Series(dtype=float)
    higher = bool(higher_is_better(primary)) if primary else True
    baseline = rows_frame.groupby("entry", sort=False)["kind"].first().eq("baseline") if "kind" in rows_frame else None

    def entry_order(entry: str):
        value = order_key.get(entry, np.nan)
        is_baseline = bool(baseline.get(entry, False)) if baseline is not None else False
        return (is_baseline, np.isnan(value), -value if higher else value, entry)

    entries = sorted(dict.fromkeys(rows_frame["entry"]), key=entry_order)
    extras = [c for c in ("psnr_gain_last20", "loss_fwd_bwd_ms", "train_seconds") if c in rows_frame]
    headers = [("entry", ""), ("machine", "device"), ("run", ""), ("seeds", "")]
    headers += [(label(m) + {True: " \u2191", False: " \u2193", None: ""}[higher_is_better(m)], "") for m in metrics]
    headers += [(label(c), "") for c in extras]
    rows = []
    for entry in entries:
        for _, row in rows_frame[rows_frame["entry"] == entry].iterrows():
            run = members[int(row["_run"])]
            cells = [
                _entry_cell(row, up, run.machine),
                _td(f'<span class="machine">{_esc(run.machine)}</span>', run.machine),
                _td(_link(_run_href(run, up), run.commit), run.label),
                _num(row.get("seeds"), ".0f"),
                *(_metric_cell(row, m) for m in metrics),
            ]
            for column in extras:
                cells.append(_gain_cell(row) if column == "psnr_gain_last20" else _num(row.get(column), ".3g"))
            kind = row.get("kind")
            classes = "baseline" if kind == "baseline" else "dnl" if _flag(row.get("learned")) is False else ""
            rows.append((f' class="{classes}"' if classes else "", cells))
    setting_rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in setting.items())
    run_items = "".join(
        f"<li>{_link(_run_href(run, up), run.label)}: {_esc(run.path)}\n{_verdict(run.run)}</li>\n" for run in members
    )
    machines = sorted({run.machine for run in members})
    legend = (
        "Every row is one entry of one run; each run keeps its own verdict, ranks and marks (runs are never "
        "ranked against each other, even here). Quality: mean over seeds with its 95% interval; green: best "
        "beyond noise in its run, pale green: tied for best within noise; \u25c6 in a dashed frame: the entry "
        f"trained on this metric. Baselines need no training; an entry that does not beat the trivial baseline's "
        f"PSNR by {LEARNED_MARGIN_DB:g} dB did not learn and is not ranked. \u2197: still improving at the end. "
        "Click a header to sort."
    )
    figure = _figure(
        files, f"assets/plots/{setting.slug}.png", _leaderboard_plot(members, entries), up, "quality per entry"
    )
    body = (
        f'<table class="setting">{setting_rows}</table>\n'
        f"<p>{len(members)} run(s) on {len(machines)} machine(s): {_esc(', '.join(machines))}</p>\n"
        f'<h2>Entries</h2>\n{_table(headers, rows)}\n<p class="note">{_esc(legend)}</p>\n'
        f"<h2>Quality per entry</h2>\n{figure}\n<h2>Each run's verdict</h2>\n<ul>{run_items}</ul>"
    )
    return _page(f"Leaderboard: {setting.title}", body, 1)


def _leaderboard_plot(members: list[PublishedRun], entries: list[str]) -> bytes | None:
    quality = pd.concat([run.run.ok.assign(run=run.label) for run in members], ignore_index=True)
    shown = [m for m in PLOTTED if m in quality and quality[m].notna().any()]
    if not shown:
        return None
    order = [e for e in entries if e in set(quality["entry"])]
    hue_order = [run.label for run in members]

    def draw(fig, axes):
        for ax, metric in zip(axes, shown):
            sns.pointplot(
                data=quality,
                x=metric,
                y="entry",
                hue="run",
                order=order,
                hue_order=hue_order,
                errorbar="sd",
                dodge=0.4 if len(hue_order) > 1 else False,
                linestyle="none",
                markersize=4,
                legend=ax is axes[0],
                ax=ax,
            )
            better = "higher" if higher_is_better(metric) else "lower"
            ax.set(xlabel=f"{label(metric)}, {better} is better", ylabel="")
        if axes[0].get_legend() is not None:
            axes[0].get_legend().set_title("run")
        fig.suptitle("mean over seeds; error bars: std across seeds")

    return plots.figure_png(draw, panels=len(shown), cols=len(shown), panel_size=(4.6, 1.4 + 0.28 * len(order)))


# ----------------------------------------------------------------------------------------------- losses


def _loss_sources(formulas: list[str]) -> str:
    from bench.losses import get_loss_info

    names = sorted({name for formula in formulas for name in re.findall(r"\*\s*([A-Za-z_][\w-]*)", formula)})
    parts = []
    for name in names:
        try:
            source = get_loss_info(name).source
        except Exception:  # a plugin's loss that this process has not loaded
            source = "not registered here: a plugin's loss (load it with --plugin to name it)"
        parts.append(f"<li><code>{_esc(name)}</code>: {_esc(source)}</li>")
    return "<ul>" + "".join(parts) + "</ul>" if parts else '<p class="note">no formula recorded</p>'


def _speed_table(run: PublishedRun) -> pd.DataFrame:
    """Per entry of ``run``: forward, backward and total ms of the first variant timed, and total / mse's total
    in the same run (mse: the entry named so, else the one whose formula is 1*mse)."""
    speed = run.run.speed_variant()
    if speed.empty:
        return pd.DataFrame()
    ms = speed.pivot_table(index="entry", columns="phase", values="median_ms", sort=False)
    first = speed.groupby("entry", sort=False)[["resolution", "batch_size", "variant"]].first()
    table = ms.reindex(columns=["forward", "backward", "total"]).join(first)
    summary = run.run.summary
    formulas = dict(zip(summary["entry"], summary.get("formula", pd.Series("", index=summary.index))))
    reference = "mse" if "mse" in table.index else next((e for e, f in formulas.items() if f == "1*mse"), None)
    total = table["total"]
    table["ratio"] = total / total[reference] if reference in table.index else np.nan
    return table


def _loss_page(entry: str, runs: list[PublishedRun], files: dict) -> str:
    up = "../"
    rows, speed_rows, strips, formulas = [], [], [], []
    metrics = [m for m in LOSS_PAGE_METRICS if m in _metrics(runs)]
    for run in runs:
        summary = run.run.summary
        if entry not in set(summary["entry"]):
            continue
        row = summary[summary["entry"] == entry].iloc[0]
        formulas.append(str(row.get("formula", "")))
        ranked = summary["rank_psnr"].notna().sum() if "rank_psnr" in summary else 0
        low, high = row.get("rank_psnr_low"), row.get("rank_psnr_high")
        if low is not None and high is not None and pd.notna(low) and pd.notna(high):
            rank = _td(f"{int(low)}" + ("" if low == high else f"\u2013{int(high)}") + f" of {ranked}", float(low))
        elif pd.notna(row.get("rank_psnr", np.nan)):
            rank = _td(f"{int(row['rank_psnr'])} of {ranked}", float(row["rank_psnr"]))
        else:
            rank = _td("not ranked" if _flag(row.get("learned")) is False else "")
        learned = {True: "yes", False: "did not learn", None: ""}[_flag(row.get("learned"))]
        rows.append(
            (
                "",
                [
                    _td(_link(_board_href(run.setting, up), run.setting.title), run.setting.title, "entry"),
                    _td(_esc(run.setting.suite)),
                    _td(_esc(run.setting.task)),
                    _td(f'<span class="machine">{_esc(run.machine)}</span>', run.machine),
                    _td(_link(_run_href(run, up), run.commit), run.label),
                    rank,
                    *(_metric_cell(row, m) for m in metrics),
                    _td(_esc(learned)),
                ],
            )
        )
        speed = _speed_table(run)
        if entry in speed.index:
            s = speed.loc[entry]
            speed_rows.append(
                (
                    "",
                    [
                        _td(f'<span class="machine">{_esc(run.machine)}</span>', run.machine, "entry"),
                        _td(_esc(run.setting.device_kind)),
                        _td(_link(_run_href(run, up), run.commit), run.label),
                        _td(
                            f"{_plain(s['resolution'])}\u00d7{_plain(s['resolution'])}, batch {_plain(s['batch_size'])}"
                        ),
                        _num(s["forward"], ".3g"),
                        _num(s["backward"], ".3g"),
                        _num(s["total"], ".3g"),
                        _num(s["ratio"], ".2f"),
                    ],
                )
            )
        strips.append(_strip_html(run, entry, files, up))
    headers = [("setting (leaderboard)", ""), ("suite", "suite"), ("task", "task"), ("machine", "device"), ("run", "")]
    headers += [("PSNR rank", "")] + [(label(m), "") for m in metrics] + [("learned", "")]
    speed_headers = [("machine", "device"), ("device kind", ""), ("run", ""), ("timed at", "")]
    speed_headers += [("forward ms", ""), ("backward ms", ""), ("fwd+bwd ms", ""), ("\u00d7 mse, same run", "")]
    pictures = "".join(s for s in strips if s) or '<p class="note">no published run kept reconstructions of it</p>'
    body = (
        f"<h2>Source</h2>\n<p>formula: <code>{_esc(' / '.join(sorted(set(formulas))))}</code></p>\n"
        f"{_loss_sources(formulas)}\n<h2>Every run it took part in</h2>\n{_table(headers, rows)}\n"
        '<p class="note">Ranks hold within each run only (on PSNR, among the entries that learned; a range where '
        "neighbours tie within noise).</p>\n<h2>Speed per device</h2>\n"
        + (_table(speed_headers, speed_rows) if speed_rows else '<p class="note">not timed in any published run</p>')
        + f"\n<h2>Reconstructions beside the reference crops</h2>\n{pictures}"
    )
    return _page(f"Loss: {entry}", body, 1)


def _plain(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _strip_html(run: PublishedRun, entry: str, files: dict, up: str) -> str:
    rows, crop = plots.reconstruction_files(run.run, [entry])
    if len(rows) < 2 or rows[1][2] is None:
        return ""
    (_, _, original), (_, seed, path) = rows
    folder = f"assets/reconstructions/{run.id}"
    files.setdefault(f"{folder}/original.png", plots.strip_png(original, crop))
    files[f"{folder}/{file_stem(entry)}.png"] = plots.strip_png(path, crop)
    return (
        f"<h3>{_esc(run.setting.title)} on {_esc(run.machine)} ({_link(_run_href(run, up), run.commit)})</h3>\n"
        f'<div class="strip-name">reference crops</div><img class="strip" alt="reference crops" '
        f'src="{up}{folder}/original.png">\n<div class="strip-name">{_esc(entry)}, seed {seed}</div>'
        f'<img class="strip" alt="{_esc(entry)}" src="{up}{folder}/{file_stem(entry)}.png">\n'
    )


def _losses_index(entries: dict[str, str], runs: list[PublishedRun]) -> str:
    rows = []
    for entry, stem in entries.items():
        having = [r for r in runs if entry in set(r.run.summary["entry"])]
        formulas = sorted(
            {str(f) for r in having for f in r.run.summary.loc[r.run.summary["entry"] == entry, "formula"]}
        )
        rows.append(
            (
                "",
                [
                    _td(_link(f"{stem}.html", entry), entry, "entry"),
                    _td(f"<code>{_esc(' / '.join(formulas))}</code>"),
                    _num(len(having), "d"),
                    _td(_esc(", ".join(sorted({r.setting.suite for r in having})))),
                    _td(_esc(", ".join(sorted({r.setting.task for r in having})))),
                ],
            )
        )
    table = _table([("loss", ""), ("formula", ""), ("runs", ""), ("suites", ""), ("tasks", "")], rows)
    return _page("Losses", f"<p>Every entry trained in a published run; each page gathers its runs.</p>\n{table}", 1)


# ----------------------------------------------------------------------------------------------- speed, runs


def _speed_page(runs: list[PublishedRun], entries: dict[str, str], files: dict) -> str:
    rows, frames = [], []
    for run in runs:
        speed = _speed_table(run)
        for entry, s in speed.iterrows():
            entry_text = _link(f"losses/{entries[entry]}.html", entry) if entry in entries else _esc(entry)
            rows.append(
                (
                    "",
                    [
                        _td(entry_text, entry, "entry"),
                        _td(f'<span class="machine">{_esc(run.machine)}</span>', run.machine),
                        _td(_esc(run.setting.device_kind)),
                        _td(_esc(run.setting.suite)),
                        _td(_link(_run_href(run, ""), run.commit), run.label),
                        _td(
                            f"{_plain(s['resolution'])}\u00d7{_plain(s['resolution'])}, batch {_plain(s['batch_size'])}"
                        ),
                        _num(s["forward"], ".3g"),
                        _num(s["backward"], ".3g"),
                        _num(s["total"], ".3g"),
                        _num(s["ratio"], ".2f"),
                    ],
                )
            )
        if not speed.empty:
            frames.append(speed.reset_index().assign(run=run.label))
    headers = [("loss", ""), ("machine", "device"), ("device kind", "device kind"), ("suite", "suite"), ("run", "")]
    headers += [("timed at", ""), ("forward ms", ""), ("backward ms", ""), ("fwd+bwd ms", ""), ("\u00d7 mse", "")]
    figure = _figure(files, "assets/plots/speed.png", _speed_plot(frames), "", "fwd+bwd time relative to mse")
    body = (
        "<p>Median forward and backward time of each loss per call, on every device published, and the ratio of "
        "its fwd+bwd time to mse's <em>measured in the same run</em> (timings from different runs are never "
        "divided). Click a header to sort.</p>\n"
        + (_table(headers, rows) if rows else '<p class="note">no published run timed its losses</p>')
        + f"\n{figure}"
    )
    return _page("Loss speed", body, 0)


def _speed_plot(frames: list[pd.DataFrame]) -> bytes | None:
    data = pd.concat(frames, ignore_index=True).dropna(subset=["ratio"]) if frames else pd.DataFrame()
    if data.empty:
        return None
    order = list(data.groupby("entry")["ratio"].median().sort_values(kind="stable").index)
    hue_order = list(dict.fromkeys(data["run"]))

    def draw(fig, axes):
        ax = axes[0]
        sns.barplot(data=data, x="ratio", y="entry", hue="run", order=order, hue_order=hue_order, errorbar=None, ax=ax)
        ax.set_xscale("log")
        ax.axvline(1, color="0.3", ls="--", lw=1)
        ax.set(xlabel="fwd+bwd time / mse's in the same run (log scale)", ylabel="")
        ax.legend(title="run", fontsize=7, loc="lower right")

    return plots.figure_png(draw, panel_size=(10.0, 1.2 + 0.12 * len(order) * max(len(hue_order), 2)))


def _runs_page(runs: list[PublishedRun], reports: dict[str, str | None]) -> str:
    rows = []
    for run in runs:
        env = run.env
        report = reports[run.id]
        wall = env.get("train_wall_seconds")
        rows.append(
            (
                f' id="run-{run.id}"',
                [
                    _td(_esc(run.path), run.path, "entry"),
                    _td(_esc(run.setting.suite)),
                    _td(_esc(run.setting.task)),
                    _td(f'<span class="machine">{_esc(run.machine)}</span>', run.machine),
                    _td(_esc(run.setting.device_kind)),
                    _td(f"<code>{_esc(run.commit)}</code>"),
                    _td(_esc(str(env.get("started", "")).replace("T", " "))),
                    _td(_esc(_duration(env)), float(wall) if wall is not None else None),
                    _td(_link(_board_href(run.setting, ""), run.setting.title)),
                    _td(_link(report, "report.html") if report else '<span class="note">none in the folder</span>'),
                ],
            )
        )
    headers = [("run folder", ""), ("suite", "suite"), ("task", "task"), ("machine", "device")]
    headers += [("device kind", "device kind"), ("commit", ""), ("started", ""), ("wall time", "")]
    headers += [("leaderboard", ""), ("report", "")]
    body = (
        f"<p>{len(runs)} run(s), each with its machine, commit and time, its leaderboard and its own report "
        "(copied with the files it links).</p>\n" + _table(headers, rows)
    )
    return _page("Runs", body, 0)


def _index(boards: dict[Setting, list[PublishedRun]]) -> str:
    rows = []
    for setting, members in boards.items():
        rows.append(
            (
                "",
                [
                    _td(_link(_board_href(setting, ""), setting.title), setting.title, "entry"),
                    _td(_esc(setting.suite)),
                    _td(_esc(setting.task)),
                    _td(_esc(setting.device_kind)),
                    _td(_esc(setting.model)),
                    _num(setting.resolution, "d"),
                    _num(setting.steps, "d"),
                    _td(_esc(setting.schedule)),
                    _td(_esc(setting.profile)),
                    _td(_esc("; ".join(sorted({run.machine for run in members})))),
                    _num(len(members), "d"),
                ],
            )
        )
    headers = [("leaderboard", ""), ("suite", "suite"), ("task", "task"), ("device kind", "device"), ("model", "")]
    headers += [("px", ""), ("steps", ""), ("schedule", ""), ("profile", ""), ("machines", ""), ("runs", "")]
    body = (
        "<p>One leaderboard per comparable setting: runs are ranked together only when their suite, task, model, "
        "crop size, steps, learning-rate schedule, device profile and device kind all agree. Runs of one setting "
        "on different machines share a leaderboard, side by side. Also: "
        '<a href="losses/index.html">every loss</a>, <a href="speed.html">speed</a>, '
        '<a href="runs.html">every run</a>.</p>\n' + _table(headers, rows)
    )
    return _page("LossBench leaderboards", body, 0)


# ----------------------------------------------------------------------------------------------- reports


_LINK = re.compile(rb'(?:href|src)="([^"]*)"')


def _copy_report(run: PublishedRun, files: dict) -> str | None:
    """Copy the run's report.html, and the local files it links (a reference recovery page), to
    reports/<input>/<the same path under the input>; return the copy's path, None where the run has none."""
    source = run.run.folder / "report.html"
    if not source.is_file():
        return None
    root = run.root.resolve()
    _mirror(source.resolve(), root, f"reports/{run.prefix}", files)
    return f"reports/{run.prefix}/{source.resolve().relative_to(root).as_posix()}"


def _mirror(path, root, base: str, files: dict) -> None:
    name = f"{base}/{path.relative_to(root).as_posix()}"
    if name in files:
        return
    data = path.read_bytes()
    files[name] = data
    if path.suffix != ".html":
        return
    for link in sorted(set(_LINK.findall(data))):
        target = unquote(link.decode("utf-8", "replace")).split("#")[0].split("?")[0]
        if not target or re.match(r"^[A-Za-z][\w+.-]*:", target) or target.startswith("/"):
            continue  # a data: URI, an anchor, or not a local relative link
        resolved = (path.parent / target).resolve()
        if resolved.is_file() and resolved.is_relative_to(root):
            _mirror(resolved, root, base, files)
