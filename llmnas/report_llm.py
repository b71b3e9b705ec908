"""The bench report's LLM sections: tokens and cost per candidate, valid rates per operator and
per prompt instruction, and the published anchors the config lists.

Token counts per candidate are llmnas's estimates (characters / 4) of the prompt and the reply,
stored with each LLM candidate, so a replayed run reports the same numbers as the recorded
one; the usage a server reported (``tokens`` in the report) is shown beside them when known.
A candidate is *valid* when it was evaluated (status ``ok``); duplicates (a program or
architecture already evaluated) are counted apart from failures.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from llmnas.report_data import CellData

__all__ = ["anchors_markdown", "anytime_markdown", "anytime_summary", "llm_markdown",
           "llm_summary"]  # fmt: skip

LLM_OPERATORS = ("mutate", "crossover", "fix")


def _rate(steps: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(steps)
    ok = sum(s["status"] == "ok" for s in steps)
    dup = sum(bool(s["duplicate"]) for s in steps)
    return {"n": n, "ok": ok, "duplicates": dup, "failed": n - ok - dup}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def llm_summary(groups: dict[str, list[CellData]]) -> dict[str, Any]:
    """Per strategy that used an LLM: token and cost means, rates per operator and instruction."""
    out: dict[str, Any] = {}
    for name, cells in groups.items():
        steps = [s for c in cells for s in c.steps if s["operator"] in LLM_OPERATORS]
        if not steps:
            continue
        by_op: dict[str, list] = defaultdict(list)
        by_instruction: dict[str, list] = defaultdict(list)
        for s in steps:
            by_op[s["operator"]].append(s)
            key = s["instruction"] or ("(combine two parents)" if s["operator"] == "crossover"
                                       else "(repair a failure)")  # fmt: skip
            by_instruction[key].append(s)
        n_all = sum(len(c.steps) for c in cells)
        out[name] = {
            "candidates": len(steps),
            "styles": sorted({s["style"] or "code" for s in steps}),
            "prompt_tokens_est": _mean([s["prompt_tokens"] for s in steps if s["prompt_tokens"]]),
            "reply_tokens_est": _mean([s["reply_tokens"] for s in steps if s["reply_tokens"]]),
            "usage_tokens_per_candidate": sum(c.tokens for c in cells) / max(1, n_all),
            "cost_per_candidate": sum(c.cost for c in cells) / max(1, n_all),
            "models": sorted({m for c in cells for m in c.models}),
            "operators": {k: _rate(v) for k, v in sorted(by_op.items())},
            "instructions": {k: _rate(v) for k, v in sorted(by_instruction.items())},
        }
    return out


def anytime_summary(groups: dict[str, list[CellData]], budget: int) -> dict[str, Any]:
    """Per strategy: the incumbent's validation accuracy (mean, std over search seeds) after
    10, 25, 50 and 100 % of the budget, and how many evaluations each seed took to reach the
    best value any run of the grid reached."""
    marks = sorted({max(1, round(budget * f)) for f in (0.1, 0.25, 0.5, 1.0)})
    curves = {
        n: [c.best_curve for c in cs if c.state == "finished" and c.val] for n, cs in groups.items()
    }
    top = max((float(np.nanmax(v)) for cs in curves.values() for v in cs if np.isfinite(v).any()),
              default=None)  # fmt: skip
    out: dict[str, Any] = {"marks": marks, "grid_best": top, "strategies": {}}
    for name, cs in curves.items():
        at = {}
        for m in marks:
            vals = [float(v[min(m, len(v)) - 1]) for v in cs if np.isfinite(v[min(m, len(v)) - 1])]
            at[m] = (float(np.mean(vals)), float(np.std(vals))) if vals else (None, None)
        hits = [
            int(np.argmax(v >= top - 1e-9)) + 1 if np.nanmax(v) >= top - 1e-9 else None for v in cs
        ]
        out["strategies"][name] = {"at": at, "evals_to_grid_best": hits}
    return out


def anytime_markdown(summary: dict[str, Any]) -> list[str]:
    """The "Anytime" table: incumbent accuracy at budget checkpoints, evaluations to the best."""
    marks, top = summary["marks"], summary["grid_best"]
    if top is None:
        return []
    lines = ["## Anytime: the incumbent's validation accuracy during the search", ""]
    rows = []
    for name, s in summary["strategies"].items():
        cells = [("—" if s["at"][m][0] is None else f"{s['at'][m][0]:.4f} ± {s['at'][m][1]:.4f}")
                 for m in marks]  # fmt: skip
        hits = ", ".join("—" if h is None else str(h) for h in s["evals_to_grid_best"])
        rows.append([name, *cells, hits])
    head = ["strategy", *[f"after {m}" for m in marks], f"evaluations to {top:.4f} (per seed)"]
    lines += _table(head, rows)
    return lines + [
        f"{top:.4f} is the best validation accuracy any run of this grid reached; — : never "
        "reached. Means ± std over search seeds; single training runs (trained tasks).",
        "",
    ]


def _row_rate(r: dict[str, Any]) -> list[str]:
    return [str(r["n"]), f"{r['ok'] / r['n']:.0%}" if r["n"] else "—",
            str(r["duplicates"]), str(r["failed"])]  # fmt: skip


def _models(models: list[str]) -> str:
    cassettes = [m for m in models if m.endswith(".jsonl")]
    if len(cassettes) > 1 and len(cassettes) == len(models):
        return f"replay of {len(cassettes)} cassettes ({Path(cassettes[0]).name}, ...)"
    return ", ".join(models) or "—"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(r) + " |" for r in (head, ["---"] * len(head), *rows)] + [""]


def llm_markdown(summary: dict[str, Any]) -> list[str]:
    """The report's "LLM operator" section (empty when no strategy used an LLM)."""
    if not summary:
        return []
    lines = ["## LLM operator", ""]
    rows = []
    for name, s in summary.items():
        p, r = s["prompt_tokens_est"], s["reply_tokens_est"]
        rows.append([
            name, ", ".join(s["styles"]), str(s["candidates"]),
            "—" if p is None else f"{p:,.0f}", "—" if r is None else f"{r:,.0f}",
            f"{s['usage_tokens_per_candidate']:,.0f}" if s["usage_tokens_per_candidate"] else "—",
            f"${s['cost_per_candidate']:.4f}", _models(s["models"]),
        ])  # fmt: skip
    lines += _table(["strategy", "prompt style", "LLM candidates", "prompt tokens (est.)",
                     "reply tokens (est.)", "server tokens / candidate", "cost / candidate",
                     "model"], rows)  # fmt: skip
    lines += [
        "Token estimates are characters / 4 of each prompt and reply, stored per candidate; "
        "server tokens are what the LLM server reported (none for replayed or `manual:` runs).",
        "",
    ]
    rows = [[name, op, *_row_rate(r)] for name, s in summary.items()
            for op, r in s["operators"].items()]  # fmt: skip
    lines += ["Valid rate per operator (valid: evaluated; duplicates and failures apart):", ""]
    lines += _table(["strategy", "operator", "candidates", "valid", "duplicates", "failed"], rows)
    rows = [[name, text, *_row_rate(r)] for name, s in summary.items()
            for text, r in s["instructions"].items()]  # fmt: skip
    lines += ["Valid rate per prompt instruction:", ""]
    lines += _table(["strategy", "instruction", "candidates", "valid", "duplicates", "failed"],
                    rows)  # fmt: skip
    return lines


def anchors_markdown(anchors: list[dict[str, Any]]) -> list[str]:
    """The "Published anchors" section from the bench config's ``anchors``."""
    if not anchors:
        return []
    lines = ["## Published anchors (not measured here)", ""]
    rows = [[a["name"], a["value"], a["protocol"]] for a in anchors]
    return lines + _table(["reference", "reported", "how its protocol differs from ours"], rows)
