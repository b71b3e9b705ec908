"""Seeded mutations of candidate source code, on the syntax tree (no language model).

Each mutation takes a :class:`~llmnas.operators.ast_program.Program`, edits its tree in place,
returns a short description, and raises :class:`NotApplicable` when it cannot apply:

- ``width``: change the out channels/features/hidden size of a Conv/Linear/GRU/LSTM of the
  forward chain by a factor in [0.5, 2]; the next consumer follows (or becomes ``Lazy*``).
  Not the classifier (outputs ``num_classes``), not layers inside residual bodies, not
  widths written as variables.
- ``kernel``: change a conv kernel size by an even step, moving the padding by half of it so
  the output length is unchanged ('same' stays 'same'). Integer kernels only.
- ``stride``: toggle a conv stride between 1 and 2; the first Linear downstream re-infers its
  input width. Not inside residual bodies.
- ``deepen``: duplicate a conv/linear + norm + activation unit as a shape-preserving layer
  after it, or give a classifier ``Linear(a, num_classes)`` a hidden layer.
- ``shallow``: remove a conv/linear unit, a pooling layer or a residual block of the chain;
  the consumer takes the removed layer's input width.
- ``activation``: swap an activation module (or a functional ``relu``/``gelu``/... call) for
  another of ReLU, GELU, SiLU, Tanh, LeakyReLU, ELU.
- ``norm``: insert BatchNormNd/GroupNorm after a conv (LayerNorm after a Linear) or swap an
  existing normalisation for another kind that fits the same layer.
- ``skip``: wrap a shape-preserving unit (in width == out width, stride 1, 'same' padding) in
  a ``SkipAdd`` residual (x + body(x)), or add a new residual unit after a conv/linear unit
  (always when no shape-preserving unit exists); the class is added to the program once.
- ``pool``: insert MaxPoolNd/AvgPoolNd (halving the length) after a conv unit.

Every choice is drawn from the ``random.Random`` passed in; nothing reads a global RNG.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Callable
from typing import TypeVar

from llmnas.operators.ast_layers import (
    ACTIVATIONS,
    SKIP_CLASS,
    NotApplicable,
    call,
    clone,
    conv_geometry,
    get_arg,
    in_param,
    int_value,
    layer_name,
    mentions,
    norm_for,
    out_param,
    preserves_length,
    set_arg,
    spatial_dim,
)
from llmnas.operators.ast_program import Item, Program
from llmnas.pyast import parse_source

__all__ = ["MUTATORS"]

T = TypeVar("T")
_FACTORS = (0.5, 0.75, 1.25, 1.5, 2.0)


def _pick(rng: random.Random, options: list[T], what: str) -> T:
    if not options:
        raise NotApplicable(f"no {what}")
    return options[rng.randrange(len(options))]


def _is_classifier(it: Item) -> bool:
    return mentions(get_arg(it.call, out_param(it.name or "") or ""), "num_classes")


def _producers(items: list[Item], roles: tuple[str, ...] = ("conv", "linear")) -> list[int]:
    return [i for i, it in enumerate(items) if it.role in roles and not _is_classifier(it)]


def width(p: Program, rng: random.Random) -> str:
    chain = p.chain()
    cands = [
        i
        for i in _producers(chain, ("conv", "linear", "rnn"))
        if not chain[i].locked
        and int_value(get_arg(chain[i].call, out_param(chain[i].name or "") or "")) is not None
    ]
    i = _pick(rng, cands, "layer with a literal width")
    it = chain[i]
    param = out_param(it.name or "") or ""
    old = int_value(get_arg(it.call, param))
    assert old is not None
    new = old
    while new == old:
        new = min(1024, max(2, round(old * rng.choice(_FACTORS))))
    set_arg(it.call, param, new)
    out: ast.expr = ast.Constant(new)
    if it.role == "rnn":
        bidir = get_arg(it.call, "bidirectional")
        out = ast.Constant(2 * new) if bidir is not None and ast.unparse(bidir) == "True" else out
    p.push_width(chain, i, out, None if it.role == "rnn" else old, crossed=it.role == "rnn")
    return f"width {it.name} {old}->{new} at {it.path}"


def kernel(p: Program, rng: random.Random) -> str:
    items = p.items()
    cands = [i for i, it in enumerate(items) if it.role == "conv" and conv_geometry(it.call)]
    it = items[_pick(rng, cands, "conv with a literal kernel")]
    k, _, pad, d = conv_geometry(it.call)  # type: ignore[misc]
    options = [v for v in range(1, 8) if v != k and (v - k) % 2 == 0]
    if pad != "same":
        options = [v for v in options if pad + d * (v - k) // 2 >= 0]  # type: ignore[operator]
    new = _pick(rng, options, "kernel size")
    set_arg(it.call, "kernel_size", new)
    if pad != "same":
        set_arg(it.call, "padding", pad + d * (new - k) // 2)  # type: ignore[operator]
    return f"kernel {it.name} {k}->{new} at {it.path}"


def stride(p: Program, rng: random.Random) -> str:
    chain = p.chain()
    cands = [
        i
        for i, it in enumerate(chain)
        if it.role == "conv" and not it.locked and conv_geometry(it.call)
    ]
    i = _pick(rng, cands, "conv with a literal stride")
    it = chain[i]
    k, s, pad, d = conv_geometry(it.call)  # type: ignore[misc]
    new = 2 if s == 1 else 1
    set_arg(it.call, "stride", new)
    if pad == "same" and new > 1:
        set_arg(it.call, "padding", d * (k - 1) // 2)
    p.push_length(chain, i)
    return f"stride {it.name} {s}->{new} at {it.path}"


def deepen(p: Program, rng: random.Random) -> str:
    items = p.items()
    cands = [i for i, it in enumerate(items) if it.role in ("conv", "linear")]
    i = _pick(rng, cands, "conv or linear layer")
    it = items[i]
    name = (it.name or "").removeprefix("Lazy")
    if _is_classifier(it):
        if it.role != "linear":
            raise NotApplicable("convolutional classifier")
        hidden = rng.choice((32, 64, 128))
        first = clone(it.call)
        set_arg(first, "out_features", hidden)  # type: ignore[arg-type]
        act = call(rng.choice(ACTIVATIONS))
        last = call("Linear", hidden, clone(get_arg(it.call, "out_features")))  # type: ignore[arg-type]
        p.replace([it], [first, act, last])
        return f"deepen: hidden Linear({hidden}) before the classifier at {it.path}"
    unit, nodes, w = _repeat_unit(p, items, i)
    p.insert(unit[-1], nodes)
    return f"deepen: repeat {name} unit ({ast.unparse(w)} wide) after {unit[-1].path}"


def _repeat_unit(p: Program, items: list[Item], i: int) -> tuple[list[Item], list, ast.expr]:
    """A shape-preserving copy of the unit at ``items[i]``: ``Conv(w, w, k, padding=k // 2)``
    or ``Linear(w, w)``, then copies of the unit's norm and activation."""
    it, unit = items[i], p.group(items, i)
    name = (it.name or "").removeprefix("Lazy")
    w = get_arg(it.call, out_param(it.name or "") or "")
    if w is None:
        raise NotApplicable("producer width unknown")
    if name.startswith("Conv"):
        geo = conv_geometry(it.call)
        k = geo[0] if geo and geo[0] % 2 == 1 else 3
        new = call(name, w, w, k, padding=k // 2)
    else:
        new = call(name, w, w)
    tail = [clone(u.node) for u in unit[1:]]
    if not any(u.role == "act" for u in unit):
        tail.append(call("ReLU"))
    return unit, [new, *tail], w


def shallow(p: Program, rng: random.Random) -> str:
    chain = p.chain()
    cands = _producers(chain)
    cands += [i for i, it in enumerate(chain) if it.role in ("pool", "skip")]
    cands = [i for i in cands if not chain[i].locked]
    i = _pick(rng, cands, "removable layer")
    it = chain[i]
    unit = p.group(chain, i) if it.role in ("conv", "linear") else [it]
    p.replace(unit, None)
    end = i + len(unit) - 1
    if it.role in ("conv", "linear"):
        src = get_arg(it.call, in_param(it.name or "") or "") if not it.lazy else None
        old = int_value(get_arg(it.call, out_param(it.name or "") or ""))
        p.push_width(chain, end, None if src is None else clone(src), old)
        if it.role == "conv" and not preserves_length(it.call):
            p.push_length(chain, end)
    elif it.role == "pool":
        p.push_length(chain, end)
    return f"shallow: remove {it.name} unit at {it.path}"


_FUNCTIONAL = {
    "relu": "ReLU",
    "gelu": "GELU",
    "silu": "SiLU",
    "tanh": "Tanh",
    "leaky_relu": "LeakyReLU",
    "elu": "ELU",
}


def _functional(p: Program) -> list[ast.Call]:
    out = []
    for node in ast.walk(p.model):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            prefix = ast.unparse(node.func.value)
            if node.func.attr in _FUNCTIONAL and prefix in ("F", "torch", "torch.nn.functional"):
                if len(node.args) == 1:
                    out.append(node)
    return out


def activation(p: Program, rng: random.Random) -> str:
    acts = [it for it in p.items() if it.role == "act"]
    funcs = _functional(p)
    j = _pick(rng, list(range(len(acts) + len(funcs))), "activation")
    if j < len(acts):
        it = acts[j]
        new = rng.choice([a for a in ACTIVATIONS if a != it.name])
        p.replace([it], call(new))
        return f"activation {it.name}->{new} at {it.path}"
    node = funcs[j - len(acts)]
    old = _FUNCTIONAL[node.func.attr]  # type: ignore[attr-defined]
    new = rng.choice([a for a in ACTIVATIONS if a != old])
    fname = next(k for k, v in _FUNCTIONAL.items() if v == new)
    node.func = (
        parse_source("torch.tanh" if new == "Tanh" else f"torch.nn.functional.{fname}")
        .body[0]
        .value
    )  # type: ignore[attr-defined]
    node.keywords = []
    return f"activation {old}->{new} in forward"


def norm(p: Program, rng: random.Random) -> str:
    items = p.items()
    actions: list[tuple[str, int, int]] = []  # (kind, producer index, norm index)
    for i in _producers(items):
        it = items[i]
        nxt = items[i + 1] if i + 1 < len(items) else None
        if nxt is not None and nxt.holder is it.holder and nxt.role == "norm":
            actions.append(("swap", i, i + 1))
        elif get_arg(it.call, out_param(it.name or "") or "") is not None:
            actions.append(("insert", i, -1))
    kind, i, j = _pick(rng, actions, "place for a normalisation")
    prod = items[i]
    w = get_arg(prod.call, out_param(prod.name or "") or "")
    if w is None:
        raise NotApplicable("producer width unknown")
    base = (prod.name or "").removeprefix("Lazy")
    if kind == "insert":
        new = norm_for(base, w, rng.randrange(2))
        p.insert(prod, [new])
        return f"norm: insert {layer_name(new)} after {prod.path}"
    old = items[j]
    choices = [norm_for(base, w, c) for c in range(2)]
    choices = [c for c in choices if layer_name(c) != (old.name or "").removeprefix("Lazy")]
    new = _pick(rng, choices, "other normalisation")
    p.replace([old], new)
    return f"norm: {old.name}->{layer_name(new)} at {old.path}"


def _shape_preserving(it: Item) -> bool:
    if it.in_skip or it.lazy or it.role not in ("conv", "linear"):
        return False
    a = get_arg(it.call, in_param(it.name or "") or "")
    b = get_arg(it.call, out_param(it.name or "") or "")
    if a is None or b is None or ast.dump(a) != ast.dump(b):
        same = int_value(a) is not None and int_value(a) == int_value(b)
        if not same:
            return False
    groups = get_arg(it.call, "groups")
    if groups is not None and int_value(groups) != 1:
        return False
    return it.role == "linear" or preserves_length(it.call)


def skip(p: Program, rng: random.Random) -> str:
    items = p.items()
    cands = [i for i, it in enumerate(items) if _shape_preserving(it)]
    if cands and rng.random() < 0.7:
        unit = p.group(items, _pick(rng, cands, "shape-preserving block"))
        p.replace(unit, _skip_call([u.node for u in unit]))
        p.ensure_skip_class()
        return f"skip: residual around {len(unit)} layer(s) at {unit[0].path}"
    # no such block (or by chance): add a new residual unit after a conv/linear unit
    i = _pick(rng, _producers(items), "conv or linear layer")
    unit, nodes, _ = _repeat_unit(p, items, i)
    p.insert(unit[-1], [_skip_call(nodes)])
    p.ensure_skip_class()
    return f"skip: new residual {items[i].name} unit after {unit[-1].path}"


def _skip_call(nodes: list[ast.expr]) -> ast.Call:
    return ast.Call(ast.Name(SKIP_CLASS, ast.Load()), nodes, [])


def pool(p: Program, rng: random.Random) -> str:
    chain = p.chain()
    cands = []
    for i, it in enumerate(chain):
        if it.role == "conv" and spatial_dim(it.name) and not it.locked:
            end = i + len(p.group(chain, i)) - 1
            nxt = chain[end + 1] if end + 1 < len(chain) else None
            if nxt is None or nxt.role not in ("pool", "apool"):
                cands.append((i, end))
    i, end = _pick(rng, cands, "conv unit without pooling")
    dim = spatial_dim(chain[i].name)
    kind = rng.choice(("MaxPool", "AvgPool"))
    new = call(f"{kind}{dim}d", 2) if rng.random() < 0.5 else call(f"{kind}{dim}d", 3, 2, 1)
    p.insert(chain[end], [new])
    p.push_length(chain, end)
    return f"pool: insert {ast.unparse(new).removeprefix('nn.')} after {chain[end].path}"


MUTATORS: dict[str, Callable[[Program, random.Random], str]] = {
    "width": width,
    "kernel": kernel,
    "stride": stride,
    "deepen": deepen,
    "shallow": shallow,
    "activation": activation,
    "norm": norm,
    "skip": skip,
    "pool": pool,
}
"""Mutation kind -> function editing a Program in place and returning a description."""
