"""The durable run store: one SQLite file per run (``<run_dir>/run.sqlite``).

Tables: ``candidates`` (every evaluated proposal, in commit order; ``id`` is the candidate id
used everywhere), ``llm_calls`` (every LLM call, linked to its candidate, so a run can be
replayed), ``config`` (resolved config, library versions, hardware, seeds), ``state`` (JSON
blobs by key: RNG and strategy state), ``pending`` (accepted proposals not yet evaluated, which
a resumed run re-queues) and ``meta`` (``schema_version``).

Every write is one transaction. WAL mode with ``synchronous=NORMAL`` (the default) keeps every
commit across a crash or ``kill -9`` of the writer; ``synchronous="FULL"`` also survives an OS
crash or power cut, at a higher insert cost (see ``benchmarks/store.py``).

Threading: a :class:`RunStore` belongs to the thread that opened it (the loop's thread); the
connection refuses other threads. Other processes may read a live run at any time
(``RunStore.open(run_dir, read_only=True)``); WAL readers never block the writer.
"""

from __future__ import annotations

import gc
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from llmnas.records import Candidate, EvalResult, Proposal
from llmnas.store_schema import (
    _CALL_COLUMNS,
    _CALL_FIELDS,
    _CALL_JSON,
    _MIGRATIONS,
    _SCHEMA,
    _SUMMARY_SQL,
    CANDIDATE_COLUMNS,
    Summary,
    _dumps,
    _environment,
    _row_to_candidate,
    _rows_to_summaries,
)

__all__ = ["DB_NAME", "SCHEMA_VERSION", "RunStore", "StoreError", "Summary"]

DB_NAME = "run.sqlite"
"""File name of the store inside a run directory."""

SCHEMA_VERSION = 2
"""Bumped on every schema change; newer stores are refused with a clear error, older ones are
migrated when opened for writing (version 2 added the ``repeats`` table)."""


class StoreError(Exception):
    """Bad user input about a run store (missing, exists, too new); the message is one line."""


def _connect(path: Path, *, read_only: bool, synchronous: str) -> sqlite3.Connection:
    if read_only:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    else:
        conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=5000")
    if not read_only:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
    return conn


class RunStore:
    """SQLite-backed store of one run. Build with :meth:`create` or :meth:`open`."""

    def __init__(self, *, conn: sqlite3.Connection, run_dir: Path, read_only: bool) -> None:
        self._conn = conn
        self.run_dir = run_dir
        self.read_only = read_only
        self.schema_version = SCHEMA_VERSION

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(
        cls,
        run_dir: str | Path,
        *,
        config: dict[str, Any],
        seeds: dict[str, Any] | None = None,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> RunStore:
        """Create a new run directory and its store; raise :class:`StoreError` if it exists."""
        run_dir = Path(run_dir)
        path = run_dir / DB_NAME
        if path.exists():
            raise StoreError(f"run store already exists: {path} (use `llmnas resume {run_dir}`)")
        rows = {"config": config, "seeds": seeds or {}, **_environment()}
        encoded = [(k, _dumps(v)) for k, v in rows.items()]  # fail before creating anything
        run_dir.mkdir(parents=True, exist_ok=True)
        conn = _connect(path, read_only=False, synchronous=synchronous)
        store = cls(conn=conn, run_dir=run_dir, read_only=False)
        with store._tx():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.executemany("INSERT INTO config(key, value) VALUES (?, ?)", encoded)
        return store

    @classmethod
    def open(
        cls,
        run_dir: str | Path,
        *,
        read_only: bool = False,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> RunStore:
        """Open an existing run; raise :class:`StoreError` if missing, corrupt or too new."""
        run_dir = Path(run_dir)
        path = run_dir / DB_NAME
        if not run_dir.is_dir():
            raise StoreError(f"no such run directory: {run_dir}")
        if not path.is_file():
            raise StoreError(f"not a run directory (no {DB_NAME}): {run_dir}")
        try:
            conn = _connect(path, read_only=read_only, synchronous=synchronous)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read run store {path}: {exc}") from None
        if row is None:
            conn.close()
            raise StoreError(f"run store {path} has no schema version; it is not an llmnas run")
        version = int(row[0])
        if version > SCHEMA_VERSION:
            conn.close()
            raise StoreError(
                f"run store {path} has schema version {version}, newer than this llmnas "
                f"supports ({SCHEMA_VERSION}); upgrade llmnas to open it"
            )
        store = cls(conn=conn, run_dir=run_dir, read_only=read_only)
        if version < SCHEMA_VERSION and not read_only:
            with store._tx():
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    conn.execute(_MIGRATIONS[target])
                conn.execute(
                    "UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),)
                )
        store.schema_version = SCHEMA_VERSION if not read_only else version
        return store

    def close(self) -> None:
        """Close the connection (checkpoints the WAL into the main file)."""
        self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one ``SELECT`` (for read-only inspection tools such as ``llmnas ui``)."""
        if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
            raise ValueError(f"query() runs a SELECT only; got {sql.split(None, 1)[0]!r}")
        return self._conn.execute(sql, tuple(args)).fetchall()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on error."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @property
    def path(self) -> Path:
        return self.run_dir / DB_NAME

    # ------------------------------------------------------------------ candidates

    def add_candidate(
        self,
        *,
        source: str,
        operator: str,
        result: EvalResult,
        hash: str = "",
        parent_ids: Sequence[int] = (),
        meta: dict[str, Any] | None = None,
        descriptors: dict[str, float] | None = None,
        generation: int = 0,
        device: str | None = None,
        pending_id: int | None = None,
    ) -> Candidate:
        """Commit one evaluated candidate in a single transaction and return it with its id.

        A proposal's fields fit the keywords: ``add_candidate(**proposal.model_dump(), ...)``.

        ``device`` is kept in its own column and in ``meta["device"]``. ``pending_id`` removes
        that pending proposal in the same transaction. Ids in ``meta["llm_call_ids"]`` link
        those recorded LLM calls to the new candidate.
        """
        meta = dict(meta or {})
        if device is not None:
            meta["device"] = device
        failure = result.failure
        now = time.time()
        failure_cols = (None, None, None) if failure is None else (
            failure.kind.value, failure.message, failure.stage)  # fmt: skip
        values = (
            generation, operator, _dumps(list(parent_ids)), source, hash, result.status.value,
            *failure_cols, _dumps(result.metrics), _dumps(result.proxies),
            _dumps(result.proxy_notes), _dumps(descriptors or {}), _dumps(result.timings),
            _dumps(meta), meta.get("device"), now,
        )  # fmt: skip
        marks = ", ".join("?" * len(values))
        with self._tx():
            cur = self._conn.execute(
                f"INSERT INTO candidates({', '.join(CANDIDATE_COLUMNS[1:])}) VALUES ({marks})",
                values,
            )
            new_id = int(cur.lastrowid)
            if pending_id is not None:
                self._conn.execute("DELETE FROM pending WHERE id=?", (pending_id,))
            call_ids = meta.get("llm_call_ids") or []
            if call_ids:
                self._conn.executemany(
                    "UPDATE llm_calls SET candidate_id=? WHERE id=?",
                    [(new_id, int(c)) for c in call_ids],
                )
        return Candidate(
            id=new_id,
            generation=generation,
            source=source,
            operator=operator,
            parent_ids=list(parent_ids),
            hash=hash,
            result=result,
            descriptors=dict(descriptors or {}),
            meta=meta,
            created_at=now,
        )

    def _select(
        self, where: str = "", args: tuple[Any, ...] = (), limit: str = ""
    ) -> list[Candidate]:
        sql = f"SELECT {', '.join(CANDIDATE_COLUMNS)} FROM candidates {where} ORDER BY id {limit}"
        return [_row_to_candidate(r) for r in self._conn.execute(sql, args)]

    def candidates(self, status: str | None = None) -> list[Candidate]:
        """All candidates (optionally of one status: ``ok``, ``failed``, ``rejected``), by id."""
        if status is None:
            return self._select()
        return self._select("WHERE status=?", (str(status),))

    def get(self, candidate_id: int) -> Candidate:
        """The candidate with this id; :class:`StoreError` if there is none."""
        found = self._select("WHERE id=?", (int(candidate_id),))
        if not found:
            raise StoreError(f"no candidate with id {candidate_id} in {self.path}")
        return found[0]

    def find_hash(self, hash: str) -> Candidate | None:
        """The first candidate with this normalised-source hash, or ``None``."""
        found = self._select("WHERE hash=?", (hash,), "LIMIT 1") if hash else []
        return found[0] if found else None

    def count(self, status: str | None = None) -> int:
        """Number of candidates (optionally of one status)."""
        if status is None:
            return int(self._conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0])
        sql = "SELECT COUNT(*) FROM candidates WHERE status=?"
        return int(self._conn.execute(sql, (str(status),)).fetchone()[0])

    def summaries(self) -> list[Summary]:
        """Light records of every candidate, without source, proxies or meta (fast resume)."""
        paused = gc.isenabled()
        gc.disable()  # the cyclic GC would rescan the many new small containers repeatedly
        try:
            return _rows_to_summaries(self._conn.execute(_SUMMARY_SQL).fetchall())
        finally:
            if paused:
                gc.enable()

    # ------------------------------------------------------------------ LLM calls

    def record(self, call: Any, *, candidate_id: int | None = None) -> int:
        """Record one LLM call (a dict or a pydantic model); return its call id.

        Recognised fields: ``messages``, ``replies``, ``model``, ``params``, ``usage``,
        ``latency_s``, ``error``, ``prompt_sha256``, ``candidate_id``; anything else is kept
        under ``extra``. Implements the loop's recorder protocol ``record(call)``.
        """
        data = dict(call.model_dump(mode="json") if hasattr(call, "model_dump") else call)
        known = {k: data.pop(k, None) for k in (*_CALL_FIELDS, "prompt_sha256", "candidate_id")}
        known["candidate_id"] = candidate_id if candidate_id is not None else known["candidate_id"]
        known["error"] = None if known["error"] is None else str(known["error"])
        known["extra"], known["created_at"] = data, time.time()
        for key, empty in zip(_CALL_JSON, ([], [], {}, {}, {}), strict=True):
            known[key] = _dumps(known[key] if known[key] is not None else empty)
        cols = _CALL_COLUMNS[1:]
        with self._tx():
            cur = self._conn.execute(
                f"INSERT INTO llm_calls({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [known[c] for c in cols],
            )
        return int(cur.lastrowid)

    def llm_calls(self, candidate_id: int | None = None) -> list[dict[str, Any]]:
        """Recorded LLM calls as dicts, in call order (optionally only one candidate's)."""
        sql = f"SELECT {', '.join(_CALL_COLUMNS)} FROM llm_calls"
        args: tuple[Any, ...] = ()
        if candidate_id is not None:
            sql += " WHERE candidate_id=?"
            args = (candidate_id,)
        out = []
        for r in self._conn.execute(sql + " ORDER BY id", args):
            call = dict(zip(_CALL_COLUMNS, r, strict=True))
            for key in _CALL_JSON:
                call[key] = json.loads(call[key])
            out.append(call)
        return out

    # ------------------------------------------------------------------ config, state, pending

    def config(self) -> dict[str, Any]:
        """The resolved config the run was created with."""
        return self.environment()["config"]

    def environment(self) -> dict[str, Any]:
        """Everything in the ``config`` table: ``config``, ``versions``, ``hardware``, ``seeds``."""
        rows = self._conn.execute("SELECT key, value FROM config")
        return {k: json.loads(v) for k, v in rows}

    def set_state(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``key`` (replacing any previous one)."""
        with self._tx():
            self._conn.execute(
                "INSERT INTO state(key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key)"
                " DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
                (key, _dumps(value), time.time()),
            )

    def get_state(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        row = self._conn.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def add_pending(self, proposal: Proposal) -> int:
        """Remember an accepted, not yet evaluated proposal; return its pending id."""
        with self._tx():
            cur = self._conn.execute(
                "INSERT INTO pending(proposal, created_at) VALUES (?, ?)",
                (proposal.model_dump_json(), time.time()),
            )
        return int(cur.lastrowid)

    def link_calls(self, prompt_sha256: str, candidate_id: int) -> int:
        """Link the unlinked LLM calls with this prompt hash to the candidate they produced."""
        with self._tx():
            sql = "UPDATE llm_calls SET candidate_id=? WHERE prompt_sha256=? AND candidate_id IS"
            cur = self._conn.execute(sql + " NULL", (candidate_id, prompt_sha256))
        return cur.rowcount

    def pending(self) -> list[tuple[int, Proposal]]:
        """Pending proposals as ``(pending_id, proposal)``, oldest first."""
        rows = self._conn.execute("SELECT id, proposal FROM pending ORDER BY id")
        return [(int(i), Proposal.model_validate_json(p)) for i, p in rows]

    # ------------------------------------------------------------------ repeats

    def add_repeat(self, candidate_id: int, seed: int, result: EvalResult) -> None:
        """Record one repeated training of a candidate with training seed ``seed``."""
        acc = result.metrics.get("val_accuracy") if result.ok else None
        row = (candidate_id, seed, result.status.value, acc, _dumps(result.metrics), time.time())
        with self._tx():
            self._conn.execute("INSERT OR REPLACE INTO repeats VALUES (?, ?, ?, ?, ?, ?)", row)

    def repeats(self) -> dict[int, dict[int, float | None]]:
        """``{candidate_id: {training seed: validation accuracy or None}}`` of every repeat."""
        if self.schema_version < 2:  # an older store opened read-only has no repeats
            return {}
        out: dict[int, dict[int, float | None]] = {}
        rows = self._conn.execute("SELECT candidate_id, seed, val_accuracy FROM repeats")
        for cid, seed, acc in rows:
            out.setdefault(int(cid), {})[int(seed)] = acc
        return out

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` result (``"ok"`` when healthy)."""
        return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])
