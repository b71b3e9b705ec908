"""What a prompt says about how candidates are trained and scored, rendered from the task.

Nothing here is written per task: the lines come from the task's :class:`~llmnas.tasks.base.Recipe`,
its split sizes and the counting rules of the sandbox child (``llmnas/sandbox/child.py``), so
a new task gets correct facts for free. The standard error of validation accuracy is the
binomial one, ``sqrt(p (1 - p) / n_val)``, never below ``1 / n_val``: it tells the model which
differences are noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["TaskFacts", "standard_error", "task_facts"]

_OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD with momentum"}


def standard_error(accuracy: float | None, n: int) -> float:
    """Binomial standard error of an accuracy measured on ``n`` examples (at least ``1/n``)."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    p = 0.5 if accuracy is None else min(max(float(accuracy), 0.0), 1.0)
    return max(math.sqrt(p * (1.0 - p) / n), 1.0 / n)


@dataclass(frozen=True)
class TaskFacts:
    """Sizes and recipe of a trainable task, as the prompts show them."""

    n_train: int
    n_val: int
    input_shape: tuple[int, ...]
    num_classes: int
    optimizer: str
    lr: float
    weight_decay: float
    momentum: float
    batch_size: int
    epochs: int
    schedule: str

    @property
    def steps(self) -> int:
        return self.epochs * -(-self.n_train // self.batch_size)

    def fields(self, parent_accuracy: float | None = None) -> dict[str, str]:
        """The fields of the ``facts`` template; the noise line uses the best parent's accuracy
        (0.95 when there is none yet)."""
        opt = _OPTIMIZERS.get(self.optimizer, self.optimizer)
        if self.optimizer == "sgd":
            opt = f"SGD (momentum {self.momentum:g})"
        p = 0.95 if parent_accuracy is None else float(parent_accuracy)
        se = standard_error(p, self.n_val)
        return {
            "n_train": f"{self.n_train:,}",
            "n_val": f"{self.n_val:,}",
            "input_shape": str(self.input_shape),
            "num_classes": str(self.num_classes),
            "optimizer": opt,
            "schedule": self.schedule,
            "lr": f"{self.lr:g}",
            "weight_decay": "no weight decay"
            if not self.weight_decay
            else f"weight decay {self.weight_decay:g}",
            "batch_size": str(self.batch_size),
            "epochs": f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}",
            "steps": f"{self.steps:,}",
            "accuracy": f"{p:.3f}",
            "standard_error": f"{se:.3f}",
            "noise": f"{2 * se:.3f}",
        }


def task_facts(task: Any, epochs: int | None = None) -> TaskFacts | None:
    """The facts of a trainable task (``None`` for tabular tasks, which train nothing)."""
    if getattr(task, "tabular", False) or not hasattr(task, "recipe"):
        return None
    data = task.load()
    recipe = task.recipe
    return TaskFacts(
        n_train=len(data.train.y),
        n_val=len(data.val.y),
        input_shape=tuple(task.input_shape),
        num_classes=int(task.num_classes),
        optimizer=recipe.optimizer,
        lr=float(recipe.lr),
        weight_decay=float(recipe.weight_decay),
        momentum=float(recipe.momentum),
        batch_size=int(recipe.batch_size),
        epochs=int(recipe.epochs if epochs is None else epochs),
        schedule=recipe.schedule,
    )
