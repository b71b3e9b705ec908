"""What a task is: input shape, classes, data splits, a training recipe and seed programs.

A task owns everything about training and scoring; candidates own only the architecture.
Data splits are numpy arrays, channels first. The host keeps validation and test labels;
only training data and unlabelled validation/test inputs are handed to the sandbox.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Literal

import numpy as np

__all__ = ["Recipe", "Split", "Task", "TaskData", "TaskError"]


class TaskError(Exception):
    """A task cannot be used here (unknown name, data missing); the message is one line."""


@dataclass(frozen=True)
class Recipe:
    """How a candidate is trained. ``epochs`` is the short search recipe, ``full_epochs`` the
    recipe used by final reports. ``max_steps`` caps the number of optimiser steps if set."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-2
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size: int = 100
    epochs: int = 10
    full_epochs: int = 100
    schedule: Literal["constant", "cosine"] = "constant"
    seed: int = 0
    eval_batch_size: int = 1000

    def with_epochs(self, epochs: int | None) -> Recipe:
        return self if epochs is None else replace(self, epochs=int(epochs))

    def steps(self, n_train: int, epochs: int | None = None) -> int:
        epochs = self.epochs if epochs is None else epochs
        per_epoch = -(-n_train // self.batch_size)
        return int(epochs) * per_epoch


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # float32, (N, *input_shape)
    y: np.ndarray  # int64, (N,)

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")


@dataclass(frozen=True)
class TaskData:
    train: Split
    val: Split
    test: Split


@dataclass(frozen=True)
class Task:
    """Base class. Subclasses implement :meth:`_load`."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    description: str
    recipe: Recipe = field(default_factory=Recipe)
    tabular: bool = False

    def load(self) -> TaskData:
        """The task's splits (cached per process)."""
        return _cached_load(self)

    def _load(self) -> TaskData:  # pragma: no cover - abstract hook
        raise NotImplementedError

    def seed_programs(self) -> dict[str, str]:
        """Seed programs shipped with the task: ``{name: source}``, sorted by name."""
        root = resources.files("llmnas.tasks") / "seeds" / self.seed_dir
        if not root.is_dir():
            return {}
        out = {}
        for entry in sorted(root.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".py") and not entry.name.startswith("_"):
                out[entry.name[:-3]] = entry.read_text()
        return out

    @property
    def seed_dir(self) -> str:
        return self.name.replace("-", "_")


@functools.lru_cache(maxsize=8)
def _cached_load(task: Task) -> TaskData:
    data = task._load()
    for split in (data.train, data.val, data.test):
        if split.x.shape[1:] != tuple(task.input_shape):
            raise TaskError(
                f"task {task.name}: expected inputs of shape {task.input_shape}, "
                f"got {split.x.shape[1:]}"
            )
    return data


def holdout(x: np.ndarray, y: np.ndarray, n_val: int, seed: int) -> tuple[Split, Split]:
    """Split ``n_val`` examples off a training set with a seeded permutation."""
    order = np.random.default_rng(seed).permutation(len(x))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (
        Split(x[train_idx].astype(np.float32), y[train_idx].astype(np.int64)),
        Split(x[val_idx].astype(np.float32), y[val_idx].astype(np.int64)),
    )
