"""Render report.html to a PNG with headless Chromium: a check that the page really displays offline."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench.errors import BenchInputError

BROWSERS = ("chromium", "chromium-browser")


def find_chromium() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(html_path: Path, png_path: Path, width: int = 1400, height: int = 12000, timeout_s: float = 120) -> Path:
    """Screenshot ``html_path`` at ``width`` px into ``png_path``, trimmed to the page's content.

    Headless Chromium cannot size the window to the page, so it renders a window ``height`` px tall
    (raise it for very long reports) and the empty space below the content is cropped off.
    """
    browser = find_chromium()
    if browser is None:
        raise BenchInputError(
            "Chromium was not found on PATH (looked for chromium, chromium-browser)",
            where="screenshot",
            fix="install it, e.g. apt-get install -y chromium",
        )
    html_path, png_path = Path(html_path).resolve(), Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={png_path}",
            f"--window-size={width},{height}",
            html_path.as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if not png_path.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    _trim_bottom(png_path)
    return png_path


def _trim_bottom(png_path: Path, margin: int = 24) -> None:
    with Image.open(png_path) as image:
        image = image.convert("RGB")
    pixels = np.asarray(image)
    differs = (pixels != pixels[-1:, :, :]).any(axis=(1, 2))  # rows unlike the bottom (background) row
    last = int(np.flatnonzero(differs)[-1]) if differs.any() else 0
    if last + margin < image.height:
        image.crop((0, 0, image.width, last + margin)).save(png_path)
