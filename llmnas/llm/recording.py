"""Recorders for LLM calls and the replay-cassette export.

- :class:`MemoryRecorder` keeps records in a list (tests, short scripts);
- :class:`JsonlRecorder` appends one JSON object per call to a file, flushed at once, so a
  killed run loses at most the call in flight; :func:`load_records` reads such a file back;
- :class:`TeeRecorder` forwards each record to several recorders;
- :func:`export_cassette` turns records into the ``replay:`` format: one line per reply,
  ``{"prompt_sha256": str, "response": str}``, in record order. Failed calls are skipped.

The run store implements :class:`~llmnas.llm.base.Recorder` itself; nothing here knows about
it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llmnas.llm.base import CallRecord, Recorder

__all__ = ["JsonlRecorder", "MemoryRecorder", "TeeRecorder", "export_cassette", "load_records"]


class MemoryRecorder:
    """Keeps every record in :attr:`records` (thread-safe)."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []
        self._lock = threading.Lock()

    def record(self, call: CallRecord) -> None:
        with self._lock:
            self.records.append(call)

    @property
    def errors(self) -> list[CallRecord]:
        return [r for r in self.records if r.error is not None]

    @property
    def successes(self) -> list[CallRecord]:
        return [r for r in self.records if r.error is None]


class JsonlRecorder:
    """Appends each record as one JSON line to ``path`` (created with its parent folders)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record(self, call: CallRecord) -> None:
        line = call.model_dump_json() + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()


class TeeRecorder:
    """Forwards every record to each of ``recorders`` in turn."""

    def __init__(self, *recorders: Recorder) -> None:
        self.recorders = list(recorders)

    def record(self, call: CallRecord) -> None:
        for recorder in self.recorders:
            recorder.record(call)


def load_records(path: str | Path) -> list[CallRecord]:
    """Read a :class:`JsonlRecorder` file; blank lines are skipped, a bad line raises."""
    records = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(CallRecord.model_validate_json(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not a call record ({exc})") from None
    return records


def export_cassette(records: Iterable[CallRecord | dict[str, Any]], path: str | Path) -> int:
    """Write the successful calls' replies as a replay cassette; returns the line count.

    ``records`` are :class:`CallRecord` objects or the store's call dicts
    (:meth:`llmnas.store.RunStore.llm_calls`). Each reply becomes ``{"response": ...,
    "prompt_sha256": ..., "prompt_tokens": ..., "completion_tokens": ...}`` (the call's usage
    split evenly over its replies); the replies of one call stay together in their original
    order, so replaying the same prompts serves the same replies in the same order.
    """
    lines = []
    for record in records:
        call = record.model_dump(mode="json") if isinstance(record, CallRecord) else record
        if call.get("error"):
            continue
        usage, replies = call.get("usage") or {}, call.get("replies") or []
        share = max(len(replies), 1)
        for reply in replies:
            entry = {
                "response": reply if isinstance(reply, str) else reply.get("text", ""),
                "prompt_sha256": call.get("prompt_sha256"),
                "prompt_tokens": int(usage.get("prompt_tokens", 0)) // share,
                "completion_tokens": int(usage.get("completion_tokens", 0)) // share,
            }
            lines.append(json.dumps(entry))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)
