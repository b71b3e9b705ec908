"""The run store's schema, row codecs and environment record (used by :mod:`llmnas.store`)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from dataclasses import dataclass
from typing import Any

from llmnas.records import Candidate, FailureKind, Status

__all__ = ["CANDIDATE_COLUMNS", "Summary"]

_CALL_FIELDS = ("messages", "replies", "model", "params", "usage", "latency_s", "error")
_CALL_COLUMNS = ("id", *_CALL_FIELDS, "prompt_sha256", "candidate_id", "extra", "created_at")
_CALL_JSON = ("messages", "replies", "params", "usage", "extra")

CANDIDATE_COLUMNS = (
    "id", "generation", "operator", "parent_ids", "source", "hash", "status", "failure_kind",
    "failure_message", "failure_stage", "metrics", "proxies", "proxy_notes", "descriptors",
    "timings", "meta", "device", "created_at",
)  # fmt: skip
_CANDIDATE_JSON = (
    "parent_ids", "metrics", "proxies", "proxy_notes", "descriptors", "timings", "meta",
)  # fmt: skip

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE candidates (
    id INTEGER PRIMARY KEY, generation INTEGER NOT NULL, operator TEXT NOT NULL,
    parent_ids TEXT NOT NULL, source TEXT NOT NULL, hash TEXT NOT NULL, status TEXT NOT NULL,
    failure_kind TEXT, failure_message TEXT, failure_stage TEXT, metrics TEXT NOT NULL,
    proxies TEXT NOT NULL, proxy_notes TEXT NOT NULL, descriptors TEXT NOT NULL,
    timings TEXT NOT NULL, meta TEXT NOT NULL, device TEXT, created_at REAL NOT NULL);
CREATE INDEX candidates_hash ON candidates(hash);
CREATE INDEX candidates_summary ON candidates(
    id, generation, operator, hash, status, failure_kind, parent_ids, metrics, descriptors);
CREATE TABLE llm_calls (
    id INTEGER PRIMARY KEY, messages TEXT NOT NULL, replies TEXT NOT NULL, model TEXT,
    params TEXT NOT NULL, usage TEXT NOT NULL, latency_s REAL, error TEXT, prompt_sha256 TEXT,
    candidate_id INTEGER, extra TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX llm_calls_candidate ON llm_calls(candidate_id);
CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE pending (id INTEGER PRIMARY KEY, proposal TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE repeats (
    candidate_id INTEGER NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL,
    val_accuracy REAL, metrics TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (candidate_id, seed));
"""

_MIGRATIONS = {
    # version 1 -> 2: repeated trainings of the best candidates
    2: _SCHEMA[_SCHEMA.index("CREATE TABLE repeats") :],
}


@dataclass(slots=True)
class Summary:
    """A candidate without its source, proxies, timings or meta: enough to rebuild an archive."""

    id: int
    generation: int
    operator: str
    parent_ids: list[int]
    hash: str
    status: Status
    failure_kind: FailureKind | None
    metrics: dict[str, float | int]
    descriptors: dict[str, float]

    @property
    def val_accuracy(self) -> float | None:
        value = self.metrics.get("val_accuracy")
        return None if value is None else float(value)


def _environment() -> dict[str, Any]:
    """Library versions and hardware, recorded once when a run is created."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("llmnas", "torch", "numpy", "ribs", "pydantic"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    hardware = {"platform": platform.platform(), "machine": platform.machine()}
    hardware["cpu_count"] = os.cpu_count()
    return {"versions": versions, "hardware": hardware}


_SUMMARY_SQL = (
    "SELECT id, generation, operator, hash, status, failure_kind,"
    " '[' || parent_ids || ',' || metrics || ',' || descriptors || ']'"
    " FROM candidates ORDER BY id"
)


def _rows_to_summaries(rows: list[tuple[Any, ...]]) -> list[Summary]:
    # One json.loads over all rows: the per-call overhead dominates for 100k small documents.
    blobs = json.loads("[" + ",".join([r[6] for r in rows]) + "]")
    kinds = {None: None, **{k.value: k for k in FailureKind}}
    statuses = {s.value: s for s in Status}
    return [
        Summary(r[0], r[1], r[2], b[0], r[3], statuses[r[4]], kinds[r[5]], b[1], b[2])
        for r, b in zip(rows, blobs, strict=True)
    ]


def _row_to_candidate(r: tuple[Any, ...]) -> Candidate:
    row = dict(zip(CANDIDATE_COLUMNS, r, strict=True))
    for key in _CANDIDATE_JSON:
        row[key] = json.loads(row[key])
    kind, message, stage = (row.pop(f"failure_{k}") for k in ("kind", "message", "stage"))
    failure = None if kind is None else {"kind": kind, "message": message, "stage": stage}
    result = {k: row.pop(k) for k in ("status", "metrics", "proxies", "proxy_notes", "timings")}
    row.pop("device")
    return Candidate.model_validate({**row, "result": {**result, "failure": failure}})


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
