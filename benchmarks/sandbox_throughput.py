"""Training throughput inside the sandbox against the same loop run in-process.

The in-process side runs the child's own training function on a seed program that ships
with llmnas (trusted code), with the same data, recipe and thread count; the sandbox side
evaluates the same program through the pool. Both report pure training seconds.

    python benchmarks/sandbox_throughput.py [--epochs 20] [--repeats 3]

Target (issue 2): sandbox throughput >= 0.9x in-process.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from llmnas.evaluator import EvalSettings, Evaluator
from llmnas.sandbox import child
from llmnas.tasks import get_task


def in_process(source: str, task, epochs: int, threads: int) -> float:
    torch.set_num_threads(threads)
    data = task.load()
    arrays = {"train_x": data.train.x, "train_y": data.train.y}
    job = {
        "input_shape": list(task.input_shape),
        "num_classes": task.num_classes,
        "recipe": dict(task.recipe.__dict__),
        "epochs": epochs,
    }
    ns: dict = {}
    exec(compile(source, "<seed>", "exec"), ns)  # a shipped seed program, not a candidate
    torch.manual_seed(0)
    model = ns["Model"](task.input_shape, task.num_classes)
    return child._train(model, arrays, job, torch.device("cpu"))["train_seconds"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    task = get_task("mnist1d")
    seeds = task.seed_programs()
    threads = 1
    print(
        f"training throughput, MNIST-1D, {args.epochs} epochs, {threads} thread, median of {args.repeats}\n"
    )
    print(f"{'model':10}{'in-process s':>14}{'sandbox s':>12}{'ratio':>8}")
    ratios = []
    with Evaluator(
        task, workers=1, threads=threads, settings=EvalSettings(epochs=args.epochs)
    ) as ev:
        for name in ("mlp", "cnn", "gru"):
            local, boxed = [], []
            for _ in range(args.repeats):
                local.append(in_process(seeds[name], task, args.epochs, threads))
                result = ev.evaluate(seeds[name])
                assert result.ok, result.failure
                boxed.append(result.metrics["train_seconds"])
            ratio = statistics.median(local) / statistics.median(boxed)
            ratios.append(ratio)
            print(
                f"{name:10}{statistics.median(local):>14.2f}{statistics.median(boxed):>12.2f}{ratio:>8.2f}"
            )
    worst = min(ratios)
    print(f"\nworst ratio (sandbox throughput / in-process): {worst:.2f}")
    print(f"target >= 0.9x: {'met' if worst >= 0.9 else 'MISSED'}")


if __name__ == "__main__":
    main()
