"""The store of finished trainings: one folder per content key (``bench.results.keys``), and an SQLite index.

Layout of a store (by default ``$XDG_CACHE_HOME/lossbench``, else ``~/.cache/lossbench``; ``--store DIR`` or
``LOSSBENCH_STORE`` move it)::

    index.sqlite                 one row per stored training: key, suite, entry, seed, settings, created, size, run
    trainings/<key>/             one finished training, written whole or not at all
        key.json                 the format, the key and every setting it was made from
        quality.json             its quality.csv row, history.json, per_image.json: its rows, as JSON
        reconstructions.png      its held-out reconstructions, as the run folder holds them
    tmp/                         folders being written (renamed into trainings/ when whole)

A training's folder is written under ``tmp/`` and renamed into place in one step, so a reader sees it whole or
not at all, and two runs storing the same key at once both succeed (the second finds it there and drops its
copy). The folders are the truth; the index (WAL mode, so readers never wait for a writer) lists them for
``bench store list`` and ``prune``. A folder that is partial, corrupt or of another format is a miss: the run
warns, trains again and replaces it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import sqlite3
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from bench.errors import BenchInputError
from bench.results.keys import FORMAT, TrainingKey

ENV = "LOSSBENCH_STORE"
FILES = ("key.json", "quality.json", "history.json", "per_image.json")
PNG = "reconstructions.png"
SCHEMA = """
CREATE TABLE IF NOT EXISTS trainings (
    key TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    entry TEXT NOT NULL,
    seed INTEGER NOT NULL,
    settings TEXT NOT NULL,
    created TEXT NOT NULL,
    size INTEGER NOT NULL,
    source_run TEXT NOT NULL
)
"""


class StoreWarning(UserWarning):
    """A store folder that could not be used (partial, corrupt, another format): its training runs again."""


def default_root() -> Path:
    """``$LOSSBENCH_STORE``, else ``$XDG_CACHE_HOME/lossbench``, else ``~/.cache/lossbench``."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "lossbench"


@dataclass
class StoredTraining:
    """One stored training, as the run folder needs it."""

    key: str
    row: dict
    history: list[dict]
    per_image: list[dict]
    png: bytes | None
    source_run: str
    created: str


@dataclass(frozen=True)
class Listed:
    key: str
    suite: str
    entry: str
    seed: int
    settings: str
    created: str
    size: int
    source_run: str


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()
        self.trainings = self.root / "trainings"
        self.tmp = self.root / "tmp"
        try:
            self.trainings.mkdir(parents=True, exist_ok=True)
            self.tmp.mkdir(parents=True, exist_ok=True)
            with self._index() as db:
                db.execute(SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise BenchInputError(
                f"cannot use the store of finished trainings: {error}",
                where=str(self.root),
                fix="pass a writable folder with --store DIR (or LOSSBENCH_STORE), or --no-store",
            ) from None

    @contextlib.contextmanager
    def _index(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.root / "index.sqlite", timeout=60, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=60000")
            yield db
        finally:
            db.close()

    def folder(self, key: str) -> Path:
        return self.trainings / key

    def get(self, key: TrainingKey) -> StoredTraining | None:
        """The stored training of ``key``; None if there is none, or (with a ``StoreWarning``) if its folder is
        partial, corrupt or of another format."""
        folder = self.folder(key.sha256)
        if not folder.exists():
            return None
        try:
            meta = json.loads((folder / "key.json").read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, this LossBench reads format {FORMAT}")
            if meta.get("key") != key.sha256:
                raise ValueError("its key.json names another key")
            row = json.loads((folder / "quality.json").read_text(encoding="utf-8"))
            history = json.loads((folder / "history.json").read_text(encoding="utf-8"))
            per_image = json.loads((folder / "per_image.json").read_text(encoding="utf-8"))
            if not isinstance(row, dict) or row.get("status") != "ok":
                raise ValueError("its quality row is not a finished training's")
            if not isinstance(history, list) or not isinstance(per_image, list):
                raise ValueError("its history or per-image rows are not lists")
            png = (folder / PNG).read_bytes() if meta.get("png") else None
            if png is not None and not png.startswith(b"\x89PNG"):
                raise ValueError(f"{PNG} is not a PNG file")
        except (OSError, ValueError, TypeError, AttributeError) as error:
            warnings.warn(
                f"the store's folder {folder} cannot be used ({type(error).__name__}: {error}); training again",
                StoreWarning,
                stacklevel=2,
            )
            return None
        return StoredTraining(
            key.sha256, row, history, per_image, png, meta.get("source_run", ""), meta.get("created", "")
        )

    def put(
        self,
        key: TrainingKey,
        *,
        suite: str,
        row: dict,
        history: list[dict],
        per_image: list[dict],
        png: bytes | None,
        source_run: str,
        replace: bool = False,
    ) -> bool:
        """Stores one finished training (status ok) under ``key``, atomically; False if it was there already
        (another run stored it first; ``replace``: this one takes its place) or if the store cannot be written
        (a warning says why; the run goes on)."""
        if row.get("status") != "ok":
            raise ValueError("only finished trainings are stored")
        target = self.folder(key.sha256)
        if not replace and target.is_dir() and self._readable(key):
            return False
        created = dt.datetime.now().isoformat(timespec="seconds")
        meta = {
            "format": FORMAT,
            "key": key.sha256,
            "suite": suite,
            "entry": row["entry"],
            "seed": row["seed"],
            "created": created,
            "source_run": source_run,
            "png": png is not None,
            "contents": key.contents,
        }
        try:
            temp = Path(tempfile.mkdtemp(prefix=f"{key.sha256[:12]}.", dir=self.tmp))
            try:
                for name, value in (("quality.json", row), ("history.json", history), ("per_image.json", per_image)):
                    _write(temp / name, json.dumps(value, default=_json_default).encode())
                if png is not None:
                    _write(temp / PNG, png)
                _write(temp / "key.json", json.dumps(meta, indent=1).encode())  # last: the folder is whole
                size = sum(path.stat().st_size for path in temp.iterdir())
                if target.exists():  # a folder that could not be read (or is replaced): set aside
                    self._discard(target)
                try:
                    os.rename(temp, target)
                except OSError:  # another run stored this key meanwhile: same training, keep theirs
                    shutil.rmtree(temp, ignore_errors=True)
                    return False
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
            settings = _settings(key.contents)
            with self._index() as db:
                db.execute(
                    "INSERT OR REPLACE INTO trainings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key.sha256, suite, row["entry"], int(row["seed"]), settings, created, size, source_run),
                )
        except (OSError, sqlite3.Error) as error:
            warnings.warn(f"could not store a training in {self.root}: {error}", StoreWarning, stacklevel=2)
            return False
        return True

    def _readable(self, key: TrainingKey) -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StoreWarning)
            return self.get(key) is not None

    def _discard(self, folder: Path) -> None:
        aside = self.tmp / f"discard-{folder.name}-{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(OSError):
            os.rename(folder, aside)
            shutil.rmtree(aside, ignore_errors=True)

    def listed(self, suite: str | None = None, entry: str | None = None) -> list[Listed]:
        where, values = [], []
        for column, value in (("suite", suite), ("entry", entry)):
            if value is not None:
                where.append(f"{column} = ?")
                values.append(value)
        query = "SELECT * FROM trainings" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._index() as db:
            rows = db.execute(query + " ORDER BY created, suite, entry, seed", values).fetchall()
        return [Listed(*row) for row in rows]

    def size(self) -> tuple[int, int]:
        """(trainings, bytes) in the index."""
        with self._index() as db:
            count, total = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM trainings").fetchone()
        return int(count), int(total)

    def remove(self, keys: list[str]) -> None:
        for key in keys:
            self._discard(self.folder(key))
        with self._index() as db:
            db.executemany("DELETE FROM trainings WHERE key = ?", [(key,) for key in keys])

    def prune(self, older_than_days: float | None = None, max_size: int | None = None) -> list[Listed]:
        """Removes the trainings stored more than ``older_than_days`` ago, then the oldest ones until the store
        holds at most ``max_size`` bytes; returns what it removed."""
        listed = self.listed()  # oldest first
        gone: list[Listed] = []
        if older_than_days is not None:
            cutoff = dt.datetime.now() - dt.timedelta(days=older_than_days)
            gone = [item for item in listed if dt.datetime.fromisoformat(item.created) < cutoff]
        if max_size is not None:
            kept = [item for item in listed if item not in gone]
            total = sum(item.size for item in kept)
            for item in kept:
                if total <= max_size:
                    break
                gone.append(item)
                total -= item.size
        self.remove([item.key for item in gone])
        return gone

    def clear(self) -> int:
        count, _ = self.size()
        for folder in list(self.trainings.iterdir()):
            self._discard(folder)
        with self._index() as db:
            db.execute("DELETE FROM trainings")
        return count

    def size_line(self) -> str:
        count, total = self.size()
        return f"store: {trainings(count)}, {human_size(total)} in {self.root}"


def _write(path: Path, content: bytes) -> None:
    with open(path, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())


def _json_default(value):
    """numpy scalars as the Python numbers they hold (the same value, bit for bit)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not plain data")


def _settings(contents: dict) -> str:
    """A one-line summary of a key's settings, for ``bench store list``."""
    data, train, device = contents.get("data", {}), contents.get("train", {}), contents.get("device", {})
    return (
        f"{contents.get('task', '?')}, {data.get('resolution', '?')}px, {train.get('steps', '?')} steps, "
        f"batch {train.get('batch_size', '?')}, lr {train.get('lr', '?')}, {device.get('type', '?')} "
        f"({contents.get('threads', '?')} threads), torch {contents.get('torch', '?')}"
    )


UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30}


def parse_size(text: str) -> int:
    """``500M``, ``2G``, ``1024`` -> bytes."""
    value = text.strip().upper()
    number = value.rstrip("KMGB")
    unit = value[len(number) :]
    try:
        return int(float(number) * UNITS[unit])
    except (ValueError, KeyError):
        raise BenchInputError(
            f"not a size: {text!r}", where="--max-size", fix="e.g. --max-size 500M or --max-size 2G"
        ) from None


def trainings(count: int) -> str:
    return f"{count} training{'' if count == 1 else 's'}"


def human_size(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def open_store(store: str | Path | None | bool = None) -> Store | None:
    """``False``: no store; ``None``/``True``: the default (``default_root``); a path: that folder."""
    if store is False:
        return None
    return Store(default_root() if store in (None, True) else Path(store))
