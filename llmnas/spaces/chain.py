"""Chain space: a plain stack of layers, then global average pooling and a linear head.

Each layer is a :class:`Layer` ``(op, width, kernel, activation)``. Ops:

* ``conv``: convolution (``kernel``, same padding) -> BatchNorm -> activation, ``width`` out;
* ``sepconv``: depthwise convolution (``kernel``) -> pointwise 1x1 convolution -> BatchNorm ->
  activation, ``width`` out;
* ``mix``: linear channel mixing at every position (a 1x1 convolution) -> BatchNorm ->
  activation, ``width`` out; ``kernel`` is always 1;
* ``pool``: max pooling (``kernel``, stride 2, same padding) that halves the resolution and
  keeps the channels; ``width`` is 0 and ``activation`` is ``"none"``.

Layers are 1-D or 2-D by the rank of the input shape (``(C, L)`` or ``(C, H, W)``). The rendered
program holds the genotype in the module constant ``CHAIN_LAYERS``, read back statically by
:meth:`ChainSpace.from_source`.
"""

from __future__ import annotations

import ast
import json
import random
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from llmnas.pyast import parse_source

__all__ = ["CHAIN_OPS", "ChainGenotype", "ChainSpace", "Layer"]

CHAIN_OPS: tuple[str, ...] = ("conv", "sepconv", "mix", "pool")
_ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "none")  # "none" only on pool layers

Rng = random.Random | np.random.Generator

TEMPLATE = '''"""Chain network (rendered by llmnas.spaces.chain): a stack of layers, global average
pooling and a linear head. Each layer is (op, width, kernel, activation); conv, sepconv
(depthwise + pointwise) and mix (1x1) are followed by BatchNorm and the activation, pool is a
stride-2 max pooling. Layers are 1-D or 2-D by the rank of input_shape.
"""

import torch
from torch import nn

CHAIN_LAYERS = __LAYERS__

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def make_layer(dims: int, c_in: int, op: str, width: int, kernel: int, act: str) -> nn.Module:
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    norm = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    if op == "pool":
        pool = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
        return pool(kernel, stride=2, padding=kernel // 2)
    if op == "conv":
        body = [conv(c_in, width, kernel, padding=kernel // 2, bias=False)]
    elif op == "sepconv":
        body = [
            conv(c_in, c_in, kernel, padding=kernel // 2, groups=c_in, bias=False),
            conv(c_in, width, 1, bias=False),
        ]
    elif op == "mix":
        body = [conv(c_in, width, 1, bias=False)]
    else:
        raise ValueError(f"unknown op {op!r}")
    return nn.Sequential(*body, norm(width), ACTIVATIONS[act]())


class Model(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        dims = len(input_shape) - 1
        if dims not in (1, 2):
            raise ValueError(f"expected (C, L) or (C, H, W) inputs, got {input_shape}")
        layers = []
        channels = input_shape[0]
        for op, width, kernel, act in CHAIN_LAYERS:
            layers.append(make_layer(dims, channels, op, width, kernel, act))
            channels = channels if op == "pool" else width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))
'''


def _randbelow(rng: Rng, n: int) -> int:
    if isinstance(rng, random.Random):
        return rng.randrange(n)
    return int(rng.integers(n))


def _pick(rng: Rng, options: tuple[Any, ...] | list[Any]) -> Any:
    return options[_randbelow(rng, len(options))]


@dataclass(frozen=True)
class Layer:
    """One layer of a chain; see the module docstring for what each field means per op."""

    op: str
    width: int
    kernel: int
    activation: str


@dataclass(frozen=True)
class ChainGenotype:
    """The layers of a chain network, input to output."""

    layers: tuple[Layer, ...]

    @property
    def depth(self) -> int:
        return len(self.layers)


class ChainSpace:
    """Chains of ``min_depth..max_depth`` layers over the given choices of op/width/kernel/act."""

    name = "chain"

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 40),
        num_classes: int = 10,
        *,
        min_depth: int = 1,
        max_depth: int = 8,
        ops: tuple[str, ...] = CHAIN_OPS,
        widths: tuple[int, ...] = (8, 16, 32, 64),
        kernels: tuple[int, ...] = (3, 5, 7),
        activations: tuple[str, ...] = ("relu", "gelu", "silu", "tanh"),
    ) -> None:
        if len(input_shape) not in (2, 3):
            raise ValueError(f"chain space needs (C, L) or (C, H, W) inputs; got {input_shape}")
        if not 1 <= min_depth <= max_depth:
            raise ValueError(f"need 1 <= min_depth <= max_depth; got {min_depth}, {max_depth}")
        if unknown := set(ops) - set(CHAIN_OPS):
            raise ValueError(f"unknown chain ops {sorted(unknown)}; expected some of {CHAIN_OPS}")
        if any(k % 2 == 0 or k < 1 for k in kernels):
            raise ValueError(f"kernels must be odd and positive; got {kernels}")
        if bad := set(activations) - set(_ACTIVATIONS[:-1]):
            raise ValueError(f"unknown activations {sorted(bad)}; expected {_ACTIVATIONS[:-1]}")
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        self.min_depth, self.max_depth = int(min_depth), int(max_depth)
        self.ops, self.widths, self.kernels = tuple(ops), tuple(widths), tuple(kernels)
        self.activations = tuple(activations)

    # -- genotypes ---------------------------------------------------------------------------
    def layer(self, rng: Rng, op: str | None = None) -> Layer:
        """A random layer (of ``op`` if given), in canonical form."""
        op = op or _pick(rng, self.ops)
        width, kernel = _pick(rng, self.widths), _pick(rng, self.kernels)
        return self._canonical(Layer(op, width, kernel, _pick(rng, self.activations)))

    @staticmethod
    def _canonical(layer: Layer) -> Layer:
        if layer.op == "pool":
            return Layer("pool", 0, layer.kernel, "none")
        if layer.op == "mix":
            return Layer("mix", layer.width, 1, layer.activation)
        return layer

    def sample(self, rng: Rng) -> ChainGenotype:
        depth = self.min_depth + _randbelow(rng, self.max_depth - self.min_depth + 1)
        return ChainGenotype(tuple(self.layer(rng) for _ in range(depth)))

    def mutate(self, genotype: ChainGenotype, rng: Rng) -> ChainGenotype:
        """Change one attribute of one layer, insert a random layer or remove one.

        The kind is drawn uniformly among those possible (insert needs depth < max_depth,
        remove needs depth > min_depth); the child always differs from the parent.
        """
        for _ in range(100):
            child = self._mutate_once(genotype, rng)
            if child != genotype:
                return child
        raise ValueError("the chain space has too few choices to mutate this genotype")

    def _mutate_once(self, genotype: ChainGenotype, rng: Rng) -> ChainGenotype:
        layers = list(genotype.layers)
        kinds = ["attribute"]
        kinds += ["insert"] if len(layers) < self.max_depth else []
        kinds += ["remove"] if len(layers) > self.min_depth else []
        kind = _pick(rng, kinds)
        if kind == "insert":
            layers.insert(_randbelow(rng, len(layers) + 1), self.layer(rng))
        elif kind == "remove":
            del layers[_randbelow(rng, len(layers))]
        else:
            i = _randbelow(rng, len(layers))
            old = layers[i]
            attrs = {
                "op": self.ops,
                "width": () if old.op == "pool" else self.widths,
                "kernel": () if old.op == "mix" else self.kernels,
                "activation": () if old.op == "pool" else self.activations,
            }
            mutable = [a for a, choices in attrs.items() if len(choices) > 1]
            if not mutable:
                return genotype
            attr = _pick(rng, mutable)
            choices = [c for c in attrs[attr] if c != getattr(old, attr)]
            new = _pick(rng, choices)
            if attr == "op":
                fresh = self.layer(rng, op=new)  # fills fields the old op did not use
                layers[i] = self._canonical(
                    Layer(
                        new,
                        old.width if old.op != "pool" else fresh.width,
                        old.kernel if old.op != "mix" else fresh.kernel,
                        old.activation if old.op != "pool" else fresh.activation,
                    )
                )
            else:
                layers[i] = replace(old, **{attr: new})
        return ChainGenotype(tuple(layers))

    # -- code --------------------------------------------------------------------------------
    def render(self, genotype: ChainGenotype) -> str:
        """A complete candidate program (imports torch only)."""
        rows = ",\n".join(
            "    (" + ", ".join(json.dumps(v) for v in self._row(layer)) + ")"
            for layer in genotype.layers
        )
        return TEMPLATE.replace("__LAYERS__", "[\n" + rows + ",\n]")

    @staticmethod
    def _row(layer: Layer) -> tuple[str, int, int, str]:
        return (layer.op, int(layer.width), int(layer.kernel), layer.activation)

    def encode(self, genotype: ChainGenotype) -> list[list[Any]]:
        """JSON-safe form: ``[[op, width, kernel, activation], ...]``."""
        return [list(self._row(layer)) for layer in genotype.layers]

    def decode(self, data: Any) -> ChainGenotype:
        try:
            layers = tuple(
                self._canonical(Layer(str(op), int(w), int(k), str(a))) for op, w, k, a in data
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a chain genotype: {data!r:.200}") from exc
        if not layers or any(
            layer.op not in CHAIN_OPS or layer.activation not in _ACTIVATIONS for layer in layers
        ):
            raise ValueError(f"not a chain genotype: {data!r:.200}")
        return ChainGenotype(layers)

    def from_source(self, source: str) -> ChainGenotype | None:
        """The genotype in a module-level ``CHAIN_LAYERS = [...]``, read without running code."""
        try:
            tree = parse_source(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
        found = None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "CHAIN_LAYERS" for t in node.targets
            ):
                found = node.value
        try:
            return None if found is None else self.decode(ast.literal_eval(found))
        except ValueError:
            return None
