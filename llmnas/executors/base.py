"""The executor interface: what the evaluator calls, and the one error an executor raises."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from llmnas.sandbox import ChildReport

__all__ = ["RAY_MISSING", "Executor", "ExecutorError"]

RAY_MISSING = 'the ray executor needs the ray package: pip install -e ".[ray]"'


class ExecutorError(RuntimeError):
    """An executor cannot start (Ray missing, a cluster unreachable); the message is one line."""


@runtime_checkable
class Executor(Protocol):
    """Runs sandbox jobs; ``run`` is called from several threads at once (up to ``size``)."""

    @property
    def size(self) -> int:
        """Jobs it runs at the same time."""
        ...

    @property
    def mode(self) -> str:
        """The sandbox isolation: ``bwrap`` or ``rlimits``."""
        ...

    def run(self, job: dict[str, Any], *, expect: dict[str, int], num_classes: int) -> ChildReport:
        """Run one job; candidate faults come back in the report, framework faults raise."""
        ...

    def close(self) -> None: ...
