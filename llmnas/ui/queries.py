"""What the explorer shows of a run: its summary, curves, map, front, rates and candidates.

Everything is computed from a store opened read-only, as plain JSON-ready data; the pages and
the ``/api/`` endpoints share these functions. Numbers that would need the candidates' sources
(tens of megabytes in a large run) are read with SQL that never loads them.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections import Counter
from typing import Any

from llmnas.archive import ArchiveError, QDArchive
from llmnas.inspect_run import archive_config, best
from llmnas.islands import IslandArchive, rebuild_archive
from llmnas.records import Status
from llmnas.store import RunStore, Summary

__all__ = [
    "LIVE_S", "SORTABLE", "candidate_rows", "live_status", "rebuild", "run_detail", "run_summary",
]  # fmt: skip

LIVE_S = 60.0
"""A run that wrote something in the last ``LIVE_S`` seconds and is short of its budget is
shown as running."""

SORTABLE = ("id", "generation", "val_accuracy", "params", "flops", "train_seconds")
_PLOT_POINTS = 2000


def _finite(value: Any) -> float | int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


def rebuild(summaries: list[Summary], store: RunStore) -> QDArchive | IslandArchive | None:
    """The run's archive rebuilt from its summaries; ``None`` when its layout cannot be."""
    try:
        return rebuild_archive(summaries, archive_config(store))
    except (ArchiveError, ValueError):
        return None


def _usage(store: RunStore) -> dict[str, float]:
    row = store.query(
        "SELECT COUNT(*), SUM(json_extract(usage, '$.prompt_tokens')),"
        " SUM(json_extract(usage, '$.completion_tokens')), SUM(json_extract(usage, '$.cost_usd')),"
        " MAX(created_at) FROM llm_calls"
    )[0]
    return {
        "llm_calls": int(row[0] or 0),
        "prompt_tokens": int(row[1] or 0),
        "completion_tokens": int(row[2] or 0),
        "cost_usd": float(row[3] or 0.0),
        "last_call": row[4],
    }


def run_summary(
    store: RunStore, summaries: list[Summary], archive: QDArchive | IslandArchive | None
) -> dict[str, Any]:
    """One line of the runs page: settings, progress, best accuracy, map, tokens, times."""
    config = store.config()
    counts = Counter(s.status.value for s in summaries)
    accs = [a for s in summaries
            if s.status == Status.OK and (a := _finite(s.val_accuracy)) is not None]  # fmt: skip
    times = store.query("SELECT MIN(created_at), MAX(created_at) FROM candidates")[0]
    pending = store.query("SELECT COUNT(*), MAX(created_at) FROM pending")[0]
    state = store.query("SELECT MAX(updated_at) FROM state")[0][0]
    usage = _usage(store)
    incumbent = best(store, summaries) if summaries else None
    updated = max((t for t in (times[1], pending[1], state, usage["last_call"]) if t), default=None)
    budget = int(config.get("budget") or 0)
    done = len(summaries)
    llm = config.get("llm") or {}
    return {
        "task": config.get("task"),
        "strategy": config.get("strategy"),
        "model": llm.get("spec") if config.get("strategy") == "llm" else None,
        "budget": budget,
        "candidates": done,
        "pending": int(pending[0] or 0),
        "progress": done / budget if budget else None,
        "counts": dict(counts),
        "best_val_accuracy": max(accs) if accs else None,
        "incumbent_id": None if incumbent is None else incumbent.id,
        "coverage": None if archive is None else archive.coverage,
        "qd_score": None if archive is None else archive.qd_score,
        "elites": None if archive is None else len(archive),
        "tokens": usage["prompt_tokens"] + usage["completion_tokens"],
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "cost_usd": usage["cost_usd"],
        "llm_calls": usage["llm_calls"],
        "started": times[0],
        "updated": updated,
        "lifecycle": store.get_state("lifecycle"),
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def live_status(summary: dict[str, Any], *, now: float | None = None) -> str:
    """``running``, ``finished`` (budget spent), ``stopped`` or ``killed``, computed per request
    (a cached summary does not age). A run records its lifecycle in the store; one killed with
    ``kill -9`` still says "running" there, so the process is checked when it ran on this host,
    and otherwise the store must have been written in the last :data:`LIVE_S` seconds."""
    life = summary.get("lifecycle") or {}
    finished = bool(summary["budget"]) and summary["candidates"] >= summary["budget"]
    recent = summary["updated"] is not None and (now or time.time()) - summary["updated"] < LIVE_S
    if life.get("status") == "running":
        if life.get("host") == socket.gethostname() and isinstance(life.get("pid"), int):
            return "running" if _alive(life["pid"]) else "killed"
        return "running" if recent else "stopped"
    if finished:
        return "finished"
    if life.get("status") == "stopped":
        return "stopped"
    return "running" if recent else "stopped"  # a run from before lifecycles were recorded


def _anytime(summaries: list[Summary], created: dict[int, float]) -> dict[str, list[float]]:
    """Best validation accuracy so far, as steps: only the points where it improves (and the
    last), against the evaluation count and against seconds since the first candidate."""
    out: dict[str, list[Any]] = {"evaluations": [], "seconds": [], "best": [], "id": []}
    t0 = min(created.values()) if created else 0.0
    top = None
    for n, s in enumerate(summaries, start=1):
        acc = _finite(s.val_accuracy) if s.status == Status.OK else None
        improved = acc is not None and (top is None or acc > top)
        if improved:
            top = acc
        if top is not None and (improved or n == len(summaries)):
            out["evaluations"].append(n)
            out["seconds"].append(round(created.get(s.id, t0) - t0, 3))
            out["best"].append(top)
            out["id"].append(s.id)
    return out


def _heatmap(archive: QDArchive | IslandArchive | None) -> dict[str, Any]:
    if archive is None:
        return {"reason": "the run's archive could not be rebuilt"}
    if isinstance(archive, IslandArchive):
        return {"reason": f"an island archive ({len(archive.islands)} islands) has no one map"}
    config = archive.config
    if config.kind != "grid" or len(config.descriptors) != 2:
        return {"reason": "a map is drawn for a grid archive over exactly 2 descriptors"}
    elites = archive.elites()
    cells = []
    if elites:
        index = archive.ribs.int_to_grid_index([e.cell for e in elites])
        for e, (gx, gy) in zip(elites, index, strict=True):
            cells.append({"x": int(gx), "y": int(gy), "id": e.id, "objective": e.objective,
                          "measures": list(e.measures)})  # fmt: skip
    (x0, x1), (y0, y1) = config.bounds()
    return {
        "descriptors": list(config.descriptors),
        "objective": config.objective,
        "dims": list(config.dims()),
        "bounds": [[x0, x1], [y0, y1]],
        "cells": cells,
        "coverage": archive.coverage,
    }


def _front(points: list[dict[str, Any]], key: str) -> list[int]:
    """Ids on the accuracy/size Pareto front (higher accuracy, smaller ``key``)."""
    ranked = sorted((p for p in points if p[key] is not None), key=lambda p: (p[key], -p["acc"]))
    front, top = [], -1.0
    for p in ranked:
        if p["acc"] > top:
            front.append(p["id"])
            top = p["acc"]
    return front


def _pareto(summaries: list[Summary]) -> dict[str, Any]:
    points = [
        {"id": s.id, "acc": acc, "params": _finite(s.metrics.get("params")),
         "flops": _finite(s.metrics.get("flops")), "operator": s.operator}
        for s in summaries if s.status == Status.OK and (acc := _finite(s.val_accuracy)) is not None
    ]  # fmt: skip
    fronts = {"params": _front(points, "params"), "flops": _front(points, "flops")}
    keep = set(fronts["params"]) | set(fronts["flops"])
    stride = max(1, math.ceil(len(points) / _PLOT_POINTS))
    shown = [p for i, p in enumerate(points) if p["id"] in keep or i % stride == 0]
    return {"points": shown, "total": len(points), "front": fronts}


def _rates(groups: dict[str | None, list[bool]]) -> list[dict[str, Any]]:
    rows = [
        {"name": name, "total": len(v), "valid": sum(v), "rate": sum(v) / len(v)}
        for name, v in groups.items() if name is not None and v
    ]  # fmt: skip
    return sorted(rows, key=lambda r: (-r["total"], r["name"]))


def run_detail(
    store: RunStore, summaries: list[Summary], archive: QDArchive | IslandArchive | None
) -> dict[str, Any]:
    """The run page: anytime curves, the QD map, Pareto fronts, failures and valid rates."""
    extra = store.query(
        "SELECT id, created_at, json_extract(meta, '$.instruction') FROM candidates ORDER BY id"
    )
    created = {int(r[0]): float(r[1]) for r in extra}
    instruction = {int(r[0]): r[2] for r in extra}
    by_operator: dict[str | None, list[bool]] = {}
    by_instruction: dict[str | None, list[bool]] = {}
    for s in summaries:
        ok = s.status == Status.OK
        by_operator.setdefault(s.operator, []).append(ok)
        text = instruction.get(s.id)
        by_instruction.setdefault(str(text)[:200] if text else None, []).append(ok)
    failures = Counter(s.failure_kind.value for s in summaries if s.failure_kind is not None)
    return {
        "anytime": _anytime(summaries, created),
        "heatmap": _heatmap(archive),
        "pareto": _pareto(summaries),
        "failures": dict(failures.most_common()),
        "operators": _rates(by_operator),
        "instructions": _rates(by_instruction),
        "filters": {
            "status": sorted({s.status.value for s in summaries}),
            "operator": sorted({s.operator for s in summaries}),
            "failure_kind": sorted(failures),
        },
    }


def _row(s: Summary) -> dict[str, Any]:
    m = s.metrics
    return {
        "id": s.id,
        "generation": s.generation,
        "operator": s.operator,
        "parent_ids": list(s.parent_ids),
        "status": s.status.value,
        "failure_kind": None if s.failure_kind is None else s.failure_kind.value,
        "val_accuracy": _finite(s.val_accuracy),
        "params": _finite(m.get("params")),
        "flops": _finite(m.get("flops")),
        "train_seconds": _finite(m.get("train_seconds")),
    }


def candidate_rows(
    summaries: list[Summary],
    *,
    status: str | None = None,
    operator: str | None = None,
    failure_kind: str | None = None,
    sort: str = "id",
    order: str = "asc",
    offset: int = 0,
    limit: int = 100,
) -> dict[str, Any]:
    """One page of the candidates table, filtered and sorted (missing values sort last)."""
    if sort not in SORTABLE:
        raise ValueError(f"sort must be one of {', '.join(SORTABLE)}; got {sort!r}")
    if order not in ("asc", "desc"):
        raise ValueError(f"order must be asc or desc; got {order!r}")
    rows = [
        _row(s) for s in summaries
        if (status is None or s.status.value == status)
        and (operator is None or s.operator == operator)
        and (failure_kind is None or (s.failure_kind is not None
                                      and s.failure_kind.value == failure_kind))
    ]  # fmt: skip
    present = [r for r in rows if r[sort] is not None]
    missing = [r for r in rows if r[sort] is None]
    present.sort(key=lambda r: (r[sort], r["id"]), reverse=order == "desc")
    ordered = present + missing
    return {"total": len(rows), "offset": offset, "limit": limit,
            "rows": ordered[offset : offset + limit]}  # fmt: skip
