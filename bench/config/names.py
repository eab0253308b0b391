"""Names from a suite that become file names, so that no suite value can point a file outside the run folder.

A suite's ``name`` becomes a folder under ``--out`` and must already be a plain file name (checked when the
suite is parsed). An entry's ``name`` may be almost any text, because it is what tables and the report show;
its files (reconstructions, checkpoints, tracebacks) are named by ``file_stem``, which maps it to letters,
digits, ``-``, ``_`` and ``.`` and appends a hash of the original name whenever the mapping changed anything,
so that two names that differ stay apart. The tables keep the original name.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from bench.errors import BenchInputError

MAX_NAME = 100  # characters of a suite name; file systems allow 255 bytes and a run folder adds a timestamp
MAX_STEM = 60  # characters of an entry's file stem before its hash; "__seed<N>.png" and the hash fit in 255
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Names that Windows reserves for devices in any folder: a file "CON.png" cannot be created there.
WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def check_suite_name(name: str, *, where: str) -> str:
    """``name`` as a folder name under ``--out``, or a BenchInputError: letters, digits, '-', '_' and '.',
    not only dots (``..`` would put the run beside ``--out``), at most MAX_NAME characters."""
    fix = 'it becomes a folder under --out; use e.g. name = "my-suite"'
    if not name or UNSAFE.search(name):
        raise BenchInputError(
            f"suite name {name!r} must be non-empty letters, digits, '-', '_' or '.'", where=where, fix=fix
        )
    if set(name) == {"."}:
        raise BenchInputError(f"suite name {name!r} is a folder reference, not a name", where=where, fix=fix)
    if len(name) > MAX_NAME or name.split(".")[0].upper() in WINDOWS_DEVICES:
        raise BenchInputError(f"suite name {name!r} cannot be a folder name on every system", where=where, fix=fix)
    return name


def check_entry_name(name: str, *, where: str) -> str:
    """Entry names are shown in tables, the console and the report: no control or invisible format
    characters (a newline would split a console line, a right-to-left mark would reorder it)."""
    hidden = [character for character in name if unicodedata.category(character).startswith("C")]
    if hidden:
        raise BenchInputError(
            f"entry name {name!r} contains control or invisible characters {hidden!r}",
            where=where,
            fix="use printable characters only",
        )
    return name


def file_stem(name: str) -> str:
    """The part of a file name that stands for an entry: ``name`` itself where it is already a plain, short,
    portable file name, else its safe characters without dots (at most MAX_STEM; Windows reads "nul.txt" as
    the device NUL) plus 8 hex digits of its SHA-256."""
    stem = UNSAFE.sub("_", name).strip(".")[:MAX_STEM]
    if stem == name and stem.split(".")[0].upper() not in WINDOWS_DEVICES:
        return name
    return f"{stem.replace('.', '_') or 'entry'}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"


def check_distinct_stems(names: list[str], *, where: str) -> None:
    """Entries whose files would share a name, also on a case-insensitive file system (macOS, Windows)."""
    seen: dict[str, str] = {}
    for name in names:
        key = file_stem(name).casefold()
        if key in seen:
            raise BenchInputError(
                f"entry names {seen[key]!r} and {name!r} would share the file name "
                f"{file_stem(name)!r} (letter case does not count on macOS and Windows)",
                where=where,
                fix="rename one of them",
            )
        seen[key] = name


def entry_file(entry: str, seed: int, suffix: str) -> str:
    """The file name of one training's file, e.g. ``mse__seed0.png``."""
    return f"{file_stem(entry)}__seed{seed}{suffix}"
