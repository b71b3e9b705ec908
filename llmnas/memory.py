"""A run's memory as prompts show it: the last attempts and what the best programs share.

Every mutation and crossover prompt carries (1) a table of the last ``k`` attempts, newest
last: how each was made (operator and instruction), from which parents, and what came of it
(validation accuracy, parameters and FLOPs, whether it entered the archive, or its failure
kind and the first line of its message), and (2) one line on the archive's most accurate
programs: their accuracy and size range and which layer types they use. So the model can learn
within a run instead of repeating what just failed.

Failure messages come from candidate code and are untrusted text: only their first line is
shown, cut to 100 characters, with backticks removed so they cannot close a code fence.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from llmnas.pyast import parse_source

__all__ = ["attempt_row", "attempts_table", "elite_summary", "layer_types"]

_MESSAGE_CHARS = 100


def _clean(text: str) -> str:
    first = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    first = first.replace("`", "'").replace("|", "/")
    return first if len(first) <= _MESSAGE_CHARS else first[: _MESSAGE_CHARS - 3] + "..."


def attempt_row(cand: Any, *, elite: bool) -> str:
    """One table row for a committed candidate (a :class:`~llmnas.records.Candidate`)."""
    how = cand.operator
    instruction = (cand.meta or {}).get("instruction")
    if instruction:
        how = f"{how}: {instruction}"
    parents = ", ".join(f"#{p}" for p in cand.parent_ids) or "-"
    result, metrics = cand.result, cand.result.metrics
    if result.failure is not None:
        outcome = f"{result.failure.kind.value}: {_clean(result.failure.message)}"
    else:
        acc = metrics.get("val_accuracy")
        outcome = "ok" if acc is None else f"val {float(acc):.4f}"
        if metrics.get("params") is not None:
            outcome += f", {int(metrics['params']):,} params"
        if metrics.get("flops") is not None:
            outcome += f", {int(metrics['flops']):,} FLOPs"
        outcome += ", entered the archive" if elite else ", not kept"
    return f"| #{cand.id} | {how} | {parents} | {outcome} |"


def attempts_table(candidates: Sequence[Any], elite_ids: Iterable[int]) -> str:
    """The attempts table (header included); empty string when there is nothing to show."""
    if not candidates:
        return ""
    elites = set(elite_ids)
    rows = [attempt_row(c, elite=c.id in elites) for c in candidates]
    return "\n".join(["| id | made by | parents | outcome |", "|---|---|---|---|", *rows])


def layer_types(source: str) -> set[str]:
    """Names of ``nn.<Layer>`` (or ``torch.nn.<Layer>``) classes a program instantiates."""
    try:
        tree = parse_source(source)
    except SyntaxError:
        return set()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if (isinstance(owner, ast.Name) and owner.id == "nn") or (
                isinstance(owner, ast.Attribute) and owner.attr == "nn"
            ):
                if node.func.attr[:1].isupper():
                    found.add(node.func.attr)
    return found


def elite_summary(elites: Sequence[Any], top: int = 5) -> str:
    """One line on the most accurate elites: count, ranges and shared layer types."""
    scored = [e for e in elites if e.result.metrics.get("val_accuracy") is not None]
    if not scored:
        return "the archive is empty so far"
    scored.sort(key=lambda c: (-float(c.result.metrics["val_accuracy"]), c.id))
    best = scored[:top]
    accs = [float(c.result.metrics["val_accuracy"]) for c in best]
    params = [int(c.result.metrics.get("params") or 0) for c in best]
    counts = Counter(t for c in best for t in layer_types(c.source))
    layers = ", ".join(f"{name} ({n}/{len(best)})" for name, n in counts.most_common(8))
    return (
        f"{len(scored)} programs; the {len(best)} most accurate reach "
        f"{min(accs):.4f} to {max(accs):.4f} with {min(params):,} to {max(params):,} "
        f"parameters and use {layers or 'no torch.nn layers'}"
    )
