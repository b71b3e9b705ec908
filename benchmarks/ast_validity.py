"""How often do the classical AST operators produce valid candidates? (a script, not a test)

Chains mutations a few generations deep from the MNIST-1D seeds (each generation mutates
seeds and earlier valid mutants), adds some crossovers, and reports per operator kind:
tried, not applicable, gate-valid, and builds with output (B, num_classes). Builds are checked
in a subprocess (this process never executes candidate code), one subprocess per generation.

    .venv/bin/python benchmarks/ast_validity.py [--per-generation 60] [--generations 4]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable

from llmnas import gate
from llmnas.operators.ast_ops import (
    CROSSOVERS,
    MUTATIONS,
    NotApplicable,
    apply_crossover,
    apply_mutation,
)
from llmnas.tasks import Task, get_task

BUILD_CHECK = r"""
import json, sys, torch
torch.set_num_threads(1)
torch.manual_seed(0)
jobs = json.load(sys.stdin)
out = []
for job in jobs:
    try:
        ns = {"__name__": "candidate"}
        exec(compile(job["source"], "candidate.py", "exec"), ns)
        shape, k = tuple(job["input_shape"]), job["num_classes"]
        model = ns["Model"](shape, k)
        for p in model.parameters():
            if isinstance(p, torch.nn.parameter.UninitializedParameter):
                raise RuntimeError("uninitialised (lazy) parameter after __init__")
        model.train()
        y = model(torch.randn(4, *shape))
        model.eval()
        with torch.no_grad():
            z = model(torch.randn(3, *shape))
        if tuple(y.shape) != (4, k) or tuple(z.shape) != (3, k):
            raise RuntimeError(f"output shape {tuple(y.shape)}, {tuple(z.shape)}")
        if not torch.isfinite(z).all():
            raise RuntimeError("non-finite output")
        out.append(None)
    except BaseException as exc:
        out.append(f"{type(exc).__name__}: {exc}"[:300])
print(json.dumps(out))
"""


def build_check(sources: list[str], input_shape: tuple[int, ...], num_classes: int) -> list:
    """None per source that builds and outputs (B, num_classes), else an error message."""
    if not sources:
        return []
    jobs = [{"source": s, "input_shape": input_shape, "num_classes": num_classes} for s in sources]
    proc = subprocess.run(
        [sys.executable, "-c", BUILD_CHECK],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"build checker failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _evaluator_check(task: Task) -> tuple[Callable[..., list], Callable[[], None]]:
    """A checker running each program through the project's sandboxed evaluator, and its close."""
    from llmnas.evaluator import EvalSettings, Evaluator

    evaluator = Evaluator(task, workers=2)
    settings = EvalSettings(epochs=0, timeout_s=60.0)

    def check(sources: list[str], shape: tuple[int, ...], classes: int) -> list:
        results = evaluator.evaluate_many(sources, settings)
        return [None if r.ok else f"{r.failure.kind}: {r.failure.message}" for r in results]

    return check, evaluator.close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-generation", type=int, default=60, help="mutations per generation")
    parser.add_argument("--crossovers", type=int, default=10, help="crossovers per generation")
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", default="mnist1d", help="task whose seeds are mutated")
    parser.add_argument(
        "--evaluator",
        action="store_true",
        help="check builds with the sandboxed llmnas.evaluator (--epochs 0) instead of the "
        "plain subprocess checker",
    )
    parser.add_argument(
        "--lineage",
        action="store_true",
        help="parents from the previous generation only (deeper chains) instead of all so far",
    )
    args = parser.parse_args()

    task = get_task(args.task)
    shape, classes = tuple(task.input_shape), task.num_classes
    rng = random.Random(args.seed)
    pool = list(task.seed_programs().values())
    parents = list(pool)
    stats: dict[str, Counter] = defaultdict(Counter)
    misses: list[str] = []
    check, close = _evaluator_check(task) if args.evaluator else (build_check, lambda: None)
    started = time.perf_counter()
    for gen in range(args.generations):
        made: list[tuple[str, str, str]] = []  # (kind, description, source)
        children: list[str] = []
        plan = [rng.choice(MUTATIONS) for _ in range(args.per_generation)]
        plan += [rng.choice(CROSSOVERS) for _ in range(args.crossovers)]
        for kind in plan:
            stats[kind]["tried"] += 1
            try:
                if kind in CROSSOVERS:
                    a, b = rng.choice(parents), rng.choice(pool)
                    edit = apply_crossover(kind, a, b, rng, shape)
                else:
                    edit = apply_mutation(kind, rng.choice(parents), rng, shape)
            except NotApplicable:
                stats[kind]["n/a"] += 1
                continue
            result = gate.check(edit.source)
            if not result.ok:
                misses.append(f"gen {gen} {kind}: gate {result.failure}: {edit.description}")
                continue
            stats[kind]["gate"] += 1
            made.append((kind, edit.description, result.source))
        errors = check([src for _, _, src in made], shape, classes)
        for (kind, description, source), error in zip(made, errors, strict=True):
            if error is None:
                stats[kind]["builds"] += 1
                pool.append(source)
                children.append(source)
            else:
                misses.append(f"gen {gen} {kind}: {description}: {error}")
        parents = children if args.lineage and children else pool
    close()
    elapsed = time.perf_counter() - started

    header = f"{'kind':<16}{'tried':>7}{'n/a':>7}{'gate-ok':>9}{'builds':>8}{'valid %':>9}"
    print(header)
    print("-" * len(header))
    total = Counter()
    for kind in (*MUTATIONS, *CROSSOVERS):
        s = stats[kind]
        total.update(s)
        produced = s["tried"] - s["n/a"]
        rate = f"{100 * s['builds'] / produced:.1f}" if produced else "-"
        print(f"{kind:<16}{s['tried']:>7}{s['n/a']:>7}{s['gate']:>9}{s['builds']:>8}{rate:>9}")
    print("-" * len(header))
    produced = total["tried"] - total["n/a"]
    rate = 100 * total["builds"] / max(produced, 1)
    print(
        f"{'all':<16}{total['tried']:>7}{total['n/a']:>7}{total['gate']:>9}"
        f"{total['builds']:>8}{rate:>9.1f}"
    )
    print(
        f"\nvalid-candidate rate: {total['builds']}/{produced} applicable edits = {rate:.1f} % "
        f"(target >= 90 %); task {args.task}, {args.generations} generations, final pool {len(pool)} programs, "
        f"{elapsed:.1f} s"
    )
    print(f"misses ({len(misses)}):")
    for line in misses[:25]:
        print("  " + line)


if __name__ == "__main__":
    main()
