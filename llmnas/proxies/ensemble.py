"""Host-side proxy ensembles: a rank average and a small online ranker.

This module uses numpy and scikit-learn and runs on the host; ``import llmnas.proxies`` does not
import it (the sandbox child has no scikit-learn).

**Rank average.** For each proxy ``p`` the rows with a value get average ranks ``1..m`` (ties
share the mean of their ranks; rank ``m`` is the largest value, unless ``directions[p] < 0``).
Ranks are rescaled to the population size ``n`` as ``1 + (r - 1) (n - 1) / (m - 1)`` so proxies
with missing values weigh the same, and a row without a value gets the mean rank ``(n + 1) / 2``
(``missing="mean"``) or is left out of that proxy's average (``missing="skip"``; a row with no
value at all then gets the mean rank). The score of a row is the mean of its proxy ranks:
higher is better. A proxy with fewer than two values carries no ranking and is ignored.

**Online ranker.** :class:`OnlineRanker` learns proxies -> validation accuracy on a run's
trained candidates. Features: for each proxy, the empirical CDF of the value among the training
rows (the fraction of training values below it plus half of the ties; missing -> 0.5), plus
their mean (the rank average among the training rows). Model: a seeded
``RandomForestRegressor`` (100 trees, leaves of at least 2, one job). Below ``min_examples``
labelled rows it falls back to the rank average of the rows to predict, rescaled to ``[0, 1]``;
only the order of the predictions is meaningful.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

__all__ = ["OnlineRanker", "rank_average"]

Row = Mapping[str, float | None]


def _value(row: Row, name: str) -> float | None:
    value = row.get(name)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..m of ``values`` with ties sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_vals = values[order]
    start = 0
    while start < len(values):
        stop = start
        while stop + 1 < len(values) and sorted_vals[stop + 1] == sorted_vals[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2.0 + 1.0
        start = stop + 1
    return ranks


def rank_average(
    rows: Sequence[Row],
    names: Sequence[str],
    *,
    missing: Literal["mean", "skip"] = "mean",
    directions: Mapping[str, float] | None = None,
) -> list[float]:
    """Mean per-proxy rank of each row among ``rows`` (``1..n``, higher is better).

    See the module docstring for ties, missing values and ``directions`` (a negative entry
    ranks that proxy in reverse).
    """
    if missing not in ("mean", "skip"):
        raise ValueError(f"missing must be 'mean' or 'skip', got {missing!r}")
    n = len(rows)
    if n == 0:
        return []
    mean_rank = (n + 1) / 2.0
    sums = np.zeros(n)
    counts = np.zeros(n)
    for name in names:
        present = [(i, v) for i, row in enumerate(rows) if (v := _value(row, name)) is not None]
        if len(present) < 2:
            continue
        idx = np.array([i for i, _ in present])
        vals = np.array([v for _, v in present])
        if directions is not None and directions.get(name, 1.0) < 0:
            vals = -vals
        ranks = _average_ranks(vals)
        ranks = 1.0 + (ranks - 1.0) * (n - 1) / (len(vals) - 1)
        sums[idx] += ranks
        counts[idx] += 1
        if missing == "mean":
            absent = np.setdiff1d(np.arange(n), idx)
            sums[absent] += mean_rank
            counts[absent] += 1
    return [float(s / c) if c > 0 else mean_rank for s, c in zip(sums, counts, strict=True)]


class OnlineRanker:
    """Predicts validation accuracy from proxies, refitted as a run trains candidates.

    ``names``: the proxies used (default: every name with at least two values in the training
    rows). ``min_examples``: labelled rows needed before the forest is used.
    """

    def __init__(
        self,
        *,
        seed: int,
        names: Sequence[str] | None = None,
        min_examples: int = 10,
        n_estimators: int = 100,
    ) -> None:
        self.seed = seed
        self.names: list[str] | None = list(names) if names is not None else None
        self.min_examples = min_examples
        self.n_estimators = n_estimators
        self._model: Any = None  # a fitted sklearn RandomForestRegressor
        self._train: dict[str, np.ndarray] = {}

    @property
    def fitted(self) -> bool:
        """Whether predictions come from the forest (otherwise from the rank average)."""
        return self._model is not None

    def _features(self, rows: Sequence[Row]) -> np.ndarray:
        assert self.names is not None
        columns = []
        for name in self.names:
            ref = self._train[name]
            col = []
            for row in rows:
                v = _value(row, name)
                if v is None or len(ref) == 0:
                    col.append(0.5)
                else:
                    below = np.count_nonzero(ref < v)
                    ties = np.count_nonzero(ref == v)
                    col.append((below + 0.5 * ties) / len(ref))
            columns.append(col)
        features = np.array(columns, dtype=np.float64).T
        # the rank average among the training rows: the mean of the per-proxy CDF values
        return np.hstack([features, features.mean(axis=1, keepdims=True)])

    def fit(self, rows: Sequence[Row], accuracies: Sequence[float | None]) -> OnlineRanker:
        """Fit on labelled rows; rows whose accuracy is missing or non-finite are dropped."""
        if len(rows) != len(accuracies):
            raise ValueError(f"{len(rows)} rows but {len(accuracies)} accuracies")
        pairs = [
            (row, float(a))
            for row, a in zip(rows, accuracies, strict=True)
            if a is not None and math.isfinite(float(a))
        ]
        names = self.names
        if names is None:
            all_names = dict.fromkeys(n for row, _ in pairs for n in row)
            names = [n for n in all_names if sum(_value(r, n) is not None for r, _ in pairs) >= 2]
        self.names = list(names)
        self._model = None
        if len(pairs) < self.min_examples or not self.names:
            return self
        self._train = {
            n: np.array([v for r, _ in pairs if (v := _value(r, n)) is not None])
            for n in self.names
        }
        from sklearn.ensemble import RandomForestRegressor  # slow to import: only when fitted

        model = RandomForestRegressor(
            n_estimators=self.n_estimators, min_samples_leaf=2, random_state=self.seed, n_jobs=1
        )
        model.fit(self._features([r for r, _ in pairs]), np.array([a for _, a in pairs]))
        self._model = model
        return self

    def predict(self, rows: Sequence[Row]) -> list[float]:
        """Scores for ``rows``, higher is better (predicted accuracy once fitted)."""
        if not rows:
            return []
        if self._model is None:
            names = self.names if self.names else sorted({n for row in rows for n in row})
            ranks = rank_average(rows, names)
            n = len(rows)
            return [(r - 1.0) / (n - 1) if n > 1 else 0.5 for r in ranks]
        return [float(v) for v in self._model.predict(self._features(rows))]
