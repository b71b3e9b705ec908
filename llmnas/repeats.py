"""Repeated training of the best candidates, so that noise does not pick the incumbent.

A search scores each candidate once: one short training on a few hundred validation examples,
whose accuracy moves by a point or two with the training seed or the thread count. After the
search, the candidates most worth trusting are trained again with other training seeds
(``recipe.seed + 1``, ``+ 2``, ...):

- the ``top_k`` most accurate ok candidates by their single-run validation accuracy, and
- with ``pareto``, every candidate on the single-run Pareto front of validation accuracy
  (higher is better) against parameters (fewer is better).

Each repeat is a row of the store's ``repeats`` table; the single-run value stays in the
candidate's metrics. A repeated candidate's score is the mean over its original training and
its repeats (a training that fails counts as accuracy 0: a model that diverges for some seeds
is not a model to trust), reported with the standard deviation. The incumbent is the repeated
candidate with the highest mean (lowest id on ties); a run without repeats falls back to the
single-run best. Repeats are extra trainings; they do not count against the run's budget.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from llmnas.records import Candidate, Status

__all__ = ["Repeated", "choose", "pareto_front", "repeat_stats", "run_repeats"]


@dataclass(frozen=True)
class Repeated:
    """The validation accuracies of one candidate over its training seeds."""

    id: int
    values: tuple[float, ...]
    seeds: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if self.n > 1 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "val_accuracy_mean": self.mean,
            "val_accuracy_std": self.std,
            "n": self.n,
            "seeds": list(self.seeds),
            "values": list(self.values),
        }


def pareto_front(points: Sequence[tuple[int, float, float]]) -> list[int]:
    """Ids of the (id, accuracy, params) points that no other point beats: by increasing
    params, each kept point is more accurate than every point with fewer or equal params (of
    identical points only the lowest id is kept). Returned in ascending id order."""
    front: list[tuple[int, float]] = []
    for cid, acc, _ in sorted(points, key=lambda t: (t[2], -t[1], t[0])):
        if not front or acc > front[-1][1]:
            front.append((cid, acc))
    return sorted(cid for cid, _ in front)


def _ok(candidates: Sequence[Candidate]) -> list[Candidate]:
    return [c for c in candidates if c.status is Status.OK and c.val_accuracy is not None]


def choose(candidates: Sequence[Candidate], *, top_k: int, pareto: bool) -> list[int]:
    """Ids to repeat: the ``top_k`` most accurate, plus the Pareto front when asked."""
    ok = _ok(candidates)
    if top_k <= 0:
        return []
    ranked = sorted(ok, key=lambda c: (-float(c.val_accuracy or 0.0), c.id))
    ids = {c.id for c in ranked[:top_k]}
    if pareto:
        points = [
            (c.id, float(c.val_accuracy or 0.0), float(c.result.metrics.get("params") or 0))
            for c in ok
        ]
        ids |= set(pareto_front(points))
    return sorted(ids)


def repeat_stats(store: Any, base_seed: int) -> dict[int, Repeated]:
    """Every repeated candidate's accuracies: its original training (``base_seed``) first."""
    out = {}
    for cid, by_seed in store.repeats().items():
        original = store.get(cid).val_accuracy
        seeds = [base_seed, *sorted(by_seed)]
        values = [original, *(by_seed[s] for s in sorted(by_seed))]
        accs = tuple(0.0 if v is None else float(v) for v in values)
        out[cid] = Repeated(cid, accs, tuple(seeds))
    return out


def run_repeats(
    store: Any,
    evaluator: Any,
    settings: Any,
    *,
    top_k: int,
    seeds: int,
    pareto: bool,
    base_seed: int,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Train the chosen candidates until each has ``seeds`` trainings; return how many ran.

    Resumable: trainings already in the store are not repeated. ``settings`` is the run's
    :class:`~llmnas.evaluator.EvalSettings`; only its training seed changes.
    """
    store.set_state("repeats_base_seed", base_seed)  # what repeat_stats reads back
    candidates = store.candidates(status=Status.OK.value)
    done = store.repeats()
    jobs = [
        (cid, base_seed + k)
        for cid in choose(candidates, top_k=top_k, pareto=pareto)
        for k in range(1, seeds)
        if base_seed + k not in done.get(cid, {})
    ]
    if not jobs:
        return 0
    sources = {c.id: c.source for c in candidates}

    def train(job: tuple[int, int]) -> tuple[int, int, Any]:
        cid, seed = job
        if should_stop is not None and should_stop():
            return cid, seed, None
        return cid, seed, evaluator.evaluate(sources[cid], replace(settings, seed=seed))

    finished = 0
    with ThreadPoolExecutor(max_workers=max(1, evaluator.workers)) as pool:
        for cid, seed, result in pool.map(train, jobs):
            if result is None:
                continue
            store.add_repeat(cid, seed, result)
            finished += 1
            if on_progress is not None:
                on_progress(finished, len(jobs))
    return finished
