"""Device names: ``resolve_device`` turns ``auto`` into ``cuda`` or ``cpu``.

A ground-floor module: the evaluator, the runner and the DARTS strategy all resolve the run's
``device`` setting the same way without importing one another.
"""

from __future__ import annotations

import os

__all__ = ["child_gpu", "resolve_device"]


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        if device != "cpu" and not device.startswith("cuda"):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {device!r}")
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def child_gpu(device: str, index: int, count: int, visible: str | None = None) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` value of sandbox worker ``index``: one device only.

    ``device`` is ``cuda`` (workers spread over the ``count`` devices this process sees) or
    ``cuda:N``. Positions map through this process's own ``CUDA_VISIBLE_DEVICES`` (``visible``,
    default: the environment), so a worker of a process that was given devices ``3,5`` (as
    Ray does for an actor) sees device 3 or 5, never 0 or 1.
    """
    if visible is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in (visible or "").split(",") if v.strip()]
    if ":" in device:
        position = int(device.split(":", 1)[1])
    else:
        position = index % count if count else 0
    return ids[position] if position < len(ids) else str(position)
