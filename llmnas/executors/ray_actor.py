"""The Ray actor that runs sandbox jobs on a node: one :class:`SandboxPool` inside it.

Plain Python: :class:`~llmnas.executors.ray_pool.RayExecutor` wraps it with ``ray.remote``
and its resources, so this module does not import Ray. The training arrays arrive as one
object-store reference that Ray resolves on the node (each node fetches them once, then the
actors on it read the node's copy); the pool writes them into the actor's own scratch folder
for its workers (a folder named after the actor's pid, which a later actor on the node removes
once that pid is gone, so a killed actor's copy does not stay). Only ``train_x``, ``train_y``,
``val_x`` and ``test_x`` ever arrive: the pool refuses any other labels, and the actor returns
logits and counts, never metrics.

Ray gives the actor its CPUs and GPUs; for a GPU actor Ray sets ``CUDA_VISIBLE_DEVICES`` to
the devices it was given, and the pool hands each worker exactly one of them
(:func:`llmnas.devices.child_gpu`).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from llmnas.sandbox import ChildReport, SandboxPool

__all__ = ["PoolActor"]


def _sweep_dead_actors() -> None:
    """Remove the scratch folders (data copies, job folders) of killed actors on this node."""
    for folder in Path(tempfile.gettempdir()).glob("llmnas-actor-*-*"):
        pid = folder.name.split("-")[2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # alive, someone else's
            pass


class PoolActor:
    """A node's warm sandbox pool; ``run`` is called concurrently (Ray ``max_concurrency``)."""

    def __init__(
        self,
        data: dict[str, np.ndarray],
        *,
        workers: int,
        device: str,
        threads: int,
        hidden: list[str] | None = None,
    ):
        _sweep_dead_actors()
        self._scratch = Path(tempfile.mkdtemp(prefix=f"llmnas-actor-{os.getpid()}-"))
        self._pool = SandboxPool(
            data=data,
            workers=workers,
            device=device,
            threads=threads,
            scratch=self._scratch,
            hidden=[Path(h) for h in hidden or []],
        )
        self._pool.wait_ready()  # the driver takes the actor's first answer as "warm"

    def info(self) -> dict[str, Any]:
        """Who and where this actor is: its process id, host, isolation and devices."""
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "mode": self._pool.mode,
            "size": self._pool.size,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "worker_gpus": [
                self._pool.worker_env(i)["CUDA_VISIBLE_DEVICES"] for i in range(self._pool.size)
            ],
        }

    def run(self, job: dict[str, Any], expect: dict[str, int], num_classes: int) -> ChildReport:
        """Run one job on this node's pool; the report goes back to the driver as it is."""
        return self._pool.run(job, expect=expect, num_classes=num_classes)

    def close(self) -> None:
        self._pool.close()
        shutil.rmtree(self._scratch, ignore_errors=True)
