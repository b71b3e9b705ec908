"""Read-only views of a stored run for ``llmnas archive``: rows, the incumbent, lineage, export.

Everything here reads the store (never the live loop) and returns plain data; the CLI formats
it. The incumbent is chosen on validation accuracy only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmnas.archive import QDArchive
from llmnas.islands import IslandArchive
from llmnas.records import Candidate, Status
from llmnas.repeats import Repeated, repeat_stats
from llmnas.store import RunStore, StoreError, Summary

__all__ = [
    "archive_config",
    "best",
    "export",
    "lineage",
    "list_rows",
    "open_run",
    "rebuild_archive",
    "repeated",
    "row",
]


def open_run(run_dir: str | Path) -> RunStore:
    """Open a run read-only; :class:`StoreError` (one line) when it is not a run."""
    return RunStore.open(Path(run_dir), read_only=True)


def row(c: Candidate) -> dict[str, Any]:
    """The ``archive list --json`` object of one candidate (see DESIGN, command line)."""
    m = c.result.metrics
    return {
        "id": c.id,
        "parent_ids": list(c.parent_ids),
        "operator": c.operator,
        "generation": c.generation,
        "status": c.status.value,
        "failure_kind": None if c.result.failure is None else c.result.failure.kind.value,
        "failure_message": None if c.result.failure is None else c.result.failure.message,
        "failure_stage": None if c.result.failure is None else c.result.failure.stage,
        "hash": c.hash,
        "val_accuracy": m.get("val_accuracy"),
        "params": m.get("params"),
        "flops": m.get("flops"),
        "train_seconds": m.get("train_seconds"),
        "descriptors": dict(c.descriptors),
    }


def list_rows(store: RunStore) -> list[dict[str, Any]]:
    return [row(c) for c in store.candidates()]


def repeated(store: RunStore) -> dict[int, Repeated]:
    """The run's repeated candidates (see :mod:`llmnas.repeats`)."""
    return repeat_stats(store, int(store.get_state("repeats_base_seed", 0)))


def best(store: RunStore, summaries: list[Summary] | None = None) -> Candidate | None:
    """The incumbent: the repeated candidate with the highest mean validation accuracy, or,
    in a run without repeats, the highest single-run accuracy (lowest id on ties).
    ``summaries``: the store's, when the caller has them already."""
    reps = repeated(store)
    if reps:
        top = max(reps.values(), key=lambda r: (r.mean, -r.id))
        return store.get(top.id)
    rows = store.summaries() if summaries is None else summaries
    ok = [s for s in rows if s.status == Status.OK and s.val_accuracy is not None]
    return store.get(max(ok, key=lambda s: (s.val_accuracy, -s.id)).id) if ok else None


def archive_config(store: RunStore) -> dict[str, Any]:
    """The archive layout the run used: with its seed-derived ranges when it has them."""
    return store.get_state("archive") or store.config().get("archive", {})


def rebuild_archive(store: RunStore) -> QDArchive | IslandArchive:
    """The run's archive (plain or islands), rebuilt from its stored candidates."""
    from llmnas.islands import rebuild_archive as rebuild

    return rebuild(store.candidates(), archive_config(store))


def lineage(store: RunStore, candidate_id: int) -> list[dict[str, Any]]:
    """Ancestry of a candidate, oldest first: each step with operator, edit or prompt."""
    try:
        start = store.get(candidate_id)
    except (KeyError, StoreError):
        raise StoreError(f"no candidate with id {candidate_id}") from None
    seen: dict[int, Candidate] = {}
    todo = [start]
    while todo:
        c = todo.pop()
        if c.id in seen:
            continue
        seen[c.id] = c
        todo.extend(store.get(p) for p in c.parent_ids if p not in seen)
    steps = []
    for c in sorted(seen.values(), key=lambda c: c.id):
        meta = c.meta
        prompt = meta.get("prompt")
        calls = store.llm_calls(c.id)
        steps.append(
            {
                **row(c),
                "instruction": meta.get("instruction"),
                "edit": meta.get("description") or meta.get("edit"),
                "prompt": prompt[-1]["content"] if isinstance(prompt, list) and prompt else None,
                "reply": meta.get("reply"),
                "llm_call_ids": [call["id"] for call in calls],
            }
        )
    return steps


def export(store: RunStore, candidate_id: int, out_dir: Path, weights: bytes | None) -> list[Path]:
    """Write ``candidate_<id>.py`` (standalone, the contract's ``Model``), its metadata and,
    when given, the trained weights as safetensors."""
    c = store.get(candidate_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    code = out_dir / f"candidate_{c.id}.py"
    code.write_text(c.source)
    written.append(code)
    info = out_dir / f"candidate_{c.id}.json"
    info.write_text(json.dumps({**row(c), "config": store.config()}, indent=2, default=str))
    written.append(info)
    if weights is not None:
        path = out_dir / f"candidate_{c.id}.safetensors"
        path.write_bytes(weights)
        written.append(path)
    return written
