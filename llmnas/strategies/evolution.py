"""Code-level evolution over the QD archive: the ``llm`` and ``ast`` strategies.

One strategy, two operators. ``ask(n)`` first offers the task's seed programs (operator
``seed``), then for each slot draws a request: *fix* a recent failed candidate (if the operator
can fix and one is waiting), *crossover* of two elites, or *mutate* ``k`` elites chosen by the
archive's parent selection (see :mod:`llmnas.archive`). With probability ``niche_rate`` a
mutation also names a *niche*: the descriptor ranges of an empty or weakly held archive cell
next to its first parent (:meth:`~llmnas.archive.QDArchive.niche_near`). Each request carries
the run's memory: the last ``memory`` committed attempts (seeds excluded) and the current
elites (with ``seeds_in_history`` the seed programs count as attempts too). The operator turns
requests into proposals (an LLM prompt, or a syntax-tree edit).
The loop adds every committed candidate to the archive before ``tell``; ``tell`` remembers
candidates (parents are drawn from them) and the failures worth fixing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from llmnas.archive import QDArchive
from llmnas.descriptors import descriptor_vector
from llmnas.gate import check
from llmnas.islands import IslandArchive
from llmnas.records import Candidate, FailureKind, Proposal

__all__ = ["CodeOperator", "EvolutionStrategy", "Request"]

FIXABLE = {
    FailureKind.SYNTAX,
    FailureKind.CONTRACT,
    FailureKind.IMPORT,
    FailureKind.SHAPE,
    FailureKind.NONFINITE,
    FailureKind.CRASH,
}


@dataclass
class Request:
    """What the strategy asks an operator for."""

    kind: Literal["mutate", "crossover", "fix"]
    parents: list[Candidate]
    seed: int
    niche: dict[str, tuple[float, float]] | None = None
    history: list[Candidate] = field(default_factory=list)
    elites: list[Candidate] = field(default_factory=list)


class CodeOperator(Protocol):
    name: str
    can_fix: bool

    def run(self, requests: Sequence[Request]) -> list[Proposal]:
        """Proposals for the requests (fewer when some could not be served)."""
        ...


class EvolutionStrategy:
    """Archive-driven code evolution with a pluggable operator (keyword-only, seeded)."""

    def __init__(
        self,
        *,
        operator: CodeOperator,
        archive: QDArchive | IslandArchive,
        seeds: dict[str, str],
        seed: int,
        parents: int = 2,
        crossover_rate: float = 0.2,
        fix_rate: float = 0.3,
        niche_rate: float = 0.0,
        memory: int = 0,
        seeds_in_history: bool = False,
    ):
        self.name = operator.name
        self.operator = operator
        self.archive = archive
        self.rng = np.random.default_rng(seed)
        self.parents = parents
        self.crossover_rate = crossover_rate
        self.fix_rate = fix_rate if operator.can_fix else 0.0
        self.niche_rate = niche_rate
        self.memory = memory
        self.seeds_in_history = seeds_in_history
        self._seed_queue = [(name, src) for name, src in sorted(seeds.items())]
        self._seed_hashes = {check(src).hash for _, src in self._seed_queue}
        self._known: dict[int, Candidate] = {}
        self._to_fix: deque[Candidate] = deque(maxlen=32)
        self._history: deque[Candidate] = deque(maxlen=max(memory, 1))

    def ask(self, n: int) -> list[Proposal]:
        out: list[Proposal] = []
        while self._seed_queue and len(out) < n:
            name, source = self._seed_queue.pop(0)
            out.append(Proposal(source=source, operator="seed", meta={"seed_name": name}))
        requests = [self._request() for _ in range(n - len(out))]
        requests = [r for r in requests if r is not None]
        if requests:
            out.extend(self.operator.run(requests))
        return out

    def _request(self) -> Request | None:
        seed = int(self.rng.integers(2**31))
        if self._to_fix and self.rng.random() < self.fix_rate:
            return Request("fix", [self._to_fix.popleft()], seed)
        elite_ids = self.archive.elite_ids()
        if not elite_ids:
            return None
        memory = {
            "history": list(self._history) if self.memory else [],
            "elites": [self._known[i] for i in elite_ids] if self.memory else [],
        }
        if len(elite_ids) >= 2 and self.rng.random() < self.crossover_rate:
            ids = self.archive.crossover_pair(self.rng)  # within one island
            if ids is not None:
                return Request("crossover", [self._known[i] for i in ids], seed, **memory)
        ids = self.archive.select_parents(self.parents, self.rng)
        parents = [self._known[i] for i in dict.fromkeys(ids)]
        niche = None
        if self.niche_rate and self.rng.random() < self.niche_rate:
            niche = self._niche(parents[0])
        return Request("mutate", parents, seed, niche=niche, **memory)

    def _niche(self, parent: Candidate) -> dict[str, tuple[float, float]] | None:
        names = self.archive.config.descriptors
        measures = descriptor_vector(names, parent.descriptors, parent.result.metrics)
        if measures is None:
            return None
        return self.archive.niche_near(measures, self.rng, parent_id=parent.id)

    def tell(self, candidates: Sequence[Candidate]) -> None:
        for cand in candidates:
            self._known[cand.id] = cand
            if cand.operator != "seed" or self.seeds_in_history:
                self._history.append(cand)
            if cand.operator == "seed" and cand.hash in self._seed_hashes:
                self._seed_queue = [
                    (n, s) for n, s in self._seed_queue if check(s).hash != cand.hash
                ]
            failure = cand.result.failure
            if failure is not None and failure.kind in FIXABLE and cand.operator != "fix":
                self._to_fix.append(cand)
