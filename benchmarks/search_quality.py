"""Search quality of finished runs, side by side (a script, not a test).

Usage::

    .venv/bin/python benchmarks/search_quality.py RUN [RUN ...] [--layout RUN] [--json OUT]

For each run it prints what ``docs/search.md`` reports: candidates and valid rate (ok among
the candidates the operator made, seeds excluded), the best mean validation accuracy over
repeated trainings at <= 5,210 and <= 1,606 parameters (the MNIST-1D CNN seed's and a third of
it), the accuracy/params Pareto front (single-run front, each point with its repeat mean when
it was repeated), coverage and elites of the run's own archive and of the archive layout of
``--layout RUN`` (so runs made under different defaults are compared on one map), the rate of
distinct prompts, and prompt and reply tokens per LLM candidate. Token counts are the server's
when it reported usage, else estimated as characters / 4 (``manual:`` and ``replay:`` report
none). Runs without repeats show single-run values and say so; ``llmnas archive repeat RUN
--top-k 3 --pareto`` adds them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from llmnas.inspect_run import archive_config, open_run, rebuild_archive, repeated
from llmnas.islands import rebuild_archive as rebuild
from llmnas.llm.base import estimate_tokens
from llmnas.records import Status
from llmnas.repeats import pareto_front

BUDGETS = (5_210, 1_606)


def _tokens(calls: list[dict[str, Any]]) -> tuple[float, float, str]:
    prompt = reply = 0
    reported = all((c.get("usage") or {}).get("prompt_tokens") for c in calls) and calls
    for call in calls:
        usage = call.get("usage") or {}
        if reported:
            prompt += int(usage.get("prompt_tokens", 0))
            reply += int(usage.get("completion_tokens", 0))
        else:
            prompt += estimate_tokens(call.get("messages") or [])
            reply += estimate_tokens(call.get("replies") or [])
    n = max(len(calls), 1)
    return prompt / n, reply / n, "reported" if reported else "chars/4"


def measure(run_dir: Path, layout: dict[str, Any] | None) -> dict[str, Any]:
    with open_run(run_dir) as store:
        cands = store.candidates()
        calls = [c for c in store.llm_calls() if not c.get("error")]
        reps = repeated(store)
        own = rebuild_archive(store)
        shared = rebuild(cands, layout) if layout else own
        own_layout = archive_config(store)
    made = [c for c in cands if c.operator != "seed"]
    ok = [c for c in cands if c.status is Status.OK and c.val_accuracy is not None]
    dupes = sum(1 for c in made if c.result.failure and c.result.failure.stage == "dedup")
    failures: dict[str, int] = {}
    for c in made:
        if c.result.failure is not None and c.result.failure.stage != "dedup":
            kind = c.result.failure.kind.value
            failures[kind] = failures.get(kind, 0) + 1

    def params(c) -> int:
        return int(c.result.metrics.get("params") or 0)

    best: dict[str, Any] = {}
    for budget in BUDGETS:
        fits = [c for c in ok if params(c) <= budget]
        rep = [reps[c.id] for c in fits if c.id in reps]
        single = max(fits, key=lambda c: (c.val_accuracy, -c.id), default=None)
        top = max(rep, key=lambda r: (r.mean, -r.id), default=None)
        best[str(budget)] = {
            "repeated": None
            if top is None
            else {
                "id": top.id,
                "params": params(next(c for c in ok if c.id == top.id)),
                "mean": top.mean,
                "std": top.std,
                "n": top.n,
            },  # fmt: skip
            "single": None
            if single is None
            else {"id": single.id, "params": params(single), "val": single.val_accuracy},
        }
    front_ids = pareto_front([(c.id, float(c.val_accuracy), params(c)) for c in ok])
    front = [
        {
            "id": c.id,
            "params": params(c),
            "val": c.val_accuracy,
            "mean": reps[c.id].mean if c.id in reps else None,
            "std": reps[c.id].std if c.id in reps else None,
        }
        for c in sorted((c for c in ok if c.id in front_ids), key=params)
    ]
    hashes = [c.get("prompt_sha256") for c in calls]
    prompt_t, reply_t, how = _tokens(calls)
    return {
        "run": str(run_dir),
        "candidates": len(cands),
        "made": len(made),
        "ok_made": sum(1 for c in made if c.status is Status.OK),
        "duplicates": dupes,
        "failures": failures,
        "best": best,
        "front": front,
        "coverage_own": own.coverage,
        "elites_own": len(own),
        "layout_own": {k: own_layout.get(k) for k in ("descriptors", "bins", "ranges")},
        "coverage_shared": shared.coverage,
        "elites_shared": len(shared),
        "qd_shared": shared.qd_score,
        "calls": len(calls),
        "distinct_prompts": len(set(hashes)),
        "prompt_tokens": prompt_t,
        "reply_tokens": reply_t,
        "tokens_from": how,
    }


def _fmt_best(b: dict[str, Any]) -> str:
    if b["repeated"]:
        r = b["repeated"]
        return f"{r['mean']:.3f} ± {r['std']:.3f} (n={r['n']}, #{r['id']}, {r['params']:,} p)"
    if b["single"]:
        s = b["single"]
        return f"{s['val']:.3f} single run, not repeated (#{s['id']}, {s['params']:,} p)"
    return "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--layout", type=Path, help="compare coverage on this run's archive layout")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    args = ap.parse_args()
    layout = None
    if args.layout:
        with open_run(args.layout) as store:
            layout = archive_config(store)
    rows = [measure(r, layout) for r in args.runs]
    for m in rows:
        print(f"\n== {m['run']}")
        made = max(m["made"], 1)
        print(f"candidates {m['candidates']}, made by the operator {m['made']}, ok "
              f"{m['ok_made']} ({m['ok_made'] / made:.0%}), duplicates {m['duplicates']}, "
              f"failures {m['failures'] or 'none'}")  # fmt: skip
        for budget in BUDGETS:
            print(f"best at <= {budget:,} params: {_fmt_best(m['best'][str(budget)])}")
        print("Pareto front (params: single run -> repeat mean ± std):")
        for p in m["front"]:
            rep = "" if p["mean"] is None else f" -> {p['mean']:.3f} ± {p['std']:.3f}"
            print(f"  #{p['id']:>3} {p['params']:>9,}: {p['val']:.3f}{rep}")
        print(f"coverage (own layout) {m['coverage_own']:.1%} with {m['elites_own']} elites; "
              f"on the shared layout {m['coverage_shared']:.1%} with {m['elites_shared']} "
              f"elites, QD-score {m['qd_shared']:.2f}")  # fmt: skip
        calls = max(m["calls"], 1)
        print(f"LLM calls {m['calls']}, distinct prompts {m['distinct_prompts']} "
              f"({m['distinct_prompts'] / calls:.0%}); per call {m['prompt_tokens']:,.0f} "
              f"prompt and {m['reply_tokens']:,.0f} reply tokens ({m['tokens_from']})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
