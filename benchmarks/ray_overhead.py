"""What the Ray executor adds per candidate, and its throughput with one and two actors.

1. Overhead: the same MNIST-1D candidates (``--epochs 0 --proxies none``: run the source,
   build, shape check, params and FLOPs) through the local sandbox pool (1 worker) and through
   one Ray actor holding a 1-worker pool, measured side by side in one run (alternating
   candidate by candidate, both warm). Per-candidate wall time as the evaluator sees it.
2. Throughput: training jobs (MNIST-1D seed programs, ``--epochs`` each) through 1 actor and
   through 2 actors (one worker and one thread each), all submitted at once.

    python benchmarks/ray_overhead.py [--candidates 40] [--jobs 16] [--epochs 2]

Target (issue 14): Ray adds <= 50 ms per candidate (median).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import ray

from llmnas.config import ExecutorSettings
from llmnas.evaluator import EvalSettings, Evaluator
from llmnas.tasks import get_task

TARGET_MS = 50.0


def candidates(n: int) -> list[str]:
    seeds = list(get_task("mnist1d").seed_programs().values())
    # vary the program so nothing is cached between identical sources
    return [seeds[i % len(seeds)] + f"\n\nVARIANT = {i}\n" for i in range(n)]


def ray_settings(actors: int) -> ExecutorSettings:
    return ExecutorSettings(kind="ray", actors=actors, workers_per_node=1, threads_per_worker=1)


def quantiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def overhead(task, sources: list[str]) -> None:
    probe = EvalSettings(epochs=0)
    local = Evaluator(task, workers=1, threads=1, settings=probe)
    remote = Evaluator(task, settings=probe, executor=ray_settings(1))
    times: dict[str, list[float]] = {"local pool": [], "ray, 1 actor": []}
    try:
        for ev in (local, remote):  # warm both
            ev.evaluate(sources[0])
        for src in sources:
            for name, ev in (("local pool", local), ("ray, 1 actor", remote)):
                t = time.perf_counter()
                result = ev.evaluate(src)
                times[name].append(time.perf_counter() - t)
                assert result.ok, result.failure
        mode = f"{local.isolation} / {remote.isolation}"
    finally:
        local.close()
        remote.close()
    print(f"1. overhead per candidate, {len(sources)} MNIST-1D candidates, --epochs 0 "
          f"--proxies none; isolation {mode}\n")  # fmt: skip
    print(f"{'':16}{'median ms':>11}{'p90 ms':>9}")
    for name, ts in times.items():
        med, p90 = quantiles(ts)
        print(f"{name:16}{med * 1000:>11.1f}{p90 * 1000:>9.1f}")
    (lm, lp), (rm, rp) = quantiles(times["local pool"]), quantiles(times["ray, 1 actor"])
    paired = [r - lo for lo, r in zip(times["local pool"], times["ray, 1 actor"], strict=True)]
    added = statistics.median(paired) * 1000
    print(f"\nratio ray / local (medians): {rm / lm:.2f}x; added per candidate: median "
          f"{added:.1f} ms (paired), p90 {(rp - lp) * 1000:.1f} ms")  # fmt: skip
    verdict = "met" if added <= TARGET_MS else "MISSED"
    print(f"target: Ray adds <= {TARGET_MS:g} ms per candidate -> {verdict}\n")


def throughput(task, jobs: int, epochs: int) -> None:
    train = EvalSettings(epochs=epochs)
    sources = candidates(jobs)
    rates = {}
    print(f"2. throughput, {jobs} MNIST-1D training jobs x {epochs} epoch(s), all submitted "
          "at once (one worker, one thread per actor)\n")  # fmt: skip
    for actors in (1, 2):
        with Evaluator(task, settings=train, executor=ray_settings(actors)) as ev:
            ev.evaluate_many(sources[: ev.workers])  # warm
            t = time.perf_counter()
            results = ev.evaluate_many(sources)
            wall = time.perf_counter() - t
        ok = sum(r.ok for r in results)
        rates[actors] = jobs / wall
        print(
            f"{actors} actor(s): {wall:6.2f} s, {rates[actors]:.2f} candidates/s ({ok}/{jobs} ok)"
        )
    print(f"\nspeed-up 2 actors / 1 actor: {rates[2] / rates[1]:.2f}x on {os.cpu_count()} cores")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=40)
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    task = get_task("mnist1d")
    task.load()
    t = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"local Ray {ray.__version__} started in {time.perf_counter() - t:.1f} s; "
          f"load average {os.getloadavg()[0]:.2f}\n")  # fmt: skip
    try:
        overhead(task, candidates(args.candidates))
        throughput(task, args.jobs, args.epochs)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
