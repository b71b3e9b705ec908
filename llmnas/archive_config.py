"""How a QD archive is laid out, scored and sampled: :class:`ArchiveConfig` (``[archive]``).

Kept apart from :mod:`llmnas.archive` so that the run configuration (:mod:`llmnas.config`)
can type its ``[archive]`` table without importing pyribs or the archive itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmnas.descriptors import DESCRIPTORS

__all__ = ["ArchiveConfig", "ArchiveError"]


class ArchiveError(Exception):
    """Bad user input about an archive (e.g. a heatmap of a 3-descriptor map)."""


class ArchiveConfig(BaseModel):
    """How the QD archive is laid out, scored and sampled."""

    model_config = ConfigDict(extra="forbid")

    descriptors: list[str] = Field(
        default_factory=lambda: ["log10_params", "log10_flops_per_param"]
    )
    kind: Literal["grid", "cvt"] = "grid"
    bins: int | list[int] = 10
    cells: int = Field(128, ge=2, description="CVT archives: number of centroids")
    islands: int = Field(1, ge=1, description="independent archives with ring migration")
    migration_interval: int = Field(50, ge=1, description="candidates between migrations")
    seed: int = Field(0, description="CVT archives: seed of the centroid k-means")
    ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    objective: Literal["val_accuracy", "params_x_error"] = "val_accuracy"
    error_gate: float = Field(0.5, gt=0.0, le=1.0)
    selection: Literal["uniform", "tournament", "curiosity", "mixed"] = "mixed"
    tournament_size: int = Field(3, ge=1)
    recent_rate: float = Field(0.3, ge=0.0, le=1.0, description="mixed: recent improvement")
    best_rate: float = Field(0.3, ge=0.0, le=1.0, description="mixed: tournament winner")
    recent_window: int = Field(8, ge=1, description="mixed: how many recent improvements")
    curiosity_added: float = 1.0
    curiosity_rejected: float = -0.5
    curiosity_failed: float = -1.0
    curiosity_temperature: float = Field(1.0, gt=0.0)

    @field_validator("descriptors")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [n for n in value if n not in DESCRIPTORS]
        if unknown or not value:
            raise ValueError(f"descriptors must be some of {sorted(DESCRIPTORS)}, got {value}")
        return value

    @field_validator("ranges")
    @classmethod
    def _known_ranges(cls, value: dict[str, tuple[float, float]]) -> dict:
        unknown = sorted(set(value) - set(DESCRIPTORS))
        if unknown:
            raise ValueError(f"ranges given for unknown descriptors {unknown}")
        return value

    def dims(self) -> list[int]:
        """Cells along each descriptor."""
        n = len(self.descriptors)
        dims = [self.bins] * n if isinstance(self.bins, int) else list(self.bins)
        if len(dims) != n or min(dims) < 1:
            raise ArchiveError(f"bins must be one positive int or {n} of them, got {self.bins}")
        return dims

    def bounds(self) -> list[tuple[float, float]]:
        """(low, high) of each descriptor: the configured range or the default."""
        spec = DESCRIPTORS
        out = [self.ranges.get(n, (spec[n].low, spec[n].high)) for n in self.descriptors]
        for name, (low, high) in zip(self.descriptors, out, strict=True):
            if not high > low:
                raise ArchiveError(f"range of descriptor {name} must have low < high")
        return out
