"""Regularized (aging) evolution, Real et al. 2019 (operator name ``regevo``).

* Until ``population_size`` (P) members have been told, every proposal is a random genotype.
* Then each proposal runs a tournament: ``sample_size`` (S) members are drawn uniformly **with
  replacement** from the population (Real et al., Algorithm 1), the fittest (first on ties)
  is the parent, and its child is one mutation of it (one edge for the cell space; one layer
  attribute, an inserted or a removed layer for the chain space). ``parent_ids`` holds the
  parent's candidate id.
* When a candidate is told it joins the population and, beyond P members, the **oldest**
  member (first told) is removed, whatever its fitness.

Fitness is ``candidate.result.metrics["val_accuracy"]``. Failed or rejected candidates (and
successes without ``val_accuracy``) are **dropped**: they never join the population, never
push a member out and do not count toward the initial P. Candidates of other operators join
too when their genotype can be read (``meta["genotype"]`` or the source), so a run can mix
strategies. Randomness and resume work as in :mod:`llmnas.strategies.random_search`.

Defaults P=10, S=3 are the settings of NAS-Bench-201's REA baseline.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmnas.records import Candidate, Proposal
from llmnas.spaces import SearchSpace
from llmnas.strategies.random_search import genotype_of, proposal_rng

__all__ = ["Member", "RegularizedEvolution"]


@dataclass(frozen=True)
class Member:
    """A population member: its candidate id, genotype and fitness."""

    id: int
    genotype: Any
    fitness: float


class RegularizedEvolution:
    """Aging evolution over ``space``; implements :class:`llmnas.strategies.base.Strategy`."""

    name = "regevo"

    def __init__(
        self,
        *,
        space: SearchSpace,
        seed: int,
        population_size: int = 10,
        sample_size: int = 3,
    ) -> None:
        if population_size < 1 or sample_size < 1:
            raise ValueError(
                f"population_size and sample_size must be >= 1; got {population_size}, "
                f"{sample_size}"
            )
        self.space = space
        self.seed = int(seed)
        self.population_size = int(population_size)
        self.sample_size = int(sample_size)
        self._population: deque[Member] = deque()
        self._members_told = 0
        self._asked = 0
        self._told = 0
        self.dropped = 0
        """Told candidates that did not join the population (failed, or no genotype)."""

    @property
    def population(self) -> list[Member]:
        """Current members, oldest first."""
        return list(self._population)

    def ask(self, n: int) -> list[Proposal]:
        proposals = []
        for _ in range(max(0, int(n))):
            rng = proposal_rng(self.seed, self.name, self._asked)
            self._asked += 1
            if self._members_told < self.population_size or not self._population:
                genotype, parents, origin = self.space.sample(rng), [], "random"
            else:
                members = list(self._population)
                drawn = [members[rng.randrange(len(members))] for _ in range(self.sample_size)]
                parent = max(drawn, key=lambda m: m.fitness)  # max keeps the first of ties
                genotype = self.space.mutate(parent.genotype, rng)
                parents, origin = [parent.id], "mutation"
            proposals.append(
                Proposal(
                    source=self.space.render(genotype),
                    operator=self.name,
                    parent_ids=parents,
                    meta={
                        "genotype": self.space.encode(genotype),
                        "space": self.space.name,
                        "origin": origin,
                    },
                )
            )
        return proposals

    def tell(self, candidates: Sequence[Candidate]) -> None:
        for candidate in candidates:
            if candidate.operator == self.name:
                self._told += 1
                self._asked = max(self._asked, self._told)
            fitness = candidate.val_accuracy if candidate.result.ok else None
            genotype = genotype_of(self.space, candidate) if fitness is not None else None
            if genotype is None or fitness is None:
                self.dropped += 1
                continue
            self._population.append(Member(candidate.id, genotype, float(fitness)))
            self._members_told += 1
            while len(self._population) > self.population_size:
                self._population.popleft()
