"""Benchmark the web explorer on a large run: the run page and the candidates API, ≤ 1 s each.

Run: ``.venv/bin/python benchmarks/ui_latency.py [--rows 10000]``. Builds a store of ``--rows``
candidates through ``RunStore.add_candidate`` (≈2 KB sources, LLM-style meta with a ≈6 KB prompt
and a ≈2 KB reply, one recorded LLM call each, 10 % failures, parents and descriptors), starts
the real ``llmnas ui`` on a free loopback port and times HTTP requests as a browser makes them:
the run page (HTML), the run's data (``/api/runs/RUN``: curves, map, front, rates), the
candidates API (first page sorted by accuracy, and one filtered by operator), a candidate page
and the runs list. "cold" is the first request after the store was written (the server
computes and caches); "warm" the median of 5 more. Prints the target beside each number.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmnas.config import RunConfig  # noqa: E402
from llmnas.descriptors import compute_descriptors  # noqa: E402
from llmnas.records import EvalResult, FailureKind, Status  # noqa: E402
from llmnas.store import RunStore  # noqa: E402

TARGET_S = 1.0


def build(run_dir: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    config = RunConfig(task="mnist1d", strategy="llm", budget=rows).model_dump(mode="json")
    prompt = [{"role": "system", "content": "s" * 300}, {"role": "user", "content": "u" * 6000}]
    with RunStore.create(run_dir, config=config) as store:
        for i in range(1, rows + 1):
            width = rng.randint(4, 256)
            source = f"# candidate {i}\nclass Model:  # width {width}\n" + "x = 1\n" * 330
            parents = [] if i <= 4 else rng.sample(range(1, i), k=rng.choice((1, 1, 2)))
            instruction = f"instruction {rng.randint(0, 30)}"
            if rng.random() < 0.1:
                result = EvalResult.failed(FailureKind.CRASH, f"boom {i}", stage="train")
                descriptors = {}
            else:
                params = rng.randint(400, 400_000)
                metrics = {"val_accuracy": rng.uniform(0.3, 0.99), "params": params,
                           "flops": params * rng.randint(10, 200), "depth": rng.randint(1, 12),
                           "width": width, "train_seconds": rng.uniform(1, 60)}  # fmt: skip
                result = EvalResult(status=Status.OK, metrics=metrics)
                descriptors = compute_descriptors(metrics)
            call = store.record({"messages": prompt, "replies": ["r" * 2000], "model": "m",
                                 "usage": {"prompt_tokens": 1600, "completion_tokens": 500,
                                           "cost_usd": 0.001}})  # fmt: skip
            store.add_candidate(
                source=source, operator=rng.choice(("mutate", "crossover", "fix")),
                result=result, hash=f"h{i}", parent_ids=parents, descriptors=descriptors,
                meta={"prompt": prompt, "reply": "r" * 2000, "instruction": instruction,
                      "llm_call_ids": [call]},
            )  # fmt: skip


def timed(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        r.read()
        assert r.status == 200, (url, r.status)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        build(root / "big", args.rows)
        size = (root / "big" / "run.sqlite").stat().st_size / 1e6
        print(f"built a {args.rows:,}-candidate store ({size:.0f} MB) in "
              f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "llmnas", "ui", str(root), "--port", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        try:
            base = proc.stdout.readline().strip().rstrip("/")  # type: ignore[union-attr]
            while True:
                try:
                    timed(base + "/static/app.js")
                    break
                except OSError:
                    time.sleep(0.05)
            print(f"`llmnas ui` answered {time.perf_counter() - started:.1f} s after it was started"
                  " (imports and socket; the runs are read on demand)")  # fmt: skip
            paths = {
                "run page (HTML)": "/run/big",
                "run data /api/runs/big": "/api/runs/big",
                "candidates API, sorted by accuracy": "/api/runs/big/candidates?sort=val_accuracy&order=desc",
                "candidates API, filtered (operator)": "/api/runs/big/candidates?operator=fix&offset=100",
                "candidate page (HTML)": f"/run/big/candidate/{args.rows}",
                "runs list /api/runs": "/api/runs",
            }
            print(
                f"| request ({args.rows:,} candidates) | cold (s) | warm median of 5 (s) | target |"
            )
            print("|---|---:|---:|---|")
            misses = 0
            for name, path in paths.items():
                cold = timed(base + path)
                warm = statistics.median(timed(base + path) for _ in range(5))
                ok = max(cold, warm) <= TARGET_S
                misses += not ok
                print(
                    f"| {name} | {cold:.3f} | {warm:.3f} | ≤ {TARGET_S:g} s {'met' if ok else 'MISSED'} |"
                )
            print("all within target" if not misses else f"{misses} request(s) missed the target")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
