"""report.html: one self-contained page (inline CSS, PNG data URIs, no script, no URL) that opens offline."""

from __future__ import annotations

import datetime as dt
import html
import os
import re
from pathlib import Path

import pandas as pd
from matplotlib.colors import to_hex

from bench.errors import BenchInputError
from bench.report import LABELS, Run, higher_is_better, label, load_run
from bench.report import plots
from bench.data.baselines import LEARNED_MARGIN_DB
from bench.results import read_json, read_table, task_folders, write_atomic
from bench.evaluate.design import with_sizes
from bench.evaluate.stability import rank_stability, stability_lines
from bench.evaluate.verdicts import headline
from bench.train.rates import BEST as BEST_RATE, SEARCH as RATE_SEARCH, TABLE as RATES_TABLE

SECTION_IDS = (
    "verdict",
    "run-summary",
    "summary-table",
    "rates",
    "quality-plots",
    "speed-plot",
    "other-implementations",
    "pareto-plot",
    "psnr-curves",
    "training-curves",
    "reconstructions",
)

CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1400px; padding: 0 16px; color: #222; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 36px; }
table { border-collapse: collapse; font-size: 13px; } .wide { overflow-x: auto; max-width: 100%; }
.wide tr > :first-child { position: sticky; left: 0; z-index: 1; background: #fff; box-shadow: inset -1px 0 #ccc; }
.wide tr > th:first-child { background: #f4f4f4; } .wide tr.baseline > td:first-child { background: #f3f6fa; }
th, td { padding: 3px 7px; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
td.entry { min-width: 10em; max-width: 20em; } .ci { color: #777; font-size: 11px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f4f4f4; } th.sorted { background: #e2e8f0; }
td.best { background: #d9f2d9; font-weight: bold; }
td.own { outline: 2px dashed #8e44ad; outline-offset: -3px; } .own-mark { color: #8e44ad; font-weight: bold; }
.rank { color: #555; font-size: 11px; }
tr.baseline td { background: #f3f6fa; font-style: italic; color: #445; }
tr.dnl td { color: #999; } .badge { font-size: 11px; font-weight: bold; padding: 1px 5px; border-radius: 3px; }
.badge.dnl { background: #c0392b; color: white; } .badge.base { background: #5d6d7e; color: white; }
.badge.small { background: #e0a800; color: #222; } .small-mark { color: #b07800; font-weight: bold; }
.badge.dno { background: #7d3c98; color: white; }
.verdict li { margin: 3px 0; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; }
.box { padding: 8px 12px; margin: 8px 0; border-left: 5px solid; }
.warn { background: #fff4d6; border-color: #e0a800; } .fail { background: #fde4e1; border-color: #c0392b; }
.note { color: #555; }
img { max-width: 100%; } img.strip { image-rendering: pixelated; }
"""


def write_report(run_dir: Path, sort_by: str = "psnr") -> Path:
    """Write run_dir/report.html from the run folder's files alone and return its path. The parent folder of a
    run of several tasks gets every task's report and a page with one table and one verdict per task."""
    run_dir = Path(run_dir)
    tasks = task_folders(run_dir)
    if tasks:
        runs = {
            task: load_run(write_report(folder, sort_by).parent)
            for task, folder in tasks.items()
            if (folder / "quality.csv").is_file()
        }
        path = run_dir / "report.html"
        write_atomic(path, render_tasks(run_dir, runs, sort_by))
        return path
    for step in (RATE_SEARCH, BEST_RATE):  # a run with a learning rate per entry (bench.train.rates)
        if (run_dir / step / "quality.csv").is_file():
            write_report(run_dir / step, sort_by)
    run = load_run(run_dir)
    path = run.folder / "report.html"
    write_atomic(path, render(run, sort_by))
    return path


def render_tasks(folder: Path, runs: dict[str, Run], sort_by: str = "psnr") -> str:
    """The page of a run of several tasks: per task, its verdict and summary table, linking the task's report."""
    sections = []
    for task, run in runs.items():
        palette = plots.entry_palette(run.entries)
        href = f"{task}/report.html"
        sections.append(
            f'<section id="task-{_esc(task)}">\n<h2>{_esc(task)}</h2>\n'
            f'<p><a href="{_esc(href)}">the whole report of this task</a> (curves, speed, reconstructions)</p>\n'
            f"<h3>Verdict</h3>\n{_verdict(run)}\n<h3>Summary (sorted by {_esc(label(sort_by))})</h3>\n"
            f"{_summary_table(run, _sorted_summary(run, sort_by), sort_by, palette, _recovery_links(run))}\n"
            + (
                f"<h3>At each entry's own learning rate</h3>\n{_rates(run, sort_by, palette)}\n"
                if (run.folder / f"{RATES_TABLE}.csv").is_file()
                else ""
            )
            + "</section>"
        )
    missing = [task for task in task_folders(folder) if task not in runs]
    if missing:
        sections.append(f'<p class="note">not run yet: {_esc(", ".join(missing))} (--resume this folder)</p>')
    name = read_json(folder / "environment.json").get("suite", folder.name)
    title = f"LossBench report: {name}, {len(task_folders(folder))} tasks"
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_esc(title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n<h1>{_esc(title)}</h1>\n"
        f'<p class="note">{_esc(folder)}</p>\n' + "\n".join(sections) + "\n</body>\n</html>\n"
    )


def render(run: Run, sort_by: str = "psnr") -> str:
    table = _sorted_summary(run, sort_by)
    order = list(table["entry"])
    palette = plots.entry_palette(run.entries)
    no_timing = "no speed.csv: the loss timing was skipped (--no-timing)"
    sections = [
        ("verdict", "Verdict", _verdict(run)),
        ("run-summary", "Run", _run_summary(run)),
        (
            "summary-table",
            f"Summary (sorted by {label(sort_by)})",
            _summary_table(run, table, sort_by, palette, _recovery_links(run)),
        ),
        ("rates", "Learning rates", _rates(run, sort_by, palette)),
        (
            "quality-plots",
            "Quality per entry",
            _figure(plots.quality_bars(run, order, palette), "no entry finished training"),
        ),
        ("speed-plot", "Loss speed", _figure(plots.speed_chart(run, order, palette), no_timing)),
        ("other-implementations", "Other implementations of the same losses", _references(run)),
        (
            "pareto-plot",
            "Quality against cost",
            _figure(plots.pareto_chart(run, order, palette), f"{no_timing}, or every entry failed"),
        ),
        ("rank-stability", "Ranking during training", _rank_stability(run, order, palette)),
        (
            "psnr-curves",
            "Held-out PSNR during training",
            _figure(plots.psnr_curves(run, order, palette), "no held-out evaluations during training"),
        ),
        (
            "training-curves",
            "Training curves",
            _figure(plots.training_curves(run, order, palette), "no training history"),
        ),
        ("reconstructions", "Reconstructions of held-out images", _reconstructions(run, order, palette)),
    ]
    title = f"LossBench report: {run.env.get('suite', run.folder.name)}"
    body = "\n".join(
        f'<section id="{key}">\n<h2>{_esc(heading)}</h2>\n{content}\n</section>' for key, heading, content in sections
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_esc(title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n<h1>{_esc(title)}</h1>\n"
        f'<p class="note">{_esc(run.folder)}</p>\n{body}\n</body>\n</html>\n'
    )


def _esc(value) -> str:
    # The page must name no URL (it is checked to be offline-clean), so a URL inside an error message or
    # warning loses its scheme and stays readable as text.
    return html.escape(re.sub(r"\bhttps?://", "", str(value)))


def _sorted_summary(run: Run, sort_by: str) -> pd.DataFrame:
    summary = run.summary
    if sort_by in summary:
        ascending = higher_is_better(sort_by) is False
        return summary.sort_values(sort_by, ascending=ascending, na_position="last", kind="stable")
    if sort_by in LABELS:  # a metric every entry failed to produce: keep suite order
        return summary
    sortable = [c for c in summary.select_dtypes("number") if not c.startswith("rank_")]
    raise BenchInputError(
        f"cannot sort by {sort_by!r}: summary.csv has no such column",
        where=str(run.folder),
        fix=f"sort by one of: {', '.join(sortable)}",
    )


def _figure(uri: str | None, missing: str) -> str:
    return f'<img alt="figure" src="{uri}">' if uri else f'<p class="note">{_esc(missing)}</p>'


def _swatch(entry: str, palette: dict) -> str:
    colour = palette.get(entry)
    return (f'<span class="swatch" style="background:{to_hex(colour)}"></span>' if colour else "") + _esc(entry)


def _number(value) -> str:
    return "" if pd.isna(value) else f"{value:.4g}"


def _rank_stability(run: Run, order: list[str], palette: dict) -> str:
    stability = rank_stability(run.history) if not run.history.empty else pd.DataFrame()
    if stability.empty:
        return '<p class="note">fewer than two entries were evaluated during training</p>'
    rows = "".join(
        f"<tr><td>{_esc(label(row.metric))}</td><td>{row.fraction:.0%} (step {row.step})</td>"
        f"<td>{row.kendall_tau:.3f}</td><td>{_esc(row.swapped or 'none')}</td></tr>"
        for row in stability.itertuples()
    )
    how = (
        "The entries' held-out scores (mean over seeds) at the evaluation nearest below 50% and 75% of the steps, "
        "ranked against the final evaluation's: Kendall's tau, and the pairs ordered otherwise than at the end "
        "(a > b: a is ahead at the end). A pair that swaps late is one a longer training might swap again."
    )
    table = (
        "<table><tr><th>metric</th><th>compared at</th><th>Kendall's tau with the final ranking</th>"
        f"<th>pairs ordered otherwise at the end</th></tr>{rows}</table>"
    )
    plot = _figure(plots.ranking_curves(run, order, palette), "no held-out evaluations during training")
    return f'<p class="note">{_esc(how)}</p>\n{table}\n{plot}'


def _verdict(run: Run) -> str:
    lines = headline(run.summary)
    if lines and not run.history.empty:
        lines += stability_lines(rank_stability(run.history))
    if not lines:
        return '<p class="note">no verdict: this run has no baselines or no finished entry</p>'
    trained = run.ok[run.ok["kind"] == "trained"] if "kind" in run.ok else run.ok
    seeds = trained["seed"].nunique() if "seed" in trained else 0
    how = (
        f"Paired over {seeds} seed(s) and every held-out crop: a paired t-test, Holm-corrected for the number "
        "of pairs, and the winner must lead on every seed. Entries that did not learn are not ranked."
    )
    items = "".join(f"<li>{_esc(line)}</li>" for line in lines)
    return f'<ul class="verdict">{items}</ul>\n<p class="note">{_esc(how)}</p>'


def _rates(run: Run, sort_by: str, palette: dict) -> str:
    """The rate search (validation loss per entry and rate, the choice marked) and the run at each entry's
    chosen rate beside this one, the common rate's."""
    rates = read_table(run.folder, RATES_TABLE)
    if rates.empty:
        rates = ", ".join(f"{rate:g}" for rate in sorted(set(run.ok.get("lr", pd.Series(dtype=float)).dropna())))
        return (
            f'<p class="note">every entry at the same rate ({_esc(rates or "none recorded")}): train.lr is one '
            "value (a list gives each entry its own rate too, chosen on validation crops)</p>"
        )
    columns = list(dict.fromkeys(rates["lr"]))
    head = "".join(f"<th>lr {rate:g}{' (common)' if i == 0 else ''}</th>" for i, rate in enumerate(columns))
    lines = []
    for entry, rows in rates.groupby("entry", sort=False):
        cells = []
        for rate in columns:
            row = rows[rows["lr"] == rate].iloc[0]
            text = _number(row["validation_loss"]) if pd.notna(row["validation_loss"]) else _esc(row["status"])
            cells.append(f'<td class="num{" best" if row["chosen"] else ""}">{text}</td>')
        lines.append(f'<tr><td class="entry">{_swatch(entry, palette)}</td>{"".join(cells)}</tr>')
    search = (
        '<p class="note">Each entry trained at every rate on the first seed, on the training photographs less '
        f"{_esc(', '.join(load_run(run.folder / RATE_SEARCH).env.get('eval_photos', [])))}, whose crops give "
        "the validation value of the entry's own loss below (lower is better; its choice in green). The "
        "evaluation crops played no part. "
        f'<a href="{RATE_SEARCH}/report.html">the search\'s report</a></p>'
        f"<table><tr><th>entry</th>{head}</tr>{''.join(lines)}</table>"
    )
    if not (run.folder / BEST_RATE / "quality.csv").is_file():
        return search + '<p class="note">the run at each entry\'s rate has not finished (--resume this folder)</p>'
    best = load_run(run.folder / BEST_RATE)
    return (
        search + f'<h3>Every seed at each entry\'s own rate (<a href="{BEST_RATE}/report.html">its report</a>)'
        f"</h3>\n{_verdict(best)}\n"
        f"{_summary_table(best, _sorted_summary(best, sort_by), sort_by, palette, {})}"
    )


def _plain(value) -> str:
    """A number read back from CSV as float (32.0) shown as written (32); anything else as it is."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _names(value) -> list[str]:
    """A space-separated list cell (e.g. trained_on) as names; none where the cell is empty or missing."""
    return [] if value is None or pd.isna(value) else str(value).split()


def _flag(value) -> bool | None:
    """A True/False verdict cell as read back from CSV or computed (NaN, None or <NA> where there is none)."""
    return None if value is None or pd.isna(value) else bool(value)


def _rank_text(row: pd.Series, column: str) -> str:
    low, high = row.get(f"rank_{column}_low"), row.get(f"rank_{column}_high")
    if low is None or pd.isna(low) or pd.isna(high):
        return ""
    text = f"rank {int(low)}" if low == high else f"rank {int(low)}\u2013{int(high)}"
    return f'<br><span class="rank">{text}</span>'


def _recovery_links(run: Run) -> dict[str, str]:
    """Entry -> a link to its result in the newest reference recovery of this run's suite, where there is one."""
    from bench.report.recover_html import PAGE, anchor, newest_recovery  # here: it builds on this module

    found = newest_recovery(run.folder)
    if found is None or found[1].empty:
        return {}
    folder, table = found
    href = Path(os.path.relpath(folder / PAGE, run.folder)).as_posix()
    links = {}
    for position, (entry, rows) in enumerate(table.groupby("entry", sort=False)):
        recovered = int(rows["recovered"].fillna(False).astype(bool).sum())
        links[entry] = (
            f'<a class="recovery" href="{_esc(href)}#{anchor(position)}">recovery: '
            f"{recovered} of {len(rows)} starts</a>"
        )
    return links


def _summary_table(run: Run, table: pd.DataFrame, sort_by: str, palette: dict, recoveries: dict[str, str]) -> str:
    known = ["entry", "formula", "loss_weights", "seeds", "failed", *LABELS]
    # Ranks and verdicts go into their metric's cell, as do intervals; all-empty extras would only add width.
    hidden = (
        "kind",
        "trained_on",
        "learned",
        "still_improving",
        "trained_below_design",
        "scored_below_design",
        "did_not_optimise",
        "own_measure_reference",
    )
    extras = [
        c
        for c in table
        if c not in known
        and c not in hidden
        and not c.startswith(("rank_", "best_"))
        and not c.endswith(("_ci_low", "_ci_high"))
        and table[c].notna().any()
    ]
    columns = [c for c in known if c in table] + extras

    def header(column: str) -> str:
        arrow = {True: " \u2191", False: " \u2193", None: ""}[higher_is_better(column)]
        marked = ' class="sorted"' if column == sort_by else ""
        return f"<th{marked}>{_esc(label(column) + arrow)}</th>"

    def cell(row: pd.Series, column: str) -> str:
        value = row[column]
        if column == "entry":
            badge = ""
            if row.get("kind") == "baseline":
                badge = ' <span class="badge base">baseline</span>'
            elif _flag(row.get("learned")) is False:
                badge = ' <span class="badge dnl">did not learn</span>'
            not_optimised = _names(row.get("did_not_optimise"))
            if not_optimised:
                worse = f"significantly worse than {row['own_measure_reference']} on " + ", ".join(
                    map(label, not_optimised)
                )
                badge += f' <span class="badge dno" title="{_esc(worse)}">did not optimise its own measure</span>'
            below = _names(row.get("trained_below_design"))
            if below:
                badge += (
                    f' <span class="badge small" title="designed for larger images than the training crops">'
                    f"trained below design size: {_esc(with_sizes(below))}</span>"
                )
            link = f"<br>{recoveries[value]}" if value in recoveries else ""
            return f'<td class="entry">{_swatch(value, palette)}{badge}{link}</td>'
        if column == "failed":
            style = ' style="color:#c0392b;font-weight:bold"' if value else ""
            return f'<td class="num"{style}>{_esc(value)}</td>'
        if column == "psnr_gain_last20":
            if pd.isna(value):
                return '<td class="num"></td>'
            trend = " \u2197 still improving" if _flag(row.get("still_improving")) else ""
            return f'<td class="num">{value:+.2f}{_esc(trend)}</td>'
        if not pd.api.types.is_number(value) or column == "seeds":
            return f"<td>{_esc(value)}</td>"
        if pd.isna(value):
            return '<td class="num note">failed</td>' if column in LABELS else '<td class="num"></td>'
        low, high = row.get(f"{column}_ci_low"), row.get(f"{column}_ci_high")
        interval = pd.notna(low) and pd.notna(high) and row.get("kind") != "baseline"
        text = _esc(_number(value)) + (f'<br><span class="ci">[{low:.3g}, {high:.3g}]</span>' if interval else "")
        classes = ["num"]
        if row.get(f"best_{column}") == "best":
            classes.append("best")
        if column in str(row.get("trained_on", "")).split():
            classes.append("own")
            text += ' <span class="own-mark" title="trained on this metric">\u25c6</span>'
        if column in _names(row.get("scored_below_design")):
            text += (
                f' <span class="small-mark" title="scored below its design size, {_esc(with_sizes([column]))}">'
                "\u25bf</span>"
            )
        return f'<td class="{" ".join(classes)}">{text}{_rank_text(row, column)}</td>'

    def row_class(row: pd.Series) -> str:
        if row.get("kind") == "baseline":
            return ' class="baseline"'
        return ' class="dnl"' if _flag(row.get("learned")) is False else ""

    rows = "\n".join(
        f"<tr{row_class(row)}>" + "".join(cell(row, c) for c in columns) + "</tr>" for _, row in table.iterrows()
    )
    legend = (
        "\u2191 higher is better, \u2193 lower is better. Quality is the mean over seeds, with its 95% "
        "confidence interval [low, high] where there are several seeds. A cell is highlighted only when its "
        'entry beats every other entry beyond noise; "rank 1\u20133" is the range of ranks the entry could '
        "hold given which differences are significant (ties are not highlighted). \u25c6 with a dashed "
        "frame: the entry was trained on this metric (or a term of its loss is it), so a win there is "
        "expected. Baselines need no training; an entry that does not beat the trivial baseline's PSNR by "
        f'{LEARNED_MARGIN_DB:g} dB is marked "did not learn" and not ranked. PSNR gain: held-out PSNR over '
        "the last 20% of training steps; \u2197 marks entries still improving at the end. \u25bf: scored on "
        'crops smaller than the metric was designed for; "trained below design size": the entry\'s loss was '
        'designed for larger images than its training crops (sizes and sources in metrics.csv). "did not '
        'optimise its own measure": significantly worse, on a metric the entry trained on, than the reference '
        "entry (mse unless the suite names another) that did not train on it."
    )
    return (
        f'<div class="wide"><table>\n<tr>{"".join(header(c) for c in columns)}</tr>\n{rows}\n</table></div>\n'
        f'<p class="note">{legend}</p>'
    )


def _references(run: Run) -> str:
    """LossBench's fwd+bwd time beside other packages' implementations of the same loss, timed in this run."""
    references = read_table(run.folder, "speed_references")
    if references.empty:
        return '<p class="note">not timed in this run (no speed_references.csv)</p>'
    rows = "".join(
        f"<tr><td>{_esc(r['loss'])}</td><td>{'<b>' if r['implementation'] == 'lossbench' else ''}"
        f"{_esc(r['implementation'])}{'</b>' if r['implementation'] == 'lossbench' else ''}</td>"
        f"<td>{_number(r['median_ms'])}</td><td>{r['ratio_to_fastest']:.2f}x</td></tr>"
        for _, r in references.iterrows()
    )
    first = references.iloc[0]
    return (
        f'<p class="note">fwd+bwd median at {first["batch_size"]}x3x{first["resolution"]}x{first["resolution"]}, '
        f"same inputs and settings; ratio to the fastest implementation of each loss.</p>"
        f"<table><tr><th>loss</th><th>implementation</th><th>ms</th><th>vs fastest</th></tr>{rows}</table>"
    )


def _run_summary(run: Run) -> str:
    env = run.env

    def get(key: str):
        return env.get(key, "unknown")

    trained = run.quality[run.quality["kind"] != "baseline"] if "kind" in run.quality else run.quality
    first = trained.iloc[0] if not trained.empty else pd.Series(dtype=object)
    started, finished = (str(env.get(key, "not finished")).replace("T", " ") for key in ("started", "finished"))
    timed = run.speed.iloc[0] if not run.speed.empty else None
    seeds = ", ".join(str(s) for s in sorted(run.quality["seed"].unique())) if "seed" in run.quality else "unknown"
    items = [
        ("suite", f"{get('suite')} ({get('suite_file')}, sha256 {str(get('suite_sha256'))[:12]})"),
        ("command", get("command")),
        (
            "device",
            f"{get('device_name')} ({get('device')}, {get('cpu_threads')} CPU threads)"
            + (
                f"; {env['trainings_at_once']} trainings at once, {env['threads_per_training']} thread(s) each"
                if env.get("trainings_at_once", 1) > 1
                else ""
            ),
        ),
        ("software", f"torch {get('torch')}, CUDA {get('cuda')}, Python {get('python')}, {get('platform')}"),
        ("git commit", get("git_commit")),
        ("time", f"{started} to {finished}: {_duration(env)}"),
        *_reuse(env, trained),
        ("profile", get("profile")),
        (
            "training",
            f"{get('train_resolution')}\u00d7{get('train_resolution')} px crops at scale "
            f"{_plain(first.get('scale', '?'))}, {_plain(first.get('steps', '?'))} steps, batch "
            f"{_plain(first.get('batch_size', '?'))}, lr {first.get('lr', '?')}{_schedule(first)}, weight average (EMA) "
            f"{_plain(first.get('ema', 0))}, seeds {seeds}",
        ),
        (
            "model",
            first.get("model_config")  # run folders from before models were chosen by name:
            or f"{first.get('bottleneck', '?')} bottleneck, latent {_plain(first.get('latent_dim', '?'))} numbers, "
            f"decoder from an 8\u00d78\u00d7{_plain(first.get('width', '?'))} map",
        ),
        (
            "data",
            f"{_plain(first.get('train_photos', '?'))} training photographs{_from(env, 'data_source')}; "
            f"{_plain(first.get('eval_crops', '?'))} evaluation crops of {_plain(first.get('eval_photos', '?'))} "
            f"held-out photographs{_from(env, 'eval_source')} "
            f"({', '.join(env.get('eval_photos', [])) or 'names not recorded'})"
            + (f"; image list SHA-256 {env['images_sha256'][:16]}..." if env.get("images_sha256") else ""),
        ),
        (
            "loss timing",
            "skipped"
            if timed is None
            else f"{timed.get('resolution')}\u00d7{timed.get('resolution')} px, batch {timed.get('batch_size')}, "
            f"{timed.get('variant')}, {timed.get('repeats')} repeats",
        ),
        ("loss networks", _loss_networks(run)),
        ("LPIPS metric", f"{first.get('lpips_net', '?')}, weights {first.get('lpips_weights', '?')}"),
        *([("DISTS metric", f"weights {first['dists_weights']}")] if pd.notna(first.get("dists_weights")) else []),
    ]
    rows = "\n".join(f"<tr><th>{_esc(key)}</th><td>{_esc(value)}</td></tr>" for key, value in items)
    return f"<table>\n{rows}\n</table>\n" + "\n".join(_warnings(run))


def _reuse(env: dict, trained: pd.DataFrame) -> list[tuple[str, str]]:
    """How many trainings came from the store of finished trainings (bench.results.store), as a summary row."""
    if "reused_from" not in trained:
        return []
    reused = int(trained["reused_from"].map(lambda value: isinstance(value, str) and bool(value)).sum())
    if not reused:
        return []
    sample = (
        "; on a GPU a reused training is a sample of the same settings, not bit for bit the one this run would train"
        if env.get("device_type") == "cuda"
        else "; on a CPU, bit for bit the trainings this run would have done"
    )
    return [
        (
            "reused",
            f"{reused} of {len(trained)} trainings reused from earlier runs (quality.csv's reused_from names each "
            f"one's key and run){sample}",
        )
    ]


def _schedule(row: pd.Series) -> str:
    """The first trained row's schedule, e.g. " (cosine decay to 0 after 60 warm-up steps)"; "" for runs from
    before schedules, all at a constant rate."""
    schedule = row.get("schedule")
    if not isinstance(schedule, str):
        return ""
    warm = f" after {_plain(row['warmup_steps'])} warm-up steps" if row.get("warmup_steps") else ""
    if schedule == "constant":
        return f" (constant{warm})"
    return f" ({schedule} decay to {_plain(row.get('final_lr', 0))}{warm})"


def _duration(env: dict) -> str:
    try:
        start, end = dt.datetime.fromisoformat(env["started"]), dt.datetime.fromisoformat(env["finished"])
    except (KeyError, TypeError, ValueError):
        return "duration unknown"
    wall = env.get("train_wall_seconds")
    trained = f" (training and evaluation {wall} s)" if wall is not None else ""
    return f"{(end - start).total_seconds():.0f} s{trained}"


def _weights_by_entry(run: Run) -> dict[str, str]:
    source = run.quality if "loss_weights" in run.quality else run.summary
    if "loss_weights" not in source:
        return {}
    return source.groupby("entry", sort=False)["loss_weights"].first().fillna("none").astype(str).to_dict()


def _from(env: dict, key: str) -> str:
    """ " from <source>" where the run recorded its data sources (runs before named datasets did not)."""
    return f" from {env[key]}" if env.get(key) else ""


def _loss_networks(run: Run) -> str:
    used = {entry: text for entry, text in _weights_by_entry(run).items() if text != "none"}
    text = "; ".join(f"{entry}: {text}" for entry, text in used.items()) or "no entry uses a pretrained network"
    precisions = run.quality.get("loss_networks", pd.Series(dtype=object)).dropna().unique()
    if used and len(precisions):
        text += f" (their forward in {', '.join(sorted(map(str, precisions)))}: train.loss_networks)"
    return text


def _timed_config_differs(run: Run) -> dict[str, tuple[str, str]]:
    """Entries whose loss settled its size-dependent settings (``loss_config``) one way for training and
    another for timing: {entry: (trained, timed)}."""
    if "loss_config" not in run.quality or run.speed.empty or "loss_config" not in run.speed:
        return {}
    config = lambda frame: (
        frame.groupby("entry", sort=False)["loss_config"].first().astype(object).fillna("").astype(str)
    )
    trained = config(run.quality[run.quality.get("kind", pd.Series("trained", run.quality.index)) != "baseline"])
    timed = config(run.speed)
    return {
        entry: (trained[entry] or "its defaults", timed[entry] or "its defaults")
        for entry in trained.index
        if entry in timed.index and trained[entry] != timed[entry]
    }


def _warnings(run: Run) -> list[str]:
    boxes = []
    train_px, timing_px = run.env.get("train_resolution"), run.env.get("timing_resolution")
    if not run.speed.empty and train_px != timing_px:
        boxes.append(
            f"losses were timed at {timing_px} px but trained at {train_px} px: the ms columns are the "
            f"cost of each loss at {timing_px} px, not its cost in this training."
        )
    if differs := _timed_config_differs(run):
        boxes.append(
            "these losses chose settings for the image size, so the timed loss is not the one trained: "
            + "; ".join(
                f"{entry} trained with {trained}, timed with {timed}" for entry, (trained, timed) in differs.items()
            )
            + "."
        )
    random: dict[str, list[str]] = {}
    for entry, text in _weights_by_entry(run).items():
        for part in text.split(";"):
            network, _, source = part.strip().partition("=")
            if source == "random":
                random.setdefault(network, []).append(entry)
    for network, entries in random.items():
        boxes.append(
            f"{network} used random weights (entries: {', '.join(entries)}): ImageNet weights were not "
            "found, so this loss compared features of a randomly initialised network and its results do "
            "not represent the pretrained loss. Put the weights file where the run's warning says and rerun."
        )
    if "lpips_weights" in run.quality and (run.quality["lpips_weights"] == "random").any():
        boxes.append(
            "the LPIPS metric used random weights: ImageNet weights were not found, so LPIPS ranks entries "
            "within this run only and is not comparable with published LPIPS values."
        )
    html_boxes = [f'<div class="box warn">\u26a0 {_esc(text)}</div>' for text in boxes]
    if "status" in run.quality and (run.quality["status"] != "ok").any():
        html_boxes.append(_failures(run.quality[run.quality["status"] != "ok"]))
    return html_boxes


def _failures(failed: pd.DataFrame) -> str:
    """One line per entry, step and reason, naming its seeds: seeds usually fail alike."""
    failed = failed.reindex(columns=["entry", "seed", "failed_step", "error"])
    step = failed["failed_step"].map(lambda s: f"at step {int(s)}" if pd.notna(s) else "(step unknown)")
    failed = failed.assign(step=step, reason=failed["error"].fillna("no reason recorded").astype(str))
    items = "".join(
        f"<li><b>{_esc(entry)}</b> seed {_esc(', '.join(str(s) for s in group['seed']))}: failed {_esc(step)}: "
        f"{_esc(reason)}</li>"
        for (entry, step, reason), group in failed.groupby(["entry", "step", "reason"], sort=False)
    )
    return f'<div class="box fail" id="failures">{len(failed)} training(s) failed:<ul>{items}</ul></div>'


def _reconstructions(run: Run, order: list[str], palette: dict) -> str:
    rows, zoom = plots.reconstruction_strips(run, order)
    if not rows:
        return '<p class="note">no reconstructions/original__*px.png in the run folder</p>'
    shown = min(plots.GRID_CROPS, run.env.get("eval_crops", plots.GRID_CROPS))
    caption = (
        f"The first {shown} held-out crops (from photographs never trained on; the evaluation uses all "
        f"{run.env.get('eval_crops', 'of them')})"
        + (
            f"; right: their centre crops (a quarter of the width) enlarged \u00d7{zoom:.0f} with nearest neighbour"
            if zoom
            else ", enlarged with nearest neighbour"
        )
        + ". Each entry shows its lowest seed; baselines need no training."
    )
    learned = run.summary.set_index("entry")["learned"] if "learned" in run.summary else pd.Series(dtype=object)
    cells = []
    for name, seed, strip in rows:
        title = _swatch(name, palette) + (f'<br><span class="note">seed {seed}</span>' if seed is not None else "")
        if _flag(learned.get(name)) is False:
            title += '<br><span class="badge dnl">did not learn</span>'

        image = (
            f'<img class="strip" alt="{_esc(name)}" src="{strip}">'
            if strip
            else '<span class="note">no reconstruction PNG: the training failed, or the file is missing</span>'
        )
        cells.append(f"<tr><th>{title}</th><td>{image}</td></tr>")
    return f'<p class="note">{_esc(caption)}</p>\n<table>\n' + "\n".join(cells) + "\n</table>"
