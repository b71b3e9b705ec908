"""Island model over QD archives: several independent archives with ring migration."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from llmnas.archive import ArchiveConfig, ArchiveError, QDArchive

__all__ = ["IslandArchive", "make_archive", "rebuild_archive"]


class IslandArchive:
    """Several independent QD archives with periodic ring migration of each island's best.

    A candidate joins its first parent's island (seeds without parents go round-robin by id),
    so a strategy that draws parents from island ``i`` keeps the children there. Every
    ``migration_interval`` added candidates, each island's best elite is offered to the next.
    """

    def __init__(
        self,
        config: ArchiveConfig | dict[str, Any] | None = None,
        *,
        n_islands: int = 4,
        migration_interval: int = 50,
    ) -> None:
        if n_islands < 1 or migration_interval < 1:
            raise ArchiveError("n_islands and migration_interval must be at least 1")
        self.islands = [QDArchive(config) for _ in range(n_islands)]
        self.migration_interval = migration_interval
        self._island_of: dict[int, int] = {}
        self._added = 0

    @classmethod
    def from_candidates(
        cls, candidates: Iterable[Any], config: ArchiveConfig | dict[str, Any] | None = None, **kw
    ) -> IslandArchive:
        """Rebuild by replaying candidates in id order (migrations happen at the same points)."""
        archive = cls(config, **kw)
        for cand in sorted(candidates, key=lambda c: c.id):
            archive.add(cand)
        return archive

    def island_of(self, candidate: Any) -> int:
        parents: Sequence[int] = candidate.parent_ids
        if parents and parents[0] in self._island_of:
            return self._island_of[parents[0]]
        return int(candidate.id) % len(self.islands)

    def add(self, candidate: Any) -> bool:
        """Add to the candidate's island; migrate every ``migration_interval`` candidates."""
        island = self.island_of(candidate)
        self._island_of[int(candidate.id)] = island
        added = self.islands[island].add(candidate)
        self._added += 1
        if self._added % self.migration_interval == 0:
            self.migrate()
        return added

    def migrate(self) -> None:
        """Offer each island's highest-objective elite to the next island (a ring)."""
        bests = [max(isl.elites(), key=lambda e: e.objective, default=None) for isl in self.islands]
        for i, elite in enumerate(bests):
            if elite is not None:
                self.islands[(i + 1) % len(self.islands)].offer(elite)

    def select_parents(
        self,
        n: int,
        rng: np.random.Generator,
        method: str | None = None,
        island: int | None = None,
    ) -> list[int]:
        """:meth:`QDArchive.select_parents` on one island (by default a random non-empty one),
        so a prompt's parents always come from the same island."""
        if island is None:
            filled = [i for i, isl in enumerate(self.islands) if len(isl)]
            if not filled:
                return []
            island = filled[int(rng.integers(len(filled)))]
        return self.islands[island].select_parents(n, rng, method)

    def crossover_pair(self, rng: np.random.Generator) -> list[int] | None:
        """Two elites of one island (drawn among islands holding two or more), as documented:
        crossover never mixes islands."""
        filled = [i for i, isl in enumerate(self.islands) if len(isl) >= 2]
        if not filled:
            return None
        return self.islands[filled[int(rng.integers(len(filled)))]].crossover_pair(rng)

    @property
    def config(self) -> ArchiveConfig:
        """The configuration every island shares."""
        return self.islands[0].config

    def niche_near(
        self, measures: Any, rng: np.random.Generator, *, parent_id: int | None = None
    ) -> dict[str, tuple[float, float]] | None:
        """:meth:`QDArchive.niche_near` on the parent's island (island 0 if it has none)."""
        island = self._island_of.get(parent_id, 0) if parent_id is not None else 0
        return self.islands[island].niche_near(measures, rng)

    @property
    def coverage(self) -> float:
        """Mean coverage of the islands."""
        return float(np.mean([isl.coverage for isl in self.islands]))

    @property
    def qd_score(self) -> float:
        """Sum of the islands' QD-scores."""
        return float(sum(isl.qd_score for isl in self.islands))

    def __len__(self) -> int:
        return len(self.elite_ids())

    def elite_ids(self) -> list[int]:
        """Ids that are an elite on some island, ascending."""
        return sorted({i for island in self.islands for i in island.elite_ids()})


def make_archive(config: ArchiveConfig | dict[str, Any] | None = None) -> QDArchive | IslandArchive:
    """A plain archive, or an island archive when ``config.islands > 1``."""
    config = ArchiveConfig.model_validate(config or {})
    if config.islands > 1:
        return IslandArchive(
            config, n_islands=config.islands, migration_interval=config.migration_interval
        )
    return QDArchive(config)


def rebuild_archive(
    candidates: Iterable[Any], config: ArchiveConfig | dict[str, Any] | None = None
) -> QDArchive | IslandArchive:
    """Rebuild the archive a run used from its stored candidates."""
    config = ArchiveConfig.model_validate(config or {})
    if config.islands > 1:
        return IslandArchive.from_candidates(
            candidates,
            config,
            n_islands=config.islands,
            migration_interval=config.migration_interval,
        )
    return QDArchive.from_candidates(candidates, config)
