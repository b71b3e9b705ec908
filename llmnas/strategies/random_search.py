"""Random search over a code-rendered space (operator name ``random``).

Each proposal is a uniform sample of the space, rendered to a candidate program, with the
genotype in ``Proposal.meta["genotype"]``. By default a genotype is not proposed twice (the
loop's dedup would reject the repeat anyway); after 100 draws that all repeat, a repeat is
allowed.

Randomness: proposal number ``k`` draws from its own ``random.Random`` seeded with
``(seed, k)``. ``tell`` advances ``k`` to the number of this strategy's candidates it has been
told, so a run resumed by telling a fresh strategy the stored candidates continues exactly
like the uninterrupted run (for a loop that asks one proposal at a time).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from llmnas.records import Candidate, Proposal
from llmnas.spaces import SearchSpace

__all__ = ["RandomSearch", "genotype_of", "proposal_rng"]

MAX_TRIES = 100


def proposal_rng(seed: int, strategy: str, k: int) -> random.Random:
    """The generator for proposal ``k`` of a strategy (string seeds are stable across runs)."""
    return random.Random(f"llmnas/{strategy}/{int(seed)}/{int(k)}")


def genotype_of(space: SearchSpace, candidate: Candidate) -> Any | None:
    """The candidate's genotype in ``space``: from ``meta["genotype"]`` when it was made for
    this space, else read statically from its source; ``None`` when neither works."""
    meta = candidate.meta or {}
    if "genotype" in meta and meta.get("space", space.name) == space.name:
        try:
            return space.decode(meta["genotype"])
        except (ValueError, TypeError):
            pass
    try:
        return space.from_source(candidate.source)
    except (ValueError, TypeError):
        return None


def genotype_key(space: SearchSpace, genotype: Any) -> str:
    """A string key for a genotype (its JSON encoding)."""
    return json.dumps(space.encode(genotype), sort_keys=True)


class RandomSearch:
    """Uniform random sampling of ``space``; implements :class:`llmnas.strategies.base.Strategy`."""

    name = "random"

    def __init__(self, *, space: SearchSpace, seed: int, unique: bool = True) -> None:
        self.space = space
        self.seed = int(seed)
        self.unique = unique
        self._asked = 0
        self._told = 0
        self._seen: set[str] = set()
        self.best: Candidate | None = None

    def ask(self, n: int) -> list[Proposal]:
        proposals = []
        for _ in range(max(0, int(n))):
            rng = proposal_rng(self.seed, self.name, self._asked)
            self._asked += 1
            genotype = self.space.sample(rng)
            for _ in range(MAX_TRIES - 1):
                if not self.unique or genotype_key(self.space, genotype) not in self._seen:
                    break
                genotype = self.space.sample(rng)
            self._seen.add(genotype_key(self.space, genotype))
            proposals.append(
                Proposal(
                    source=self.space.render(genotype),
                    operator=self.name,
                    meta={
                        "genotype": self.space.encode(genotype),
                        "space": self.space.name,
                        "origin": "random",
                    },
                )
            )
        return proposals

    def tell(self, candidates: Sequence[Candidate]) -> None:
        for candidate in candidates:
            if candidate.operator == self.name:
                self._told += 1
                self._asked = max(self._asked, self._told)
            genotype = genotype_of(self.space, candidate)
            if genotype is not None:
                self._seen.add(genotype_key(self.space, genotype))
            accuracy = candidate.val_accuracy if candidate.result.ok else None
            if accuracy is not None and (
                self.best is None or accuracy > (self.best.val_accuracy or 0.0)
            ):
                self.best = candidate
