"""Classical code-level operators (no language model): seeded AST mutation and crossover.

Public API::

    mutate(source, rng, kinds=None, input_shape=None) -> Edit | None
    crossover(a, b, rng, kinds=None, input_shape=None) -> Edit | None
    apply_mutation(kind, source, rng, input_shape=None) -> Edit      # raises NotApplicable
    apply_crossover(kind, a, b, rng, input_shape=None) -> Edit       # raises NotApplicable
    MUTATIONS, CROSSOVERS                                            # the kind names

An :class:`Edit` holds the new ``source`` (rendered with ``ast.unparse``, so comments are
lost), a short ``description`` ("width Conv1d 25->37 at features[2]") and the ``kind``.
Results keep the candidate contract (``Model(input_shape, num_classes)``, ``(B, num_classes)``
logits): the classifier layer is never re-sized, and widths or lengths that change are pushed
to the layers downstream, which become ``Lazy*`` when their input size cannot be written
down (a dry run at the end of ``__init__`` then gives them real parameters).

The kinds are documented in :mod:`llmnas.operators.ast_mutate` and
:mod:`llmnas.operators.ast_cross`. ``rng`` is a ``random.Random``, a numpy ``Generator`` or
an int seed; the same source and seed give the same edit. With ``input_shape`` given, edits
that would shrink a conv or pool input below one element are refused. Operators never run
the candidate; the gate and the sandbox do that.
"""

from __future__ import annotations

import random
from typing import Any

from llmnas.gate import normalised_hash
from llmnas.operators.ast_cross import CROSSERS
from llmnas.operators.ast_layers import Edit, NotApplicable
from llmnas.operators.ast_mutate import MUTATORS
from llmnas.operators.ast_program import Program

__all__ = [
    "CROSSOVERS",
    "MUTATIONS",
    "Edit",
    "NotApplicable",
    "apply_crossover",
    "apply_mutation",
    "crossover",
    "mutate",
]

MUTATIONS: tuple[str, ...] = tuple(MUTATORS)
"""Named mutation kinds: width, kernel, stride, deepen, shallow, activation, norm, skip, pool."""

CROSSOVERS: tuple[str, ...] = tuple(CROSSERS)
"""Named crossover kinds: graft_segment, graft_frontend."""

_ATTEMPTS = 4
"""Random choices tried per kind before it is declared not applicable to a program."""


def _as_random(rng: Any) -> random.Random:
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, int):
        return random.Random(rng)
    if hasattr(rng, "integers"):  # numpy Generator
        return random.Random(int(rng.integers(0, 2**63 - 1)))
    raise TypeError(f"rng must be random.Random, numpy Generator or int, got {type(rng)!r}")


def _accept(new: str, old: str, input_shape: tuple[int, ...] | None) -> None:
    if normalised_hash(new) == normalised_hash(old):
        raise NotApplicable("edit changed nothing")
    if not Program(new).spatial_ok(input_shape):
        raise NotApplicable("edit would shrink a feature map below one element")


def apply_mutation(
    kind: str, source: str, rng: Any, input_shape: tuple[int, ...] | None = None
) -> Edit:
    """Apply mutation ``kind`` to ``source``; :class:`NotApplicable` when it cannot."""
    if kind not in MUTATORS:
        raise ValueError(f"unknown mutation {kind!r}; expected one of: {', '.join(MUTATIONS)}")
    rng = _as_random(rng)
    reason = NotApplicable(kind)
    for _ in range(_ATTEMPTS):
        try:
            program = Program(source)
            description = MUTATORS[kind](program, rng)
            new = program.render()
            _accept(new, source, input_shape)
            return Edit(source=new, description=description, kind=kind)
        except NotApplicable as exc:
            reason = exc
    raise reason


def apply_crossover(
    kind: str, a: str, b: str, rng: Any, input_shape: tuple[int, ...] | None = None
) -> Edit:
    """Graft part of ``b`` into ``a`` with crossover ``kind``; :class:`NotApplicable` if not."""
    if kind not in CROSSERS:
        raise ValueError(f"unknown crossover {kind!r}; expected one of: {', '.join(CROSSOVERS)}")
    rng = _as_random(rng)
    reason = NotApplicable(kind)
    for _ in range(_ATTEMPTS):
        try:
            pa, pb = Program(a), Program(b)
            description = CROSSERS[kind](pa, pb, rng, input_shape)
            new = pa.render()
            _accept(new, a, input_shape)
            return Edit(source=new, description=description, kind=kind)
        except NotApplicable as exc:
            reason = exc
    raise reason


def mutate(
    source: str,
    rng: Any,
    kinds: tuple[str, ...] | list[str] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> Edit | None:
    """One random applicable mutation of ``source`` (kinds tried in random order), or None."""
    rng = _as_random(rng)
    order = list(kinds or MUTATIONS)
    rng.shuffle(order)
    for kind in order:
        try:
            return apply_mutation(kind, source, rng, input_shape)
        except NotApplicable:
            continue
    return None


def crossover(
    a: str,
    b: str,
    rng: Any,
    kinds: tuple[str, ...] | list[str] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> Edit | None:
    """One random applicable crossover grafting part of ``b`` into ``a``, or None."""
    rng = _as_random(rng)
    order = list(kinds or CROSSOVERS)
    rng.shuffle(order)
    for kind in order:
        try:
            return apply_crossover(kind, a, b, rng, input_shape)
        except NotApplicable:
            continue
    return None
