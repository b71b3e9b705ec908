"""One candidate for the explorer: everything stored about it, its parents, children and lineage.

The lineage graph holds the candidate, its ancestors (the nearest ``MAX_ANCESTORS`` of them) and
its direct children, laid out in columns by the longest path to the candidate, so every edge
points right. Coordinates are computed here; the template only draws them.
"""

from __future__ import annotations

import json
import math
from typing import Any

from llmnas.inspect_run import row
from llmnas.store import RunStore

__all__ = ["MAX_ANCESTORS", "candidate_detail", "lineage_graph"]

MAX_ANCESTORS = 60
_NODE_W, _NODE_H, _COL, _ROW, _PAD = 120, 34, 160, 46, 10


def _nodes(store: RunStore) -> dict[int, dict[str, Any]]:
    rows = store.query(
        "SELECT id, parent_ids, operator, status, json_extract(metrics, '$.val_accuracy')"
        " FROM candidates"
    )
    return {
        int(r[0]): {"id": int(r[0]), "parents": [int(p) for p in json.loads(r[1])],
                    "operator": r[2], "status": r[3], "acc": r[4]}
        for r in rows
    }  # fmt: skip


def lineage_graph(store: RunStore, candidate_id: int) -> dict[str, Any]:
    """Nodes (with x, y) and edges of the candidate's ancestry and direct children."""
    every = _nodes(store)
    keep: list[int] = [candidate_id]
    seen = {candidate_id}
    i = 0
    while i < len(keep) and len(keep) <= MAX_ANCESTORS:  # breadth first: nearest ancestors
        for p in every[keep[i]]["parents"]:
            if p in every and p not in seen:
                seen.add(p)
                keep.append(p)
        i += 1
    ancestors = set(keep[: MAX_ANCESTORS + 1])
    truncated = len(keep) > len(ancestors) or any(
        p not in seen for n in keep[i:] for p in every[n]["parents"] if p in every
    )
    depth = {candidate_id: 0}
    for node in sorted(ancestors, reverse=True):  # parents always have smaller ids
        for p in every[node]["parents"]:
            if p in ancestors and node in depth:
                depth[p] = max(depth.get(p, 0), depth[node] + 1)
    children = sorted(n for n, v in every.items() if candidate_id in v["parents"])
    for child in children:
        depth.setdefault(child, -1)
    deepest = max(depth.values())
    columns: dict[int, list[int]] = {}
    for node in sorted(depth):
        columns.setdefault(depth[node], []).append(node)
    nodes, where = [], {}
    for d, members in columns.items():
        for k, node in enumerate(members):
            x, y = _PAD + (deepest - d) * _COL, _PAD + k * _ROW
            where[node] = (x, y)
            acc = every[node]["acc"]
            nodes.append({
                "id": node, "x": x, "y": y, "operator": every[node]["operator"],
                "status": every[node]["status"], "current": node == candidate_id,
                "acc": acc if acc is not None and math.isfinite(acc) else None,
            })  # fmt: skip
    edges = []
    for node in where:
        for p in every[node]["parents"]:
            if p in where:
                (x1, y1), (x2, y2) = where[p], where[node]
                edges.append({"from": p, "to": node, "x1": x1 + _NODE_W, "y1": y1 + _NODE_H / 2,
                              "x2": x2, "y2": y2 + _NODE_H / 2})  # fmt: skip
    tallest = max(len(m) for m in columns.values())
    return {
        "nodes": nodes,
        "edges": edges,
        "children": children,
        "truncated": truncated,
        "width": 2 * _PAD + deepest * _COL + _NODE_W + (_COL if children else 0),
        "height": 2 * _PAD + (tallest - 1) * _ROW + _NODE_H,
        "node_w": _NODE_W,
        "node_h": _NODE_H,
    }


def _messages(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list):
        return [{"role": str(m.get("role", "?")), "content": str(m.get("content", ""))}
                for m in prompt if isinstance(m, dict)]  # fmt: skip
    return []


def candidate_detail(store: RunStore, candidate_id: int) -> dict[str, Any]:
    """Source, results, parents' sources, prompt, reply or edit, LLM calls and lineage."""
    c = store.get(candidate_id)
    meta = dict(c.meta)
    parents = []
    for p in c.parent_ids:
        try:
            parent = store.get(p)
        except Exception:  # noqa: BLE001 - a parent id that is not in this store
            continue
        parents.append({"id": parent.id, "operator": parent.operator, "source": parent.source,
                        "val_accuracy": parent.val_accuracy})  # fmt: skip
    calls = [
        {k: call.get(k) for k in ("id", "model", "usage", "latency_s", "error", "replies")}
        for call in store.llm_calls(c.id)
    ]
    reply = meta.get("reply")
    if reply is None and calls and calls[-1]["replies"]:
        reply = calls[-1]["replies"][0]
    edit = meta.get("description") or meta.get("edit")
    repeats = store.repeats().get(c.id, {})
    return {
        **row(c),
        "source": c.source,
        "metrics": dict(c.result.metrics),
        "proxies": dict(c.result.proxies),
        "proxy_notes": dict(c.result.proxy_notes),
        "timings": dict(c.result.timings),
        "created_at": c.created_at,
        "instruction": meta.get("instruction"),
        "prompt": _messages(meta.get("prompt")),
        "reply": None if reply is None else str(reply),
        "edit": None if edit is None else str(edit),
        "llm_calls": calls,
        "repeats": {str(k): v for k, v in sorted(repeats.items())},
        "parents": parents,
        "lineage": lineage_graph(store, c.id),
    }
