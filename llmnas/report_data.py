"""What a bench report reads from each cell of the grid: :class:`CellData` and :func:`collect_cell`.

A cell is one run folder: its store (opened read-only), ``cell.json`` (how the run ended) and
``final.json`` (the final evaluation). :func:`collect_cell` turns it into plain lists per
candidate, in id order, so the report never touches a store itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmnas.store import RunStore

if TYPE_CHECKING:
    from llmnas.bench import Cell

__all__ = ["CELL_FILE", "FINAL_FILE", "CellData", "collect_cell", "read_json"]

CELL_FILE = "cell.json"
FINAL_FILE = "final.json"


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@dataclass
class CellData:
    """What the report needs from one cell: the candidate trace, archive, LLM usage, final."""

    strategy: str
    seed: int
    state: str
    message: str = ""
    times: list[float] = field(default_factory=list)  # seconds since the run began
    statuses: list[str] = field(default_factory=list)
    val: list[float | None] = field(default_factory=list)
    params: list[int | None] = field(default_factory=list)
    repeat_mean: dict[int, float] = field(default_factory=dict)  # index -> mean over seeds
    qd_score: float | None = None
    coverage: float | None = None
    tokens: int = 0
    cost: float = 0.0
    models: list[str] = field(default_factory=list)
    test_in_search: bool = False
    final: dict[str, Any] | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)  # per candidate, see collect_cell

    @property
    def best_curve(self) -> np.ndarray:
        """The incumbent after each evaluation (picked on single runs), at its repeat mean."""
        out, best = np.full(len(self.val), np.nan), None
        for i, v in enumerate(self.val):
            if v is not None and (best is None or v > self.val[best]):  # type: ignore[operator]
                best = i
            if best is not None:
                out[i] = self.repeat_mean.get(best, self.val[best])
        return out


def collect_cell(cell: Cell) -> CellData:
    """What the report needs from one cell: its store (read-only), ``cell.json``, ``final.json``."""
    from llmnas.inspect_run import rebuild_archive, repeated

    data = CellData(cell.entry.label, cell.seed, cell.state, cell.message)
    if not (cell.dir / "run.sqlite").exists():
        return data
    with RunStore.open(cell.dir, read_only=True) as store:
        cands = store.candidates()
        calls = store.llm_calls()
        data.environment = store.environment()
        reps = repeated(store)
        if cands:
            archive = rebuild_archive(store)
            data.qd_score, data.coverage = archive.qd_score, archive.coverage
    record, first = read_json(cell.dir / CELL_FILE) or {}, cands[0] if cands else None
    if first is not None:  # the run's start; for a resumed run, when its first evaluation began
        before = first.result.timings.get("eval_seconds", 0) + first.meta.get("search_seconds", 0)
        t0 = record.get("started") if not record.get("resumed") else None
        data.times = [c.created_at - (t0 or first.created_at - before) for c in cands]
    data.repeat_mean = {i: reps[c.id].mean for i, c in enumerate(cands) if c.id in reps}
    for c in cands:
        ok = c.status.value == "ok"
        data.statuses.append(c.status.value)
        data.val.append(c.val_accuracy if ok else None)
        data.params.append(c.result.metrics.get("params") if ok else None)
        data.test_in_search |= any(k.startswith("test_") for k in c.result.metrics)
        failure = c.result.failure
        data.steps.append({
            "operator": c.operator, "instruction": c.meta.get("instruction"),
            "status": c.status.value, "failure": None if failure is None else failure.kind.value,
            "duplicate": failure is not None and failure.stage == "dedup",
            "prompt_tokens": c.meta.get("prompt_tokens_est"),
            "reply_tokens": c.meta.get("reply_tokens_est"), "style": c.meta.get("prompt_style"),
        })  # fmt: skip
    for call in calls:
        usage = call.get("usage") or {}
        data.tokens += int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
        data.cost += float(usage.get("cost_usd", 0.0) or 0.0)
        if call.get("model") and call["model"] not in data.models:
            data.models.append(call["model"])
    path = cell.dir / FINAL_FILE
    data.final = json.loads(path.read_text()) if path.exists() else None
    return data
