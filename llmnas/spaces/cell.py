"""NAS-Bench-201 cell space: sampling and one-edge mutation of :mod:`llmnas.nb201_cell` cells.

The genotypes, encodings, presets, rendering and costs live in :mod:`llmnas.nb201_cell` (the
ground floor, shared with the NB201 tasks); import them from there.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import numpy as np

from llmnas.nb201_cell import OPS, CellGenotype, CellPreset, _preset, arch_from_source, cell_cost
from llmnas.nb201_cell import render as render_cell

__all__ = ["CellSpace"]


Rng = random.Random | np.random.Generator


def _randbelow(rng: Rng, n: int) -> int:
    if isinstance(rng, random.Random):
        return rng.randrange(n)
    return int(rng.integers(n))


class CellSpace:
    """The NB201 cell space in a macro skeleton, for one task's input shape and classes."""

    name = "cell"

    def __init__(
        self,
        preset: str | CellPreset = "nb201",
        input_shape: tuple[int, ...] = (3, 32, 32),
        num_classes: int = 10,
    ) -> None:
        if len(input_shape) not in (2, 3):
            raise ValueError(f"cell space needs (C, L) or (C, H, W) inputs; got {input_shape}")
        self.preset = _preset(preset)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)

    def sample(self, rng: Rng) -> CellGenotype:
        """Uniform over the 5**6 = 15,625 cells."""
        return CellGenotype(tuple(OPS[_randbelow(rng, len(OPS))] for _ in range(6)))

    def mutate(self, genotype: CellGenotype, rng: Rng) -> CellGenotype:
        """One-edge mutation: a uniformly chosen edge gets a different op, uniformly."""
        edge = _randbelow(rng, 6)
        others = [op for op in OPS if op != genotype.ops[edge]]
        ops = list(genotype.ops)
        ops[edge] = others[_randbelow(rng, len(others))]
        return replace(genotype, ops=tuple(ops))

    def render(self, genotype: CellGenotype) -> str:
        return render_cell(genotype, self.preset)

    def encode(self, genotype: CellGenotype) -> str:
        """JSON-safe form for ``Proposal.meta["genotype"]``: the NB201 arch string."""
        return genotype.to_arch_str()

    def decode(self, data: Any) -> CellGenotype:
        return CellGenotype.from_arch_str(data)

    def from_source(self, source: str) -> CellGenotype | None:
        arch = arch_from_source(source)
        try:
            return None if arch is None else CellGenotype.from_arch_str(arch)
        except ValueError:
            return None

    def cost(self, genotype: CellGenotype) -> tuple[int, int]:
        """``(params, flops)`` of the rendered model (:func:`~llmnas.nb201_cell.cell_cost`)."""
        return cell_cost(genotype, self.preset, self.input_shape, self.num_classes)
