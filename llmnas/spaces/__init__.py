"""Code-rendered search spaces: genotypes that render to complete candidate programs.

Two spaces ship: :class:`~llmnas.spaces.cell.CellSpace` (NAS-Bench-201 cells in a macro
skeleton) and :class:`~llmnas.spaces.chain.ChainSpace` (plain layer stacks). Both implement the
:class:`SearchSpace` protocol that the genotype strategies (random search, regularized
evolution) rely on. Every stochastic method takes the caller's ``random.Random`` or numpy
``Generator``; spaces hold no random state.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from llmnas.nb201_cell import PRESETS, CellGenotype, CellPreset, render
from llmnas.spaces.cell import CellSpace
from llmnas.spaces.chain import ChainGenotype, ChainSpace, Layer

__all__ = [
    "PRESETS",
    "CellGenotype",
    "CellPreset",
    "CellSpace",
    "ChainGenotype",
    "ChainSpace",
    "Layer",
    "SearchSpace",
    "make_space",
    "space_of",
    "render",
]


@runtime_checkable
class SearchSpace(Protocol):
    """What a strategy needs from a space. Genotypes are hashable values."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int

    def sample(self, rng: Any) -> Any:
        """A random genotype."""
        ...

    def mutate(self, genotype: Any, rng: Any) -> Any:
        """A random neighbour of ``genotype`` (never equal to it)."""
        ...

    def render(self, genotype: Any) -> str:
        """The complete candidate program for ``genotype``."""
        ...

    def encode(self, genotype: Any) -> Any:
        """A JSON-safe form, stored in ``Proposal.meta["genotype"]``."""
        ...

    def decode(self, data: Any) -> Any:
        """Inverse of :meth:`encode`; :class:`ValueError` on bad data."""
        ...

    def from_source(self, source: str) -> Any | None:
        """The genotype a rendered program carries, read statically; ``None`` if absent."""
        ...


def make_space(
    kind: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    preset: str | None = None,
    **options: Any,
) -> SearchSpace:
    """``make_space("cell", shape, classes, preset="small")`` or ``make_space("chain", ...)``.

    ``preset`` applies to the cell space (default ``nb201`` for 3-channel 32x32 or 16x16
    images, ``small`` otherwise); ``options`` go to :class:`ChainSpace`.
    """
    if kind == "cell":
        if options:
            raise ValueError(f"the cell space takes no options besides preset; got {options}")
        if preset is None:
            nb201_like = tuple(input_shape) in ((3, 32, 32), (3, 16, 16))
            preset = "nb201" if nb201_like else "small"
        return CellSpace(preset, input_shape, num_classes)
    if kind == "chain":
        if preset is not None:
            raise ValueError("the chain space has no presets")
        return ChainSpace(input_shape, num_classes, **options)
    raise ValueError(f"unknown search space {kind!r}; expected 'cell' or 'chain'")


def space_of(task: Any) -> CellSpace:
    """The cell space whose ``nb201`` preset renders a tabular NB201 task's candidates."""
    if not getattr(task, "tabular", False):
        raise ValueError(f"task {getattr(task, 'name', task)!r} has no built-in search space")
    return CellSpace("nb201", task.input_shape, task.num_classes)
