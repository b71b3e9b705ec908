"""Search spaces as prompt text: a description, a compact notation, and a strict reply parser.

The space-aware LLM operator (:mod:`llmnas.operators.space_ops`) shows a language model only
what a space lets it change, in the space's own notation, and reads back only that notation:

- :class:`CellText`: an NB201 cell as its architecture string
  ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``. With ``blind_seed`` the five operation names are
  replaced by the neutral tokens ``opA`` .. ``opE`` under a permutation drawn from that seed,
  and the description names neither the benchmark nor what any operation computes: a model
  can then only learn the operations from measured results (search), not from what it read
  about NAS-Bench-201 (recall).
- :class:`ChainText`: a chain as ``conv 32 k5 relu; pool k3; mix 64 gelu`` (one entry per
  layer, input to output).

``parse(reply)`` takes the last line of the reply that starts with ``ARCH:`` (a reply with no
such line is searched for a bare architecture) and returns a genotype of the space, or raises
:class:`ValueError` with one line saying what was expected. Nothing here runs model code.
"""

from __future__ import annotations

import random
import re
from typing import Any, Protocol

from llmnas.nb201_cell import OPS, STRING_EDGES, CellGenotype
from llmnas.spaces.cell import CellSpace
from llmnas.spaces.chain import ChainGenotype, ChainSpace, Layer

__all__ = ["BLIND_TOKENS", "CellText", "ChainText", "SpaceText", "space_text"]

BLIND_TOKENS: tuple[str, ...] = ("opA", "opB", "opC", "opD", "opE")
"""Neutral operation names of blind cell tasks."""

_OP_MEANINGS = {
    "none": "no connection (outputs zeros)",
    "skip_connect": "identity",
    "nor_conv_1x1": "ReLU, 1x1 convolution, batch norm",
    "nor_conv_3x3": "ReLU, 3x3 convolution, batch norm",
    "avg_pool_3x3": "3x3 average pooling, stride 1",
}


class SpaceText(Protocol):
    """What the space-aware operator needs from a space."""

    blind: bool
    notation: str

    def describe(self, *, tabular: bool) -> str: ...

    def show(self, genotype: Any) -> str: ...

    def parse(self, reply: str) -> Any: ...

    def genotype_of(self, source: str) -> Any | None: ...

    def render(self, genotype: Any) -> str: ...

    def encode(self, genotype: Any) -> Any: ...


def _arch_line(reply: str) -> str | None:
    lines = [ln.strip().strip("`*").strip() for ln in reply.splitlines()]
    tagged = [ln for ln in lines if ln.upper().startswith("ARCH:")]
    return tagged[-1][5:].strip().strip("`").strip() if tagged else None


def _arch_str(ops: tuple[str, ...]) -> str:
    groups: list[list[str]] = [[], [], []]
    for op, (src, tgt) in zip(ops, STRING_EDGES, strict=True):
        groups[tgt - 1].append(f"{op}~{src}")
    return "+".join("|" + "|".join(g) + "|" for g in groups)


def _arch_ops(arch: str) -> tuple[str, ...] | None:
    """The six op names of an architecture string in any naming, or ``None``."""
    groups = arch.strip().split("+")
    if len(groups) != 3:
        return None
    ops: list[str] = []
    for target, group in enumerate(groups, start=1):
        tokens = group.strip("|").split("|")
        if [t.rpartition("~")[2] for t in tokens] != [str(i) for i in range(target)]:
            return None
        ops.extend(t.rpartition("~")[0] for t in tokens)
    return tuple(ops)


class _Delegating:
    """Reading, rendering and encoding genotypes are the space's own business."""

    space: Any

    def genotype_of(self, source: str) -> Any | None:
        return self.space.from_source(source)

    def render(self, genotype: Any) -> str:
        return self.space.render(genotype)

    def encode(self, genotype: Any) -> Any:
        return self.space.encode(genotype)


class CellText(_Delegating):
    """An NB201 cell space as architecture strings, optionally blind (see the module doc)."""

    notation = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"

    def __init__(self, space: CellSpace, *, blind_seed: int | None = None) -> None:
        self.space = space
        self.blind = blind_seed is not None
        names = list(OPS)
        if self.blind:
            shuffled = list(OPS)
            random.Random(f"blind-{blind_seed}").shuffle(shuffled)
            self._to_shown = dict(zip(shuffled, BLIND_TOKENS, strict=True))
            names = list(BLIND_TOKENS)
        else:
            self._to_shown = {op: op for op in OPS}
        self._to_real = {shown: real for real, shown in self._to_shown.items()}
        self.names = names
        token = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        group = rf"\|(?:(?:{token})~\d\|)+"
        self._pattern = re.compile(rf"{group}(?:\+{group})*")

    def describe(self, *, tabular: bool) -> str:
        p = self.space.preset
        edges = ", ".join(f"{a}->{b}" for a, b in STRING_EDGES)
        if self.blind:
            ops = (
                f"Operations ({len(self.names)}): {', '.join(self.names)}. What each one "
                "computes is hidden on purpose: learn it from the measured results."
            )
        else:
            ops = f"Operations ({len(OPS)}): " + "; ".join(
                f"{op} = {_OP_MEANINGS[op]}" for op in OPS
            )
        scored = (
            "its validation accuracy is looked up in a table of fully trained networks; "
            "nothing is trained and the same cell always gets the same score"
            if tabular
            else "it is trained with the task's recipe and scored on the validation split"
        )
        return "\n".join(
            [
                "What you choose: only the cell. Every candidate is the same network "
                f"(a stem, {len(p.channels)} stages of {p.cells_per_stage} identical cells with "
                f"channels {', '.join(map(str, p.channels))}, a stride-2 residual block between "
                f"stages, global pooling and a linear head) built from your cell; {scored}.",
                "The cell is a directed acyclic graph of 4 nodes: node 0 is the cell's input, "
                "node 3 its output, and node j is the sum of op(node i) over its edges i -> j. "
                f"Its 6 edges, in the order of the architecture string: {edges}.",
                f"Architecture string: {self.notation} with one group per target node "
                "(1, 2, 3); `op~i` in a group is the operation on the edge from node i.",
                ops,
                f"There are {len(self.names) ** 6:,} cells in all.",
            ]
        )

    def show(self, genotype: CellGenotype) -> str:
        return _arch_str(tuple(self._to_shown[op] for op in genotype.ops))

    def parse(self, reply: str) -> CellGenotype:
        line = _arch_line(reply)
        found = self._pattern.findall(line if line is not None else reply)
        if not found:
            where = "the ARCH: line" if line is not None else "the reply (no ARCH: line)"
            raise ValueError(
                f"no architecture string in {where}; expected ARCH: {self.notation} "
                f"with op one of {', '.join(self.names)}"
            )
        ops = _arch_ops(found[-1])
        if ops is None or any(op not in self._to_real for op in ops):
            raise ValueError(
                f"{found[-1]!r} is not a cell: expected 3 groups with 1, 2 and 3 edges "
                f"({self.notation})"
            )
        return CellGenotype(tuple(self._to_real[op] for op in ops))


class ChainText(_Delegating):
    """A chain space as ``op width kKERNEL activation`` entries joined by ``;``."""

    notation = "conv 32 k5 relu; pool k3; sepconv 64 k3 gelu; mix 64 silu"

    def __init__(self, space: ChainSpace) -> None:
        self.space = space
        self.blind = False

    def describe(self, *, tabular: bool) -> str:
        s = self.space
        return "\n".join(
            [
                "What you choose: a plain stack of layers, input to output, followed by global "
                "average pooling and a linear head (added for you); it is trained with the "
                "task's recipe and scored on the validation split.",
                f"Layers: between {s.min_depth} and {s.max_depth}, each one of: "
                "`conv W kK ACT` (convolution, batch norm, activation; W output channels), "
                "`sepconv W kK ACT` (depthwise kxk then pointwise 1x1 convolution, batch norm, "
                "activation), `mix W ACT` (1x1 convolution, batch norm, activation), "
                "`pool kK` (max pooling, stride 2: halves the resolution).",
                f"Choices: ops {', '.join(s.ops)}; W in {', '.join(map(str, s.widths))}; "
                f"K in {', '.join(map(str, s.kernels))}; "
                f"ACT in {', '.join(s.activations)}.",
                f"Notation: entries joined by '; ', e.g. {self.notation}",
            ]
        )

    def show(self, genotype: ChainGenotype) -> str:
        parts = []
        for layer in genotype.layers:
            if layer.op == "pool":
                parts.append(f"pool k{layer.kernel}")
            elif layer.op == "mix":
                parts.append(f"mix {layer.width} {layer.activation}")
            else:
                parts.append(f"{layer.op} {layer.width} k{layer.kernel} {layer.activation}")
        return "; ".join(parts)

    def parse(self, reply: str) -> ChainGenotype:
        line = _arch_line(reply)
        if line is None:
            lines = [ln.strip() for ln in reply.strip().splitlines() if ln.strip()]
            line = lines[-1] if lines else ""
        layers = [self._layer(part.strip()) for part in line.split(";") if part.strip()]
        s = self.space
        if not s.min_depth <= len(layers) <= s.max_depth:
            raise ValueError(
                f"expected {s.min_depth} to {s.max_depth} layers after ARCH:, got {len(layers)}"
            )
        return ChainGenotype(tuple(layers))

    def _layer(self, text: str) -> Layer:
        s, words = self.space, text.split()
        op = words[0] if words else ""
        expected = f"expected one of {self.notation!r}'s forms"
        if op not in s.ops:
            raise ValueError(f"layer {text!r}: unknown op {op!r}; {expected}")
        try:
            if op == "pool":
                (kernel,) = words[1:]
                layer = Layer("pool", 0, int(kernel.lstrip("k")), "none")
            elif op == "mix":
                width, act = words[1:]
                layer = Layer("mix", int(width), 1, act)
            else:
                width, kernel, act = words[1:]
                layer = Layer(op, int(width), int(kernel.lstrip("k")), act)
        except ValueError:
            raise ValueError(f"layer {text!r}: {expected}") from None
        if layer.op != "pool" and (layer.width not in s.widths or layer.activation not in
                                   s.activations):  # fmt: skip
            raise ValueError(f"layer {text!r}: width or activation outside the choices")
        if layer.op != "mix" and layer.kernel not in s.kernels:
            raise ValueError(f"layer {text!r}: kernel outside the choices {s.kernels}")
        return layer


def space_text(space: Any, *, blind_seed: int | None = None) -> SpaceText:
    """The text view of a :class:`CellSpace` or :class:`ChainSpace`."""
    if isinstance(space, CellSpace):
        return CellText(space, blind_seed=blind_seed)
    if isinstance(space, ChainSpace):
        if blind_seed is not None:
            raise ValueError("only cell spaces have a blind form")
        return ChainText(space)
    raise ValueError(f"no text form for space {getattr(space, 'name', space)!r}")
