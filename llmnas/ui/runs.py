"""Finding runs under a folder and naming them by id, for the web explorer.

A run is any folder holding a store (``run.sqlite``). Each run gets an id made from its path
relative to the root (``bench/llm-0`` becomes ``bench--llm-0``); requests name runs only by
these ids, which are looked up in the index, so no path from a request is ever opened. The
index rescans the folder at most every ``rescan_s`` seconds, so runs started after the explorer
appear without a restart.

Derived data (archive, aggregates) is cached per run and recomputed only when the store's files
change (their sizes and modification times), which keeps a live run's pages cheap to poll.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from llmnas.store import DB_NAME, RunStore

__all__ = ["RunIndex", "UnknownRun"]

T = TypeVar("T")
_CACHE_ENTRIES = 256
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


class UnknownRun(KeyError):
    """No run with this id under the explorer's folder."""


def _slug(relative: Path) -> str:
    text = "--".join(_SLUG.sub("-", part) for part in relative.parts) or "run"
    return text.strip("-") or "run"


class RunIndex:
    """The runs under ``root``, by id; thread-safe."""

    def __init__(self, root: str | Path, *, rescan_s: float = 2.0) -> None:
        self.root = Path(root).resolve()
        self.rescan_s = rescan_s
        self._runs: dict[str, Path] = {}
        self._scanned = 0.0
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[tuple[int, ...], Any]] = {}

    def _scan(self) -> dict[str, Path]:
        found: list[Path] = []
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if DB_NAME in files:
                found.append(Path(folder))
        runs: dict[str, Path] = {}
        for path in sorted(found):
            rid = base = _slug(path.relative_to(self.root))
            n = 2
            while rid in runs:
                rid, n = f"{base}-{n}", n + 1
            runs[rid] = path
        return runs

    def runs(self) -> dict[str, Path]:
        """``{id: run folder}``, rescanned when the last scan is older than ``rescan_s``."""
        with self._lock:
            if time.monotonic() - self._scanned > self.rescan_s:
                self._runs = self._scan()
                self._scanned = time.monotonic()
            return dict(self._runs)

    def path(self, run_id: str) -> Path:
        """The folder of run ``run_id``; :class:`UnknownRun` when there is none."""
        runs = self.runs()
        if run_id not in runs:
            with self._lock:  # a run that appeared since the last scan
                self._runs, self._scanned = self._scan(), time.monotonic()
                runs = dict(self._runs)
        if run_id not in runs:
            raise UnknownRun(run_id)
        return runs[run_id]

    def name(self, run_id: str) -> str:
        """The run's folder relative to the root, for display."""
        return str(self.path(run_id).relative_to(self.root)) or "."

    @contextmanager
    def open(self, run_id: str) -> Iterator[RunStore]:
        """The run's store, opened read-only for the duration of a request."""
        store = RunStore.open(self.path(run_id), read_only=True)
        try:
            yield store
        finally:
            store.close()

    def version(self, run_id: str) -> tuple[int, ...]:
        """Sizes and modification times of the store's files: changes whenever it is written."""
        db = self.path(run_id) / DB_NAME
        out: list[int] = []
        for path in (db, db.with_name(DB_NAME + "-wal")):
            try:
                st = path.stat()
                out += [st.st_size, st.st_mtime_ns]
            except FileNotFoundError:
                out += [0, 0]
        return tuple(out)

    def cached(self, run_id: str, what: str, compute: Callable[[RunStore], T]) -> T:
        """``compute(store)`` for this run, reused while the store's files are unchanged."""
        version = self.version(run_id)
        key = (run_id, what)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        with self.open(run_id) as store:
            value = compute(store)
        with self._lock:
            self._cache.pop(key, None)
            self._cache[key] = (version, value)
            while len(self._cache) > _CACHE_ENTRIES:  # drop the oldest entries
                self._cache.pop(next(iter(self._cache)))
        return value
