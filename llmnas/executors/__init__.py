"""Executors: where a sandboxed job runs, behind one interface.

The evaluator builds a job (the candidate's source, recipe, limits), hands it to an executor
and gets back a :class:`~llmnas.sandbox.ChildReport` (logits, counts, timings, or a failure);
it computes accuracy and loss itself, from labels that never leave the driver. Two executors:

- ``local``: :class:`~llmnas.sandbox.SandboxPool` itself, warm forking workers on this
  machine;
- ``ray``: :class:`~llmnas.executors.ray_pool.RayExecutor`, one
  :class:`~llmnas.executors.ray_actor.PoolActor` per node (or ``actors`` of them), each
  holding a ``SandboxPool`` with the same workers and isolation; the training arrays go into
  Ray's object store once and each node reads them from there. A job whose actor dies is
  run once more on another actor, then recorded as a ``crash`` naming the reason.

The run loop, the store, the archive and the strategies do not know which one runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmnas.config import ExecutorSettings
from llmnas.executors.base import RAY_MISSING, Executor, ExecutorError
from llmnas.sandbox import SandboxPool

__all__ = ["RAY_MISSING", "Executor", "ExecutorError", "make_executor"]


def make_executor(
    settings: ExecutorSettings | None,
    *,
    data: dict[str, np.ndarray],
    workers: int,
    device: str,
    threads: int | None = None,
    scratch: str | Path | None = None,
    hidden: list[Path] | None = None,
) -> Executor:
    """The executor ``settings`` name (default: the local pool), started and ready.

    ``data`` holds ``train_x``, ``train_y``, ``val_x`` and optionally ``test_x``: never
    validation or test labels. Raises :class:`ExecutorError` when Ray is missing or its
    cluster cannot be reached.
    """
    settings = settings or ExecutorSettings()
    if settings.kind == "local":
        return SandboxPool(
            data=data,
            workers=workers,
            device=device,
            threads=threads,
            scratch=scratch,
            hidden=hidden,
        )
    if settings.kind != "ray":
        raise ExecutorError(f"executor kind must be local or ray; got {settings.kind!r}")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ExecutorError(RAY_MISSING) from None
    from llmnas.executors.ray_pool import RayExecutor

    return RayExecutor(data=data, settings=settings, workers=workers, device=device, hidden=hidden)
