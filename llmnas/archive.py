"""The quality-diversity archive (MAP-Elites on pyribs) and parent selection.

Each cell of a :class:`ribs.archives.GridArchive` over the configured descriptors (see
:mod:`llmnas.descriptors`) keeps the candidate with the highest objective; the ribs solution is
the candidate id. The archive is derived data: :meth:`QDArchive.from_candidates` rebuilds it
from the run store (full candidates or :class:`llmnas.store.Summary` rows) and gives the same
elites, objectives and curiosity scores as the live archive that saw the same candidates.

Objectives (always maximised):

- ``val_accuracy`` (default): the validation accuracy, a fraction in [0, 1].
- ``params_x_error``: EvoPrompting's size-times-error criterion, to be minimised. Only
  candidates with error ``1 - val_accuracy`` below ``error_gate`` count; the objective is
  ``-log10(params * max(error, 1e-4))`` (higher is smaller and better), and the QD score uses
  an offset of -10 so every counted elite adds a positive amount.

Parent selection (seeded by the caller's :class:`numpy.random.Generator`, elites in id order):

- ``uniform``: every elite equally likely.
- ``tournament``: draw ``tournament_size`` distinct elites, keep the highest objective.
- ``mixed`` (default): each parent is, with probability ``recent_rate``, one of the last
  ``recent_window`` candidates that entered the map (recent improvements, even if a better
  program has displaced them since); else, with probability ``best_rate``, the winner of a
  tournament; else a curiosity draw over the elites. Recent improvements keep the newest
  ideas in play, tournaments keep pressure on accuracy, curiosity spreads over the map.
- ``curiosity`` (LLMatic): every candidate id has a curiosity score, 0 at first. When a child
  is added, each of its parents' scores changes by ``curiosity_added`` (+1.0) if the child
  became an elite, ``curiosity_rejected`` (-0.5) if it was evaluated but not kept, and
  ``curiosity_failed`` (-1.0) if it failed or was rejected. Elites are drawn with probability
  ``softmax(score / curiosity_temperature)``.
"""

from __future__ import annotations

import gc
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmnas.archive_config import ArchiveConfig, ArchiveError
from llmnas.descriptors import descriptor_vector
from llmnas.records import Status

__all__ = ["ArchiveConfig", "ArchiveError", "Elite", "QDArchive"]

_MIN_ERROR = 1e-4
_PXE_OFFSET = -10.0


@dataclass(frozen=True, slots=True)
class Elite:
    """One occupied cell: the candidate id, its objective, descriptor values and cell index."""

    id: int
    objective: float
    measures: tuple[float, ...]
    cell: int


@dataclass(slots=True)
class _View:
    """The fields the archive reads, from a records.Candidate or a store.Summary."""

    id: int
    parent_ids: list[int]
    ok: bool
    accuracy: float | None  # finite validation accuracy of an ``ok`` candidate, else None
    metrics: dict[str, Any]
    descriptors: dict[str, float]


def _view(c: Any) -> _View:
    metrics = c.result.metrics if hasattr(c, "result") else c.metrics
    ok = c.status == Status.OK
    acc = metrics.get("val_accuracy") if ok else None
    if acc is not None and not math.isfinite(acc := float(acc)):
        acc = None
    return _View(int(c.id), c.parent_ids, ok, acc, metrics, c.descriptors)


class QDArchive:
    """MAP-Elites archive of candidate ids; the elite map lives in a pyribs ``GridArchive``
    (default) or ``CVTArchive`` (``kind = "cvt"``, ``cells`` centroids from a seeded k-means)."""

    def __init__(self, config: ArchiveConfig | dict[str, Any] | None = None) -> None:
        from ribs.archives import CVTArchive, GridArchive  # slow import, so done lazily

        self.config = ArchiveConfig.model_validate(config or {})
        self._offset = _PXE_OFFSET if self.config.objective == "params_x_error" else 0.0
        common = {
            "solution_dim": (),
            "ranges": self.config.bounds(),
            "qd_score_offset": self._offset,
            "solution_dtype": np.int64,
            "objective_dtype": np.float64,
            "measures_dtype": np.float64,
        }
        if self.config.kind == "cvt":
            self.ribs = CVTArchive(
                centroids=self.config.cells,
                samples=20 * self.config.cells,
                seed=self.config.seed,
                **common,
            )
        else:
            self.ribs = GridArchive(dims=self.config.dims(), **common)
        self._curiosity: dict[int, float] = {}
        self._seen: set[int] = set()
        self._best: tuple[float, int] | None = None
        self._recent: deque[int] = deque(maxlen=self.config.recent_window)

    # ------------------------------------------------------------------ building

    @classmethod
    def from_candidates(
        cls, candidates: Iterable[Any], config: ArchiveConfig | dict[str, Any] | None = None
    ) -> QDArchive:
        """Rebuild from stored candidates (or summaries) in id order, in one ribs batch."""
        archive = cls(config)
        paused = gc.isenabled()
        gc.disable()  # the cyclic GC would rescan the many new small containers repeatedly
        try:
            archive._replay(sorted((_view(c) for c in candidates), key=lambda v: v.id))
        finally:
            if paused:
                gc.enable()
        return archive

    def _replay(self, views: list[_View]) -> None:
        """Decide every candidate in order (as :meth:`add` would, with a scratch map of the
        cells), then fill ribs, which holds the elites, in one batch."""
        scored = [self._score(v) for v in views]
        placed = [i for i, s in enumerate(scored) if s is not None]
        cells: list[int] = []
        if placed:
            cells = self.ribs.index_of(np.array([scored[i][1] for i in placed])).tolist()
        cell_of = dict(zip(placed, cells, strict=True))
        scratch: dict[int, Elite] = {}
        for i, view in enumerate(views):
            score = scored[i]
            added = False
            if score is not None and view.id not in self._seen:
                current = scratch.get(cell_of[i])
                added = current is None or score[0] > current.objective
                if added:
                    scratch[cell_of[i]] = Elite(view.id, score[0], tuple(score[1]), cell_of[i])
                    self._recent.append(view.id)
            self._account(view, added)
        elites = sorted(scratch.values(), key=lambda e: e.cell)
        if elites:
            self.ribs.add(
                solution=np.array([e.id for e in elites], dtype=np.int64),
                objective=np.array([e.objective for e in elites]),
                measures=np.array([e.measures for e in elites]),
            )

    def add(self, candidate: Any) -> bool:
        """Offer one evaluated candidate (any status); return whether it became an elite."""
        view = _view(candidate)
        if view.id in self._seen:
            return False
        score = self._score(view)
        added = score is not None and self._admit(view.id, score[0], score[1])
        self._account(view, added)
        return added

    def _score(self, view: _View) -> tuple[float, list[float]] | None:
        """(objective, measures) of a candidate that may enter the map, else ``None``."""
        acc = view.accuracy
        if acc is None:
            return None
        measures = descriptor_vector(self.config.descriptors, view.descriptors, view.metrics)
        if measures is None:
            return None
        if self.config.objective == "val_accuracy":
            return acc, measures
        error, params = 1.0 - acc, view.metrics.get("params")
        if error >= self.config.error_gate or params is None or float(params) <= 0:
            return None
        return -math.log10(float(params) * max(error, _MIN_ERROR)), measures

    def _admit(self, cid: int, objective: float, measures: list[float]) -> bool:
        """pyribs decides: it takes an empty cell, or one whose elite it strictly beats."""
        if int(self.ribs.add_single(cid, objective, list(measures))["status"]) <= 0:
            return False
        self._recent.append(cid)
        return True

    def offer(self, elite: Elite) -> bool:
        """Offer an elite from elsewhere (island migration): it takes its cell if it beats the
        cell's elite; no curiosity or incumbent bookkeeping. Returns whether it was taken."""
        return self._admit(elite.id, elite.objective, list(elite.measures))

    def crossover_pair(self, rng: np.random.Generator) -> list[int] | None:
        """Two distinct elites drawn uniformly (ascending-id order), or ``None`` with fewer."""
        ids = self.elite_ids()
        if len(ids) < 2:
            return None
        a, b = rng.choice(len(ids), size=2, replace=False)
        return [ids[int(a)], ids[int(b)]]

    def _account(self, view: _View, added: bool) -> None:
        """Remember the id, update the incumbent and the parents' curiosity scores."""
        self._seen.add(view.id)
        acc = view.accuracy
        if acc is not None and (self._best is None or acc > self._best[0]):
            self._best = (acc, view.id)
        parents = view.parent_ids
        if not parents:
            return
        cfg = self.config
        if added:
            delta = cfg.curiosity_added
        else:
            delta = cfg.curiosity_rejected if view.ok else cfg.curiosity_failed
        curiosity = self._curiosity
        for parent in parents if len(parents) == 1 else set(parents):
            curiosity[parent] = curiosity.get(parent, 0.0) + delta

    # ------------------------------------------------------------------ reading

    def _cells(self) -> dict[int, Elite]:
        """The elites pyribs holds, by cell index."""
        data = self.ribs.data()
        return {
            int(cell): Elite(int(cid), float(obj), tuple(float(m) for m in meas), int(cell))
            for cid, obj, meas, cell in zip(data["solution"], data["objective"],
                                            data["measures"], data["index"], strict=True)
        }  # fmt: skip

    def __len__(self) -> int:
        return len(self.ribs)

    def __contains__(self, candidate_id: object) -> bool:
        return candidate_id in self.elite_ids()

    def elites(self) -> list[Elite]:
        """Occupied cells, by candidate id."""
        return sorted(self._cells().values(), key=lambda e: e.id)

    def elite_ids(self) -> list[int]:
        """Ids of the elites, ascending."""
        return sorted(int(i) for i in self.ribs.data("solution"))

    @property
    def coverage(self) -> float:
        """Fraction of cells occupied."""
        return len(self.ribs) / self.ribs.cells

    @property
    def qd_score(self) -> float:
        """Sum over elites of ``objective - offset`` (offset 0, or -10 for params_x_error)."""
        return float(sum(e.objective - self._offset for e in self.elites()))

    def best(self) -> int | None:
        """Id of the candidate with the highest validation accuracy seen (earliest on ties)."""
        return None if self._best is None else self._best[1]

    @property
    def best_accuracy(self) -> float | None:
        """Validation accuracy of :meth:`best`."""
        return None if self._best is None else self._best[0]

    def curiosity(self, candidate_id: int) -> float:
        """Curiosity score of a candidate (0.0 until one of its children is added)."""
        return self._curiosity.get(candidate_id, 0.0)

    def recent(self) -> list[int]:
        """Ids of the last candidates that entered the map, oldest first."""
        return list(self._recent)

    def niche_near(
        self, measures: Iterable[float], rng: np.random.Generator, *, parent_id: int | None = None
    ) -> dict[str, tuple[float, float]] | None:
        """The descriptor ranges of an empty cell next to ``measures`` (grid archives only).

        Looks at the cells at Chebyshev distance 1, then 2, around the cell of ``measures``
        and draws one of the empty ones; if all are filled, the one whose elite is weakest.
        Returns ``{descriptor: (low, high)}``, or ``None`` for CVT archives. ``parent_id`` is
        for island archives (the parent's island); a plain archive ignores it.
        """
        if self.config.kind != "grid":
            return None
        dims, point = np.array(self.config.dims()), np.asarray(list(measures), dtype=np.float64)
        centre = self.ribs.int_to_grid_index(np.array([self.ribs.index_of_single(point)]))[0]
        for radius in (1, 2):
            ring = []
            for offset in np.ndindex(*([2 * radius + 1] * len(dims))):
                step = np.array(offset) - radius
                if np.abs(step).max() != radius:
                    continue
                cell = centre + step
                if (cell >= 0).all() and (cell < dims).all():
                    ring.append(cell)
            if not ring:
                continue
            ints = self.ribs.grid_to_int_index(np.array(ring)).tolist()
            held = self._cells()
            empty = [i for i, c in enumerate(ints) if c not in held]
            if empty:
                pick = ring[empty[int(rng.integers(len(empty)))]]
                break
            if radius == 2:
                weakest = min(range(len(ints)), key=lambda i: held[ints[i]].objective)
                pick = ring[weakest]
        else:  # pragma: no cover - a 1x1 grid has no neighbours
            return None
        bounds = self.ribs.boundaries
        return {
            name: (float(bounds[d][pick[d]]), float(bounds[d][pick[d] + 1]))
            for d, name in enumerate(self.config.descriptors)
        }

    # ------------------------------------------------------------------ parent selection

    def select_parents(
        self, n: int, rng: np.random.Generator, method: str | None = None
    ) -> list[int]:
        """``n`` parent ids drawn with replacement by ``method`` (default: the config's).

        Returns an empty list when the archive has no elites.
        """
        elites, method = self.elites(), method or self.config.selection
        if method not in ("uniform", "tournament", "curiosity", "mixed"):
            raise ArchiveError(
                f"selection must be uniform, tournament, curiosity or mixed, got {method!r}"
            )
        if not elites or n <= 0:
            return []
        if method == "mixed":
            cfg, recent, out = self.config, list(self._recent), []
            for _ in range(n):
                u = rng.random()
                if recent and u < cfg.recent_rate:
                    out.append(recent[int(rng.integers(len(recent)))])
                elif u < cfg.recent_rate + cfg.best_rate:
                    out.extend(self.select_parents(1, rng, "tournament"))
                else:
                    out.extend(self.select_parents(1, rng, "curiosity"))
            return out
        if method == "tournament":
            k = min(self.config.tournament_size, len(elites))
            rounds = [rng.choice(len(elites), size=k, replace=False) for _ in range(n)]
            return [
                max((elites[i] for i in r), key=lambda e: (e.objective, -e.id)).id for r in rounds
            ]
        if method == "uniform":
            picks = rng.integers(0, len(elites), size=n)
        else:
            scores = np.array([self.curiosity(e.id) for e in elites])
            weights = np.exp((scores - scores.max()) / self.config.curiosity_temperature)
            picks = rng.choice(len(elites), size=n, p=weights / weights.sum())
        return [elites[i].id for i in picks]
