"""Benchmark the run store: insert latency and resume time (open + summaries + archive rebuild).

Run: ``.venv/bin/python benchmarks/store.py [--inserts 2000] [--rows 100000]``. Prints a table
with the targets beside the measured numbers. Insert latency is measured through the public
``RunStore.add_candidate`` (one transaction each) with ~2 KB sources, for both
``synchronous=NORMAL`` (default) and ``FULL``. The large store is filled with ``executemany``
(fast, not what is being measured), closed, then timed from a fresh ``RunStore.open``; the OS
page cache is warm, as it is when a run is resumed right after it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmnas.descriptors import compute_descriptors  # noqa: E402
from llmnas.records import EvalResult, Status  # noqa: E402
from llmnas.store import CANDIDATE_COLUMNS, RunStore  # noqa: E402

INSERT_TARGET_MS = 5.0
RESUME_S = 2.0

_BLOCK = """
class Block{i}(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size={k}, padding={p})
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.norm(self.conv(x)))
"""


def make_source(rng: np.random.Generator, size: int = 2000) -> str:
    """A plausible candidate program of about ``size`` characters."""
    parts = ["import torch\nfrom torch import nn\n"]
    i = 0
    while sum(map(len, parts)) < size - 300:
        k = int(rng.choice([3, 5, 7]))
        parts.append(_BLOCK.format(i=i, k=k, p=k // 2))
        i += 1
    parts.append(
        "\nclass Model(nn.Module):\n    def __init__(self, input_shape, num_classes):\n"
        f"        super().__init__()\n        self.stem = nn.Conv1d(1, {int(rng.integers(8, 64))}"
        ", 3, padding=1)\n        self.head = nn.LazyLinear(num_classes)\n\n"
        "    def forward(self, x):\n        return self.head(self.stem(x).flatten(1))\n"
    )
    return "".join(parts)


def make_result(rng: np.random.Generator) -> EvalResult:
    params = int(10 ** rng.uniform(2.6, 6.0))
    metrics = {
        "val_accuracy": float(rng.uniform(0.1, 0.99)),
        "params": params,
        "flops": params * int(rng.integers(1, 200)),
        "train_seconds": float(rng.uniform(1, 30)),
        "depth": int(rng.integers(1, 20)),
    }
    proxies = {"synflow": float(rng.normal()), "naswot": float(rng.normal()), "snip": None}
    timings = {"build": 0.01, "proxies": 0.2, "train": metrics["train_seconds"]}
    return EvalResult(
        status=Status.OK,
        metrics=metrics,
        proxies=proxies,
        proxy_notes={"snip": "non-finite"},
        timings=timings,
    )


def bench_inserts(root: Path, n: int, synchronous: str) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    store = RunStore.create(root / f"ins_{synchronous}", config={}, synchronous=synchronous)
    samples = []
    for i in range(n):
        source, result = make_source(rng), make_result(rng)
        desc = compute_descriptors(result.metrics)
        meta = {"instruction": "make it deeper", "llm_call_ids": [], "island": i % 4}
        start = time.perf_counter()
        store.add_candidate(
            source=source,
            operator="mutate",
            parent_ids=[max(1, i - 3)] if i else [],
            result=result,
            hash=f"{i:064x}",
            descriptors=desc,
            meta=meta,
            generation=i // 50,
        )
        samples.append((time.perf_counter() - start) * 1000)
    store.close()
    return statistics.median(samples), float(np.percentile(samples, 95))


def build_large(root: Path, rows: int) -> Path:
    rng = np.random.default_rng(1)
    run = root / "large"
    RunStore.create(run, config={"archive": {}}).close()
    sources = [make_source(rng) for _ in range(64)]
    results = [make_result(rng) for _ in range(512)]
    data = []
    for i in range(1, rows + 1):
        res = results[i % len(results)]
        metrics = dict(res.metrics, val_accuracy=float(rng.uniform(0.1, 0.99)))
        params = int(10 ** rng.uniform(2.6, 6.0))
        metrics.update(params=params, flops=params * int(rng.integers(1, 200)))
        failed = rng.random() < 0.2
        data.append((
            i, i // 100, "mutate", json.dumps([max(1, i - 7)]), sources[i % len(sources)],
            f"{i:064x}", "failed" if failed else "ok", "crash" if failed else None,
            "boom" if failed else None, "train" if failed else None,
            json.dumps({} if failed else metrics), json.dumps(res.proxies),
            json.dumps(res.proxy_notes), json.dumps(compute_descriptors(metrics)),
            json.dumps(res.timings), json.dumps({"instruction": "x"}), "cpu", time.time(),
        ))  # fmt: skip
    store = RunStore.open(run)
    marks = ", ".join("?" * len(CANDIDATE_COLUMNS))
    with store._tx():
        store._conn.executemany(
            f"INSERT INTO candidates({', '.join(CANDIDATE_COLUMNS)}) VALUES ({marks})", data
        )
    store.close()
    return run


def bench_resume(run: Path, full: bool) -> dict[str, float]:
    start = time.perf_counter()
    from llmnas.archive import QDArchive

    QDArchive()  # imports pyribs (and torch): a one-off cost of the process, reported apart
    out = {"import_s": time.perf_counter() - start}
    start = time.perf_counter()
    store = RunStore.open(run, read_only=True)
    out["open_s"] = time.perf_counter() - start
    summaries = store.summaries()
    out["summaries_s"] = time.perf_counter() - start - out["open_s"]
    archive = QDArchive.from_candidates(summaries, store.config()["archive"])
    out["total_s"] = time.perf_counter() - start
    out["rebuild_s"] = out["total_s"] - out["open_s"] - out["summaries_s"]
    out["elites"], out["rows"] = len(archive), len(summaries)
    if full:
        start = time.perf_counter()
        store.candidates()
        out["full_candidates_s"] = time.perf_counter() - start
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inserts", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--full", action="store_true", help="also time candidates() with sources")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmnas-bench-") as tmp:
        root = Path(tmp)
        lines = []
        for sync in ("NORMAL", "FULL"):
            med, p95 = bench_inserts(root, args.inserts, sync)
            what = f"add_candidate, synchronous={sync}, {args.inserts} inserts, ~2 KB source"
            lines.append((f"{what}: median ms", f"{med:.3f}", f"<= {INSERT_TARGET_MS:g}"))
            lines.append((f"{what}: p95 ms", f"{p95:.3f}", f"<= {INSERT_TARGET_MS:g}"))
        t0 = time.perf_counter()
        run = build_large(root, args.rows)
        build_s = time.perf_counter() - t0
        size_mb = (run / "run.sqlite").stat().st_size / 2**20
        r = bench_resume(run, args.full)
        rows = int(r["rows"])
        lines += [
            (f"setup: {rows} rows by executemany, {size_mb:.0f} MB, s", f"{build_s:.2f}", ""),
            ("import pyribs+torch (once per process) s", f"{r['import_s']:.2f}", ""),
            ("  open store s", f"{r['open_s']:.3f}", ""),
            (f"  summaries() of {rows} rows s", f"{r['summaries_s']:.3f}", ""),
            (f"  rebuild archive ({int(r['elites'])} elites) s", f"{r['rebuild_s']:.3f}", ""),
            ("resume: open + summaries + rebuild s", f"{r['total_s']:.3f}", f"<= {RESUME_S:g}"),
        ]  # fmt: skip
        if args.full:
            lines.append(
                ("(reference) candidates() with sources s", f"{r['full_candidates_s']:.2f}", "")
            )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines.append((f"machine: {os.cpu_count()} CPUs, load average {load}", "", ""))
    width = max(len(a) for a, _, _ in lines)
    print(f"{'measure':<{width}}  {'value':>9}  target")
    for name, value, target in lines:
        print(f"{name:<{width}}  {value:>9}  {target}")


if __name__ == "__main__":
    main()
