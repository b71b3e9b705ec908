"""Task registry: ``get_task(name)`` and ``TASKS``.

Trained tasks: ``mnist1d``, ``digits``, ``cifar10``, ``synthetic``. Tabular NAS-Bench-201
tasks (``nb201-*``, normal and blind) are registered from :mod:`llmnas.tasks.nb201` when present.
"""

from __future__ import annotations

from collections.abc import Callable

from llmnas.tasks.base import Recipe, Split, Task, TaskData, TaskError
from llmnas.tasks.cifar10 import CIFAR10
from llmnas.tasks.digits import Digits
from llmnas.tasks.mnist1d import MNIST1D
from llmnas.tasks.synthetic import Synthetic

__all__ = ["TASKS", "Recipe", "Split", "Task", "TaskData", "TaskError", "get_task", "register"]

TASKS: dict[str, Callable[[], Task]] = {
    "mnist1d": MNIST1D,
    "digits": Digits,
    "cifar10": CIFAR10,
    "synthetic": Synthetic,
}


def register(name: str, factory: Callable[[], Task]) -> None:
    TASKS[name] = factory


def get_task(name: str) -> Task:
    """The task called ``name``; :class:`TaskError` with the known names otherwise."""
    _load_optional()
    try:
        return TASKS[name]()
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise TaskError(f"unknown task {name!r}; expected one of: {known}") from None


def _load_optional() -> None:
    try:
        from llmnas.tasks.nb201 import TASK_CLASSES
    except ModuleNotFoundError as exc:
        if exc.name != "llmnas.tasks.nb201":
            raise
        return
    for cls in TASK_CLASSES:
        TASKS.setdefault(cls().name, cls)
