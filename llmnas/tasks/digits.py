"""scikit-learn's 8x8 handwritten digits (1,797 images), input ``(1, 8, 8)``, scaled to [0, 1].

A seeded stratification-free split: 1,257 train / 270 validation / 270 test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from llmnas.tasks.base import Recipe, Split, Task, TaskData, holdout

__all__ = ["Digits"]


@dataclass(frozen=True)
class Digits(Task):
    name: str = "digits"
    input_shape: tuple[int, ...] = (1, 8, 8)
    num_classes: int = 10
    description: str = (
        "Handwritten digits as 8x8 grey images (one channel, values in [0, 1]); "
        "classify the digit (10 classes)."
    )
    recipe: Recipe = field(
        default_factory=lambda: Recipe(
            optimizer="adam", lr=3e-3, batch_size=64, epochs=10, full_epochs=60, seed=0
        )
    )

    def _load(self) -> TaskData:
        from sklearn.datasets import load_digits

        raw = load_digits()
        x = (np.asarray(raw.images, dtype=np.float32) / 16.0)[:, None, :, :]
        y = np.asarray(raw.target, dtype=np.int64)
        rest, test = holdout(x, y, n_val=270, seed=1)
        train, val = holdout(rest.x, rest.y, n_val=270, seed=0)
        return TaskData(train=train, val=val, test=Split(test.x, test.y))
