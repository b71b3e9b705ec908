"""CIFAR-10 through torchvision, input ``(3, 32, 32)``, normalised per channel.

Needs the ``vision`` extra and the data on disk (``LLMNAS_DATA``, default ``~/.cache/llmnas``)
or a reachable download; otherwise one clear error. 45,000 train / 5,000 validation from the
training set; the 10,000 test images for final reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmnas.tasks.base import Recipe, Split, Task, TaskData, TaskError, holdout

__all__ = ["CIFAR10"]

_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)[:, None, None]
_STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)[:, None, None]


@dataclass(frozen=True)
class CIFAR10(Task):
    name: str = "cifar10"
    input_shape: tuple[int, ...] = (3, 32, 32)
    num_classes: int = 10
    description: str = "CIFAR-10: 32x32 colour images (3 channels, normalised); 10 classes."
    recipe: Recipe = field(
        default_factory=lambda: Recipe(
            optimizer="sgd",
            lr=0.05,
            weight_decay=5e-4,
            batch_size=128,
            epochs=2,
            full_epochs=30,
            schedule="cosine",
            seed=0,
        )
    )

    def _load(self) -> TaskData:
        try:
            from torchvision.datasets import CIFAR10 as TV
        except Exception as exc:  # noqa: BLE001 - any import problem means "not usable"
            raise TaskError(
                f"task cifar10 needs torchvision (pip install 'llmnas[vision]'): {exc}"
            ) from None
        root = Path(os.environ.get("LLMNAS_DATA", Path.home() / ".cache" / "llmnas"))
        try:
            tr = TV(str(root), train=True, download=True)
            te = TV(str(root), train=False, download=True)
        except Exception as exc:  # noqa: BLE001
            raise TaskError(
                f"task cifar10: data not found under {root} and download failed ({exc})"
            ) from None

        def prep(images: np.ndarray) -> np.ndarray:
            x = images.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
            return (x - _MEAN) / _STD

        train, val = holdout(prep(tr.data), np.asarray(tr.targets), n_val=5000, seed=0)
        return TaskData(train, val, Split(prep(te.data), np.asarray(te.targets, dtype=np.int64)))
