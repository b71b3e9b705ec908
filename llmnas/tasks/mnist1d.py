"""MNIST-1D (Greydanus 2020), generated offline with the mnist1d package.

The published 4,000/1,000 split from ``make_dataset(get_dataset_args())``; 500 of the 4,000
training examples are held out for validation; the 1,000 test examples are for final reports.
Inputs are ``(1, 40)``. The recipe is the paper's: Adam, learning rate 1e-2, batch 100,
6,000 steps for the full recipe (171 epochs of 3,500 examples); searches use 15 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from llmnas.tasks.base import Recipe, Split, Task, TaskData, holdout

__all__ = ["MNIST1D"]


@dataclass(frozen=True)
class MNIST1D(Task):
    name: str = "mnist1d"
    input_shape: tuple[int, ...] = (1, 40)
    num_classes: int = 10
    description: str = (
        "MNIST-1D: 1-D signals of length 40 (one channel) made from the ten digit templates "
        "with random shifts, scaling, shear and correlated noise; classify the digit (10 classes)."
    )
    recipe: Recipe = field(
        default_factory=lambda: Recipe(
            optimizer="adam", lr=1e-2, batch_size=100, epochs=15, full_epochs=171, seed=0
        )
    )

    def _load(self) -> TaskData:
        from mnist1d.data import get_dataset_args, make_dataset

        raw = make_dataset(get_dataset_args())  # generated locally, never downloaded
        x = np.asarray(raw["x"], dtype=np.float32)[:, None, :]
        y = np.asarray(raw["y"], dtype=np.int64)
        train, val = holdout(x, y, n_val=500, seed=0)
        test = Split(
            np.asarray(raw["x_test"], dtype=np.float32)[:, None, :],
            np.asarray(raw["y_test"], dtype=np.int64),
        )
        return TaskData(train=train, val=val, test=test)
