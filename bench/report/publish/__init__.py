"""``bench publish``: one static leaderboard site from many run folders, suites and machines.

The site is plain files (HTML pages, one stylesheet, one small script, seaborn PNGs and each run's own
report.html): it opens from ``file://`` and from any static server, needs no network, and the same run folders
give the same files. Nothing here trains or times anything; it reads run folders as ``bench report`` does.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchInputError
from bench.report.publish.runs import PublishedRun, Setting, find_runs

MARKER = ".lossbench-site"  # a folder holding it was written by publish, and may be replaced by it


@dataclass
class Site:
    folder: Path
    files: list[str]  # paths under folder, sorted
    bytes: int
    runs: list[PublishedRun]
    leaderboards: list[Setting]

    def size_line(self) -> str:
        return f"site: {len(self.files)} files, {self.bytes / 1e6:.1f} MB in {self.folder}"


def publish(paths: list[Path], out: Path) -> Site:
    """Build the site from the run folders at or below ``paths`` into ``out`` (emptied first where it is a site
    this command wrote; any other non-empty folder is refused)."""
    from bench.report.publish.pages import build

    out = Path(out)
    runs = find_runs([Path(p) for p in paths])
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise BenchInputError(
            "the output folder exists and was not written by bench publish",
            where=str(out),
            fix="give a new or empty folder (or a site folder from an earlier bench publish, which is replaced)",
        )
    files = build(runs)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by python -m bench publish; the whole folder is replaced on the next\n")
    size = 0
    for name, content in files.items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        size += len(data)
    return Site(out, list(files), size, runs, sorted({run.setting for run in runs}))


__all__ = ["MARKER", "PublishedRun", "Setting", "Site", "find_runs", "publish"]
