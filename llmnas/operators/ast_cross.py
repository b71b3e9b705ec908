"""Seeded crossover of two candidate programs on the syntax tree: graft from ``b`` into ``a``.

- ``graft_segment``: copy a conv/linear unit (layer + its norm/activation, optionally the
  pooling after it) from ``b``'s forward chain into ``a``'s, before a layer of the same kind
  (Conv1d next to Conv1d, Linear next to Linear), or in place of one of ``a``'s units. The
  graft's input width is taken from the layer it lands before (or inferred), and ``a``'s
  layers after it follow the graft's output width and length.
- ``graft_frontend``: copy the first submodule ``b``'s forward applies to the input (a conv
  stack such as ``self.features``) into ``a`` as ``self.stem``, run it first in ``a.forward``
  and re-size ``a``'s first consumer (a CNN stem in front of an MLP or GRU, say).

Grafts are refused (:class:`NotApplicable`) when the copied code refers to names of ``b``
other than ``nn``/``torch`` (local variables, helper functions), when its widths are not
literal integers, or when no layer of ``a`` has the matching kind. Layers of ``b`` written as
bare ``Conv1d`` are rewritten as ``nn.Conv1d``.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Callable

from llmnas.operators.ast_layers import (
    SKIP_CLASS,
    NotApplicable,
    call,
    clone,
    get_arg,
    in_param,
    int_value,
    layer_name,
    lazify,
    mentions,
    out_param,
    preserves_length,
    set_arg,
    spatial_dim,
)
from llmnas.operators.ast_program import Item, Program
from llmnas.pyast import parse_source

__all__ = ["CROSSERS"]

_ALLOWED_NAMES = frozenset({"nn", "torch", "input_shape", SKIP_CLASS})


def _canonical(node: ast.expr) -> ast.expr:
    """A copy of ``node`` with every known layer called as ``nn.<Layer>``."""
    node = clone(node)
    for sub in ast.walk(node):
        name = layer_name(sub)
        if isinstance(sub, ast.Call) and name and name != SKIP_CLASS:
            sub.func = call(name).func
    return node


def _self_contained(nodes: list[ast.expr]) -> bool:
    names = {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}
    return names <= _ALLOWED_NAMES and not any(mentions(n, "num_classes") for n in nodes)


def _kind(it: Item) -> tuple[str, int]:
    return it.role, spatial_dim(it.name)


def _changes_length(items: list[Item]) -> bool:
    return any(
        it.role in ("pool", "apool") or (it.role == "conv" and not preserves_length(it.call))
        for it in items
    )


def _width_of(it: Item) -> ast.expr | None:
    return get_arg(it.call, out_param(it.name or "") or "")


def graft_segment(a: Program, b: Program, rng: random.Random, shape: tuple | None) -> str:
    bchain = b.chain()
    segments: list[list[Item]] = []
    for i, it in enumerate(bchain):
        if it.role not in ("conv", "linear") or int_value(_width_of(it)) is None:
            continue
        if mentions(_width_of(it), "num_classes"):
            continue
        unit = b.group(bchain, i)
        segments.append(unit)
        nxt = i + len(unit)
        if nxt < len(bchain) and bchain[nxt].holder is it.holder and bchain[nxt].role == "pool":
            segments.append([*unit, bchain[nxt]])
    if not segments:
        raise NotApplicable("no graftable unit in the second parent")
    seg = segments[rng.randrange(len(segments))]
    achain = a.chain()
    targets = [i for i, it in enumerate(achain) if _kind(it) == _kind(seg[0]) and not it.locked]
    if not targets:
        raise NotApplicable(f"first parent has no {seg[0].name} layer to graft next to")
    t = targets[rng.randrange(len(targets))]
    target = achain[t]
    nodes = [_canonical(it.node) for it in seg]
    first = nodes[0]
    assert isinstance(first, ast.Call)
    src = None if target.lazy else get_arg(target.call, in_param(target.name or "") or "")
    first_in = in_param(layer_name(first) or "")
    if src is None or first_in is None:
        lazify(first)
    else:
        set_arg(first, first_in, ast.Constant(0))
    if not _self_contained(nodes):
        raise NotApplicable("grafted unit refers to names of the second parent")
    if src is not None and first_in is not None:
        set_arg(first, first_in, clone(src))
    out = ast.Constant(int_value(_width_of(seg[0])))
    is_classifier = mentions(_width_of(target), "num_classes")
    if is_classifier or rng.random() < 0.5:
        a.insert(target, nodes, after=False)
        if not target.lazy:
            set_arg(target.call, in_param(target.name or "") or "", out)
        if _changes_length(seg):
            a.push_length(achain, t - 1)
        return f"graft {seg[0].name} unit from {seg[0].path} before {target.path}"
    unit = a.group(achain, t)
    a.replace(unit, nodes)
    end = t + len(unit) - 1
    a.push_width(achain, end, out, int_value(_width_of(target)))
    if _changes_length(seg) or _changes_length(unit):
        a.push_length(achain, end)
    return f"graft {seg[0].name} unit from {seg[0].path} in place of {target.path}"


def graft_frontend(a: Program, b: Program, rng: random.Random, shape: tuple | None) -> str:
    if a.hidden_attrs():
        raise NotApplicable("first parent's forward uses submodules the operator cannot follow")
    order = b.forward_order()
    if not order:
        raise NotApplicable("second parent's forward calls no submodule")
    name = order[0]
    value = _canonical(b.attrs()[name].value)
    holder = ast.Assign(targets=[], value=value)
    items = [it for it in b._expand(value, holder, "stem", False) if not it.in_skip]
    convs = [it for it in items if it.role == "conv"]
    allowed = ("conv", "norm", "act", "pass", "pool", "apool", "skip")
    if not convs or any(it.role not in allowed for it in items):
        raise NotApplicable(f"{name} of the second parent is not a conv stack")
    dim = spatial_dim(convs[0].name)
    if shape is not None and dim != len(shape) - 1:
        raise NotApplicable(f"{convs[0].name} does not fit inputs of shape {shape}")
    if any(spatial_dim(it.name) not in (0, dim) for it in a.chain() if it.role == "conv"):
        raise NotApplicable("parents use convolutions of different dimensionality")
    width = int_value(_width_of(convs[-1]))
    if width is None:
        raise NotApplicable("stem width is not a literal")
    if not convs[0].lazy:
        set_arg(convs[0].call, in_param(convs[0].name or "") or "", ast.Constant(0))
    if not _self_contained([value]):
        raise NotApplicable("stem refers to names of the second parent")
    if not convs[0].lazy:
        first_in = parse_source("input_shape[0]", mode="eval").body
        set_arg(convs[0].call, in_param(convs[0].name or "") or "", first_in)
    if any(it.role == "skip" for it in items):
        a.ensure_skip_class()
    achain = a.chain()
    attr = a.add_attribute("stem", value)
    x = a.forward.args.args[1].arg if len(a.forward.args.args) > 1 else None
    if x is None:
        raise NotApplicable("forward takes no input argument")
    body = a.forward.body
    docstring = bool(body) and isinstance(body[0], ast.Expr)
    at = 1 if docstring and isinstance(body[0].value, ast.Constant) else 0  # type: ignore[attr-defined]
    body.insert(at, parse_source(f"{x} = self.{attr}({x})").body[0])
    a.push_width(achain, -1, ast.Constant(width), None, crossed=True)
    if _changes_length(items):
        a.push_length(achain, -1)
    return f"graft {name} of the second parent as stem self.{attr}"


CROSSERS: dict[str, Callable[[Program, Program, random.Random, tuple | None], str]] = {
    "graft_segment": graft_segment,
    "graft_frontend": graft_frontend,
}
"""Crossover kind -> function editing the first Program in place and returning a description."""
