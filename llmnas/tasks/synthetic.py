"""A tiny synthetic task for tests: 4 Gaussian classes in 8 dimensions, input ``(1, 8)``.

Linearly separable up to noise, so any sensible model trains to high accuracy in a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from llmnas.tasks.base import Recipe, Split, Task, TaskData

__all__ = ["Synthetic"]


def _make(n: int, rng: np.random.Generator, centres: np.ndarray) -> Split:
    y = rng.integers(0, len(centres), size=n)
    x = centres[y] + 0.6 * rng.standard_normal((n, centres.shape[1]))
    return Split(x.astype(np.float32)[:, None, :], y.astype(np.int64))


@dataclass(frozen=True)
class Synthetic(Task):
    name: str = "synthetic"
    input_shape: tuple[int, ...] = (1, 8)
    num_classes: int = 4
    description: str = "Synthetic: 8 features (one channel) drawn around 4 class centres."
    recipe: Recipe = field(
        default_factory=lambda: Recipe(
            optimizer="adam", lr=1e-2, batch_size=32, epochs=3, full_epochs=10, seed=0
        )
    )

    def _load(self) -> TaskData:
        rng = np.random.default_rng(1234)
        centres = rng.standard_normal((self.num_classes, self.input_shape[-1])) * 1.5
        return TaskData(
            train=_make(256, rng, centres),
            val=_make(128, rng, centres),
            test=_make(128, rng, centres),
        )
