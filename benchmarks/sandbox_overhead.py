"""Per-candidate fixed overhead of the sandbox against a fresh interpreter per candidate.

Both sides do the same work for each candidate (``--epochs 0 --proxies none``): run the
source, build ``Model``, check the output shape, count parameters and FLOPs. The sandbox side
is the warm pool (fork per candidate, bubblewrap when present); the baseline starts a new
``python`` that imports torch for every candidate, with no isolation at all.

    python benchmarks/sandbox_overhead.py [--candidates 24]

Targets (issue 2): median sandbox overhead <= 0.15 s and >= 20x faster than the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from llmnas.evaluator import EvalSettings, Evaluator
from llmnas.tasks import get_task

FRESH = r"""
import sys, torch
from torch.utils.flop_counter import FlopCounterMode
ns = {}
exec(compile(sys.stdin.read(), "<candidate>", "exec"), ns)
model = ns["Model"]((1, 40), 10)
x = torch.randn(2, 1, 40)
assert tuple(model(x).shape) == (2, 10)
params = sum(p.numel() for p in model.parameters())
with torch.no_grad(), FlopCounterMode(display=False) as c:
    model(x[:1])
print(params, c.get_total_flops())
"""


def candidates(n: int) -> list[str]:
    seeds = list(get_task("mnist1d").seed_programs().values())
    out = []
    for i in range(n):
        src = seeds[i % len(seeds)]
        # vary the program so nothing is cached between identical sources
        out.append(src + f"\n\nVARIANT = {i}\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=24)
    args = ap.parse_args()
    sources = candidates(args.candidates)
    task = get_task("mnist1d")
    t0 = time.perf_counter()
    ev = Evaluator(task, workers=1, settings=EvalSettings(epochs=0))
    start_s = time.perf_counter() - t0
    pool_times = []
    for src in sources:
        t = time.perf_counter()
        result = ev.evaluate(src)
        pool_times.append(time.perf_counter() - t)
        assert result.ok, result.failure
    mode = ev.isolation
    ev.close()
    fresh_times = []
    for src in sources:
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", FRESH], input=src, text=True, check=True, capture_output=True
        )
        fresh_times.append(time.perf_counter() - t)
    med_pool, med_fresh = statistics.median(pool_times), statistics.median(fresh_times)
    print(
        f"sandbox overhead per candidate, {len(sources)} MNIST-1D candidates, --epochs 0 --proxies none"
    )
    print(f"isolation: {mode}; pool start-up (once): {start_s:.2f} s\n")
    print(f"{'':28}{'median s':>10}{'p90 s':>10}{'max s':>10}")
    for name, times in (
        ("warm pool (fork per cand.)", pool_times),
        ("fresh interpreter", fresh_times),
    ):
        p90 = sorted(times)[int(0.9 * (len(times) - 1))]
        print(f"{name:28}{statistics.median(times):>10.3f}{p90:>10.3f}{max(times):>10.3f}")
    ratio = med_fresh / med_pool
    print(f"\nspeed-up (median): {ratio:.1f}x")
    print(f"target median <= 0.15 s: {'met' if med_pool <= 0.15 else 'MISSED'} ({med_pool:.3f} s)")
    print(f"target >= 20x: {'met' if ratio >= 20 else 'MISSED'} ({ratio:.1f}x)")


if __name__ == "__main__":
    main()
