"""NAS-Bench-201 cells without a search space: genotypes, architecture strings, NASLib
encodings, macro-skeleton presets, the rendered program and its analytic cost.

A cell is a DAG of 4 nodes; node ``j`` is the sum of ``op(node i)`` over ``i < j`` and the cell
outputs node 3. Its 6 edges each carry one of :data:`OPS`. Genotype order:
:class:`CellGenotype.ops` lists the edges in NB201 string order, grouped by target node,
``0->1, 0->2, 1->2, 0->3, 1->3, 2->3`` (:data:`STRING_EDGES`), the order of the NB201 string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``. NASLib's op-index strings (e.g. ``"220222"``) use
another edge order, ``0->1, 0->2, 0->3, 1->2, 1->3, 2->3`` (:data:`NASLIB_EDGES`), and another
op numbering (:data:`NASLIB_OPS`: 0 skip, 1 none, 2 conv3x3, 3 conv1x1, 4 avgpool).

:func:`render` writes a standalone candidate (torch only) whose module constant ``NB201_ARCH``
is the architecture string; the network is built from that constant, so the code and the
constant cannot disagree, and tabular tasks read the constant statically. This module sits on
the ground floor (the NB201 tasks use it); :mod:`llmnas.spaces.cell` adds sampling and mutation.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

from llmnas.pyast import parse_source

__all__ = [
    "NASLIB_EDGES",
    "NASLIB_OPS",
    "OPS",
    "PRESETS",
    "STRING_EDGES",
    "CellGenotype",
    "CellPreset",
    "arch_from_source",
    "cell_cost",
    "render",
]

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""NB201's own op list, in NB201's order."""
NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
"""NASLib op index -> NB201 op name (``OP_NAMES_NB201``)."""
STRING_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
"""(source, target) of each genotype position: the NB201 string order."""
NASLIB_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
"""(source, target) of each NASLib digit ``d0..d5``."""


TEMPLATE = '''"""NAS-Bench-201 style cell network (llmnas.spaces.cell, preset __PRESET__).

The cell is a DAG of 4 nodes: node j sums op(node i) over every edge i -> j, and the cell
outputs node 3. NB201_ARCH lists the edge ops grouped by target node:
|op(0->1)~0|+|op(0->2)~0|op(1->2)~1|+|op(0->3)~0|op(1->3)~1|op(2->3)~2|
The network is built from NB201_ARCH. Layers are 1-D or 2-D by the rank of input_shape.
"""

import torch
from torch import nn

NB201_ARCH = "__ARCH__"
CHANNELS = __CHANNELS__  # stem width and one stage per entry
CELLS_PER_STAGE = __CELLS__


def parse_arch(arch: str) -> list[tuple[int, int, str]]:
    """(source, target, op) of each edge of an NB201 architecture string."""
    edges = []
    for target, node in enumerate(arch.split("+"), start=1):
        for token in node.strip("|").split("|"):
            op, source = token.split("~")
            edges.append((int(source), target, op))
    return edges


def layer_types(dims: int) -> tuple[type, type, type]:
    if dims == 1:
        return nn.Conv1d, nn.BatchNorm1d, nn.AvgPool1d
    return nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d


class ReLUConvBN(nn.Module):
    def __init__(self, dims: int, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        conv, norm, _ = layer_types(dims)
        self.op = nn.Sequential(
            nn.ReLU(),
            conv(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            norm(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, dims: int, channels: int) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(dims, channels, channels, 1, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(dims, channels, channels, 3, 1)
    if name == "avg_pool_3x3":
        pool = layer_types(dims)[2]
        return pool(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown op {name!r}")


class Cell(nn.Module):
    def __init__(self, dims: int, channels: int):
        super().__init__()
        self.edges = parse_arch(NB201_ARCH)
        self.ops = nn.ModuleList(make_op(op, dims, channels) for _, _, op in self.edges)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in (1, 2, 3):
            inputs = [
                self.ops[k](nodes[source])
                for k, (source, target, _) in enumerate(self.edges)
                if target == node
            ]
            nodes.append(sum(inputs))
        return nodes[-1]


class ResidualReduction(nn.Module):
    """NB201's ResNet basic block with stride 2 (between stages)."""

    def __init__(self, dims: int, c_in: int, c_out: int):
        super().__init__()
        conv, _, pool = layer_types(dims)
        self.conv_a = ReLUConvBN(dims, c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(dims, c_out, c_out, 3, 1)
        self.downsample = nn.Sequential(
            pool(2, stride=2, ceil_mode=True), conv(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class Model(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        dims = len(input_shape) - 1
        if dims not in (1, 2):
            raise ValueError(f"expected (C, L) or (C, H, W) inputs, got {input_shape}")
        conv, norm, _ = layer_types(dims)
        self.stem = nn.Sequential(
            conv(input_shape[0], CHANNELS[0], 3, padding=1, bias=False), norm(CHANNELS[0])
        )
        layers = []
        c_prev = CHANNELS[0]
        for stage, channels in enumerate(CHANNELS):
            if stage > 0:
                layers.append(ResidualReduction(dims, c_prev, channels))
            layers.extend(Cell(dims, channels) for _ in range(CELLS_PER_STAGE))
            c_prev = channels
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(norm(c_prev), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(self.pool(x).flatten(1))
'''


@dataclass(frozen=True)
class CellGenotype:
    """Six op names, one per edge, in NB201 string order (:data:`STRING_EDGES`)."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        ops = tuple(self.ops)
        object.__setattr__(self, "ops", ops)
        if len(ops) != 6 or any(op not in OPS for op in ops):
            raise ValueError(f"a cell genotype is 6 ops from {OPS}; got {ops!r}")

    def to_arch_str(self) -> str:
        """``|op(0->1)~0|+|op(0->2)~0|op(1->2)~1|+|op(0->3)~0|op(1->3)~1|op(2->3)~2|``."""
        nodes = []
        for target in (1, 2, 3):
            tokens = [
                f"{op}~{src}"
                for op, (src, tgt) in zip(self.ops, STRING_EDGES, strict=True)
                if tgt == target
            ]
            nodes.append("|" + "|".join(tokens) + "|")
        return "+".join(nodes)

    @classmethod
    def from_arch_str(cls, arch: str) -> CellGenotype:
        """Parse an NB201 architecture string; :class:`ValueError` if it is not one."""
        if not isinstance(arch, str):
            raise ValueError(f"an NB201 arch string is a str, got {type(arch).__name__}")
        nodes = arch.strip().split("+")
        ops: list[str] = []
        if len(nodes) == 3:
            for target, node in enumerate(nodes, start=1):
                if not (node.startswith("|") and node.endswith("|")):
                    break
                tokens = node[1:-1].split("|")
                if [t.rpartition("~")[2] for t in tokens] != [str(i) for i in range(target)]:
                    break
                ops.extend(t.rpartition("~")[0] for t in tokens)
        if len(ops) != 6 or any(op not in OPS for op in ops):
            raise ValueError(f"not an NB201 architecture string: {arch[:200]!r}")
        return cls(tuple(ops))

    def to_op_indices(self) -> str:
        """NASLib op-index string ``d0..d5`` (edge order :data:`NASLIB_EDGES`)."""
        by_edge = dict(zip(STRING_EDGES, self.ops, strict=True))
        return "".join(str(NASLIB_OPS.index(by_edge[edge])) for edge in NASLIB_EDGES)

    @classmethod
    def from_op_indices(cls, indices: str | tuple[int, ...] | list[int]) -> CellGenotype:
        """From NASLib digits, as ``"220222"`` or ``(2, 2, 0, 2, 2, 2)``."""
        digits = [int(c) for c in indices] if isinstance(indices, str) else list(indices)
        if len(digits) != 6 or any(not 0 <= d < len(NASLIB_OPS) for d in digits):
            raise ValueError(f"NASLib op indices are 6 digits in 0..4; got {indices!r}")
        by_edge = {edge: NASLIB_OPS[d] for edge, d in zip(NASLIB_EDGES, digits, strict=True)}
        return cls(tuple(by_edge[edge] for edge in STRING_EDGES))

    def is_connected(self) -> bool:
        """Whether some path from node 0 to node 3 avoids ``none`` edges."""
        reach = {0}
        for (src, tgt), op in sorted(
            zip(STRING_EDGES, self.ops, strict=True), key=lambda e: e[0][1]
        ):
            if op != "none" and src in reach:
                reach.add(tgt)
        return 3 in reach


@dataclass(frozen=True)
class CellPreset:
    """Macro skeleton: stem of ``channels[0]``, one stage per entry of ``channels`` with
    ``cells_per_stage`` cells, a stride-2 residual block between stages."""

    name: str
    channels: tuple[int, ...]
    cells_per_stage: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.name.replace("-", "_").isidentifier():
            raise ValueError(f"a preset name is a plain identifier; got {self.name!r}")
        if not self.channels or min(self.channels) < 1 or self.cells_per_stage < 0:
            raise ValueError(f"bad preset {self.name}: {self.channels}, {self.cells_per_stage}")


PRESETS: dict[str, CellPreset] = {
    "nb201": CellPreset("nb201", (16, 32, 64), 5),
    "small": CellPreset("small", (16, 32, 64), 1),
    "tiny": CellPreset("tiny", (8, 16), 1),
}
"""``nb201``: NAS-Bench-201's macro network (C=16, N=5); ``small``: one cell per stage (for
MNIST-1D / digits scale); ``tiny``: two narrow stages (tests)."""


def _preset(preset: str | CellPreset) -> CellPreset:
    if isinstance(preset, CellPreset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        known = sorted(PRESETS)
        raise ValueError(f"unknown cell preset {preset!r}; expected one of {known}") from None


def render(genotype: CellGenotype, preset: str | CellPreset = "nb201") -> str:
    """A complete candidate program for ``genotype`` in the ``preset`` skeleton."""
    p = _preset(preset)
    return (
        TEMPLATE.replace("__PRESET__", p.name)
        .replace("__ARCH__", genotype.to_arch_str())
        .replace("__CHANNELS__", repr(tuple(p.channels)))
        .replace("__CELLS__", str(int(p.cells_per_stage)))
    )


def arch_from_source(source: str) -> str | None:
    """The string value of a module-level ``NB201_ARCH = "..."``, read without running code."""
    try:
        tree = parse_source(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    value: str | None = None
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            expr = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names, expr = [node.target.id], node.value
        else:
            continue
        if "NB201_ARCH" in names:
            ok = isinstance(expr, ast.Constant) and isinstance(expr.value, str)
            value = expr.value if ok else None  # the last binding wins, as at run time
    return value


def cell_cost(
    genotype: CellGenotype,
    preset: str | CellPreset,
    input_shape: tuple[int, ...],
    num_classes: int,
) -> tuple[int, int]:
    """``(params, flops)`` of the rendered model, computed analytically.

    FLOPs follow NB201's counter: multiply-accumulates of every convolution and linear
    layer (plus the linear bias); pooling, BN and activations are not counted. For the
    ``nb201`` preset on ``(3, 32, 32)`` and 10 classes this gives NB201's numbers
    (all-``nor_conv_3x3``: 1,531,546 parameters, 220.11969 MFLOPs).
    """
    p = _preset(preset)
    dims = len(input_shape) - 1
    c_in, spatial = input_shape[0], list(input_shape[1:])
    k3, chans = 3**dims, p.channels
    positions = math.prod(spatial)
    params = c_in * chans[0] * k3 + 2 * chans[0]
    flops = positions * c_in * chans[0] * k3
    c_prev = chans[0]
    for stage, c in enumerate(chans):
        if stage > 0:
            spatial = [(s - 1) // 2 + 1 for s in spatial]
            positions = math.prod(spatial)
            macs = c_prev * c * k3 + c * c * k3 + c_prev * c
            params += macs + 4 * c
            flops += positions * macs
        for op in genotype.ops:
            kernel = {"nor_conv_3x3": k3, "nor_conv_1x1": 1}.get(op)
            if kernel is not None:
                params += p.cells_per_stage * (c * c * kernel + 2 * c)
                flops += p.cells_per_stage * positions * c * c * kernel
        c_prev = c
    params += 2 * c_prev + (c_prev + 1) * num_classes
    flops += (c_prev + 1) * num_classes
    return params, flops
