"""recovery.html: the reference-recovery diagnostic as one self-contained page (inline CSS and PNG data URIs, no
script, no URL), and how a run's report finds the newest recovery of its suite to link to."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from bench.evaluate.recover import RISE_DB, Recovery, RecoverySettings
from bench.report.html import CSS, _esc, _number
from bench.report.plots import png_uri
from bench.results import read_table, task_folders

PAGE = "recovery.html"
FOLDER = "recover"  # results/<suite>/recover/<timestamp>/, beside the suite's run folders
# Pictures are shown this many pixels wide: smaller ones enlarged (nearest neighbour) so their pixels can be seen,
# larger ones shrunk (box filter) so that a page of 256 px recoveries stays a few megabytes.
SHOWN_SIDE = 128


def anchor(position: int) -> str:
    """The page id of the entry at ``position`` in recovery.csv's order (entry names may hold any character)."""
    return f"entry-{position}"


def newest_recovery(run_folder: Path) -> tuple[Path, pd.DataFrame] | None:
    """The newest recovery folder of the suite ``run_folder`` belongs to, with its table; None if there is none."""
    suite_folder = run_folder.parent
    if task_folders(run_folder.parent).get(run_folder.name) == run_folder:  # one task of a run of several
        suite_folder = suite_folder.parent
    folders = sorted((suite_folder / FOLDER).glob(f"*/{PAGE}"))
    if not folders:
        return None
    return folders[-1].parent, read_table(folders[-1].parent, "recovery")


def _recovered(row: pd.Series) -> bool:
    return pd.notna(row["recovered"]) and bool(row["recovered"])


def _strip(images: list[torch.Tensor]) -> str:
    """Images (3 x H x W, [0, 1]) side by side, each shown SHOWN_SIDE px wide, as a PNG data URI."""
    row = torch.cat([image.clamp(0, 1) for image in images], dim=-1)
    pixels = (row.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    picture = Image.fromarray(np.ascontiguousarray(pixels))
    side = images[0].shape[-1]
    if side < SHOWN_SIDE:
        factor = SHOWN_SIDE // side
        picture = picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)
    elif side > SHOWN_SIDE:
        picture = picture.resize((SHOWN_SIDE * len(images), SHOWN_SIDE), Image.BOX)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return png_uri(buffer.getvalue())


def render(suite_name: str, table: pd.DataFrame, recoveries: list[Recovery], settings: RecoverySettings) -> str:
    sections = []
    for position, (entry, rows) in enumerate(table.groupby("entry", sort=False)):
        recovery = next(r for r in recoveries if r.rows and r.rows[0]["entry"] == entry)
        lines = []
        for _, row in rows.iterrows():
            if not row["start"]:
                lines.append(f'<p class="box fail">could not build the loss: {_esc(row["error"])}</p>')
                continue
            verdict = (
                '<span class="badge base">recovered</span>'
                if _recovered(row)
                else '<span class="badge dnl">failed</span>'
            )
            scores = (
                f"PSNR {_number(row['psnr_start'])} \u2192 {_number(row['psnr_final'])} dB, SSIM "
                f"{_number(row['ssim_start'])} \u2192 {_number(row['ssim_final'])}, loss "
                f"{_number(row['loss_start'])} \u2192 {_number(row['loss_final'])}"
            )
            error = f'<br><span class="note">{_esc(row["error"])}</span>' if row["error"] else ""
            picture = ""
            if row["start"] in recovery.pictures:
                starts, results = recovery.pictures[row["start"]]
                strips = [_strip([s, r, ref]) for s, r, ref in zip(starts, results, recovery.references)]
                picture = "".join(f'<img class="strip" alt="{_esc(row["start"])}" src="{uri}"><br>' for uri in strips)
            lines.append(
                f"<tr><th>{_esc(row['start'])}</th><td>{verdict}<br>{scores}{error}</td><td>{picture}</td></tr>"
            )
        side = int(rows["side"].iloc[0])
        sections.append(
            f'<section id="{anchor(position)}">\n<h2>{_esc(entry)} at {side}\u00d7{side} px</h2>\n'
            f"<table><tr><th>start</th><th>result</th><th>start | result | reference</th></tr>"
            + "\n".join(lines)
            + "</table>\n</section>"
        )
    how = (
        f"Each loss is minimised over the pixels alone (Adam from lr {settings.lr:g}, cosine decay to "
        f"{settings.lr * settings.final_lr_fraction:g}, {settings.steps} steps, pixels clamped to [0, 1]) toward "
        f"held-out photographs never trained on, from white noise, a Gaussian blur (sigma "
        f"{settings.blur_sigma:g} px) and a JPEG (quality {settings.jpeg_quality}) of the reference, at the "
        f"loss's design size (the suite's resolution where it states none). Recovered: final PSNR at least "
        f"{settings.recovered_db:g} dB and {RISE_DB:g} dB above the start's."
    )
    title = f"LossBench reference recovery: {suite_name}"
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_esc(title)}</title>\n'
        f'<style>{CSS}</style>\n</head>\n<body>\n<h1>{_esc(title)}</h1>\n<p class="note">{_esc(stamp)}. '
        f"{_esc(how)}</p>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )
