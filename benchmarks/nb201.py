"""Random search and regularized evolution on the NAS-Bench-201 tables (a script, not a test).

Usage::

    .venv/bin/python benchmarks/nb201.py [--datasets cifar10 cifar100 imagenet16_120]
        [--seeds 10] [--budget 500] [--population 10] [--sample-size 3]

For each dataset, strategy and seed it drives the strategy through its ask/tell API with a
tiny local loop (one proposal at a time; the tabular task's ``evaluate_source`` answers,
skipping the static gate that rendered programs always pass; each answer is wrapped in :class:`llmnas.records.Candidate` and told back) and records the best
validation accuracy among the first ``budget`` queries. Every query counts, repeats included.
It prints mean +- sample std (ddof=1) over seeds beside the reference values.

References (cifar10 only): NAS-Bench-201 paper, Table 5, cifar10-valid validation accuracy,
regularized evolution 91.19 +- 0.31 and random search 90.93 +- 0.36. Those runs had a
simulated 12,000 s training-time budget and searched on 12-epoch accuracies, so they are a
guide, not the same protocol as "500 queries of the final table".
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from llmnas.records import Candidate
from llmnas.spaces import space_of
from llmnas.strategies.base import Strategy
from llmnas.strategies.random_search import RandomSearch
from llmnas.strategies.regevo import RegularizedEvolution
from llmnas.tasks import get_task
from llmnas.tasks.nb201 import DATASETS, NB201Task, load_table

TASKS = {
    "cifar10": "nb201-cifar10",
    "cifar100": "nb201-cifar100",
    "imagenet16_120": "nb201-imagenet16-120",
}
REFERENCES = {
    ("cifar10", "regevo"): "91.19 +- 0.31",
    ("cifar10", "random"): "90.93 +- 0.36",
}


def run_once(strategy: Strategy, task: NB201Task, budget: int) -> list[float]:
    """Best-so-far validation accuracy (fraction) after each of ``budget`` queries."""
    best, trace = 0.0, []
    for query in range(budget):
        proposals = strategy.ask(1)
        if not proposals:
            break
        proposal = proposals[0]
        result = task.evaluate_source(proposal.source, gate=False)  # rendered code
        strategy.tell(
            [
                Candidate(
                    id=query,
                    source=proposal.source,
                    operator=proposal.operator,
                    parent_ids=proposal.parent_ids,
                    result=result,
                    meta=proposal.meta,
                )
            ]
        )
        best = max(best, float(result.metrics.get("val_accuracy", 0.0)))
        trace.append(best)
    return trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--population", type=int, default=10)
    parser.add_argument("--sample-size", type=int, default=3)
    args = parser.parse_args()

    factories: dict[str, Callable[[NB201Task, int], Strategy]] = {
        "random": lambda task, seed: RandomSearch(space=space_of(task), seed=seed),
        "regevo": lambda task, seed: RegularizedEvolution(
            space=space_of(task),
            seed=seed,
            population_size=args.population,
            sample_size=args.sample_size,
        ),
    }
    print(
        f"NAS-Bench-201 tabular benchmark: {args.seeds} seeds x {args.budget} queries; "
        f"regevo P={args.population} S={args.sample_size}; validation accuracy in %"
    )
    header = (
        f"{'dataset':<15} {'strategy':<8} {'best found (mean +- std)':>25} "
        f"{'@100':>7} {'@250':>7} {'optimum':>8} {'hit opt':>8} {'reference':>14} {'sec':>6}"
    )
    print(header)
    print("-" * len(header))
    for dataset in args.datasets:
        task = get_task(TASKS[dataset])
        assert isinstance(task, NB201Task)
        optimum = max(load_table(dataset).values())
        for name, factory in factories.items():
            start = time.perf_counter()
            traces = [
                run_once(factory(task, seed), task, args.budget) for seed in range(args.seeds)
            ]
            seconds = time.perf_counter() - start
            finals = [100 * t[-1] for t in traces]
            std = statistics.stdev(finals) if len(finals) > 1 else 0.0

            def at(q: int, traces: list[list[float]] = traces) -> str:
                vals = [100 * t[min(q, len(t)) - 1] for t in traces]
                return f"{statistics.fmean(vals):.2f}"

            hits = sum(abs(f - 100 * optimum) < 1e-9 for f in finals)
            print(
                f"{dataset:<15} {name:<8} {statistics.fmean(finals):>16.2f} +- {std:5.2f} "
                f"{at(100):>7} {at(250):>7} {100 * optimum:>8.2f} {hits:>4}/{len(finals):<3} "
                f"{REFERENCES.get((dataset, name), '-'):>14} {seconds:>6.1f}",
                flush=True,
            )
    print(
        "@100/@250: mean best after that many queries. hit opt: seeds that found the best cell."
        "\nReferences: NAS-Bench-201 paper (cifar10-valid, 12,000 s simulated budget); see the"
        " module docstring."
    )


if __name__ == "__main__":
    main()
