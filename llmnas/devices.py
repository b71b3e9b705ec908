"""Device names: ``resolve_device`` turns ``auto`` into ``cuda`` or ``cpu``.

A ground-floor module: the evaluator, the runner and the DARTS strategy all resolve the run's
``device`` setting the same way without importing one another.
"""

from __future__ import annotations

__all__ = ["resolve_device"]


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        if device != "cpu" and not device.startswith("cuda"):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {device!r}")
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
