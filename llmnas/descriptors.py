"""Behaviour descriptors: where a candidate lands in the quality-diversity map.

A descriptor is a number computed from a candidate's metrics. Each one has a default range;
the archive divides the range into equal bins, and values outside it land in the edge bins
(pyribs clips them). The defaults are chosen so MNIST-1D candidates (a 410-parameter MLP up to
about a million parameters) spread over many cells; override ``ranges`` in the archive config
for other tasks.

=====================  =====================================================  ============
name                   value                                                  range
=====================  =====================================================  ============
``log10_params``       log10 of ``metrics["params"]`` (trainable parameters)  [2.5, 6.5]
``log10_flops``        log10 of ``metrics["flops"]`` (forward FLOPs/example)   [3.0, 9.0]
``log10_flops_per_param``  log10 of FLOPs per parameter (weight reuse: about   [0.0, 3.0]
                       0.3 for dense layers, higher for convolutions and
                       recurrences applied at many positions)
``depth``              ``metrics["depth"]``: count of parametric layers        [0, 32]
``width_depth_ratio``  log10(width / depth); width is ``metrics["width"]``     [-1.0, 3.0]
                       or, if absent, sqrt(params / depth) (the side of a
                       square weight matrix holding the mean layer's params)
``latency_ms``         ``metrics["latency_ms"]``: forward latency of a batch   [0, 20]
=====================  =====================================================  ============

``log10_params`` and ``log10_flops_per_param`` are the default pair: they are nearly
independent (size against how often each weight is used), so a run spreads over the map, where
log10 params and log10 FLOPs rise together and fill only a diagonal band. A run's actual ranges
usually come from its task's seed programs (see :func:`seed_ranges`).

A descriptor whose inputs are missing or non-positive is left out of the result; a candidate
without every descriptor an archive needs is not placed in it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DESCRIPTORS",
    "SEED_RANGE_FACTOR",
    "DescriptorSpec",
    "compute_descriptors",
    "descriptor_vector",
    "seed_ranges",
]


@dataclass(frozen=True)
class DescriptorSpec:
    """A descriptor's name, default range (inclusive) and one-line meaning."""

    name: str
    low: float
    high: float
    doc: str


DESCRIPTORS: dict[str, DescriptorSpec] = {
    spec.name: spec
    for spec in (
        DescriptorSpec("log10_params", 2.5, 6.5, "log10 of the trainable parameter count"),
        DescriptorSpec("log10_flops", 3.0, 9.0, "log10 of forward FLOPs per example"),
        DescriptorSpec("log10_flops_per_param", 0.0, 3.0, "log10 of forward FLOPs per parameter"),
        DescriptorSpec("depth", 0.0, 32.0, "number of parametric layers"),
        DescriptorSpec("width_depth_ratio", -1.0, 3.0, "log10 of (layer width / depth)"),
        DescriptorSpec("latency_ms", 0.0, 20.0, "forward latency of one batch in milliseconds"),
    )
}
"""Known descriptors by name."""


def _positive(metrics: Mapping[str, float | int], key: str) -> float | None:
    value = metrics.get(key)
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) and value > 0 else None


def compute_descriptors(metrics: Mapping[str, float | int]) -> dict[str, float]:
    """Every descriptor that ``metrics`` allows, by name (see the module table)."""
    out: dict[str, float] = {}
    params = _positive(metrics, "params")
    flops = _positive(metrics, "flops")
    depth = _positive(metrics, "depth")
    if params is not None:
        out["log10_params"] = math.log10(params)
    if flops is not None:
        out["log10_flops"] = math.log10(flops)
        if params is not None:
            out["log10_flops_per_param"] = math.log10(flops / params)
    if depth is not None:
        out["depth"] = depth
        width = _positive(metrics, "width")
        if width is None and params is not None:
            width = math.sqrt(params / depth)
        if width is not None:
            out["width_depth_ratio"] = math.log10(width / depth)
    latency = metrics.get("latency_ms")
    if latency is not None and math.isfinite(float(latency)) and float(latency) >= 0:
        out["latency_ms"] = float(latency)
    return out


def descriptor_vector(
    names: list[str],
    descriptors: Mapping[str, float],
    metrics: Mapping[str, float | int],
) -> list[float] | None:
    """The values of ``names`` in order: from ``descriptors`` if all are there, else computed.

    Returns ``None`` when some descriptor cannot be had or is not finite.
    """
    try:
        values = [float(descriptors[n]) for n in names]
    except KeyError:
        computed = compute_descriptors(metrics)
        values = [computed.get(n, math.nan) for n in names]
    return values if all(map(math.isfinite, values)) else None


SEED_RANGE_FACTOR = 10.0
"""How far seed-derived ranges reach beyond the seeds: a factor on each side (one decade)."""

_LOG_FLOOR = {"log10_flops_per_param": 0.0}  # below one FLOP per parameter nothing lands


def seed_ranges(
    names: list[str],
    seed_metrics: list[Mapping[str, float | int]],
    factor: float = SEED_RANGE_FACTOR,
) -> dict[str, tuple[float, float]]:
    """Ranges for the ``log10_*`` descriptors in ``names`` derived from the seed programs.

    Each range spans the seeds' values widened by ``factor`` on both sides (``log10(factor)``
    in log space), and never reaches below a descriptor's natural floor (one FLOP per
    parameter). Descriptors that are not logarithmic, or that no seed has, are left out (the
    archive uses their defaults).
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    widen = math.log10(factor)
    values: dict[str, list[float]] = {}
    for metrics in seed_metrics:
        for name, value in compute_descriptors(metrics).items():
            values.setdefault(name, []).append(value)
    out: dict[str, tuple[float, float]] = {}
    for name in names:
        if not name.startswith("log10_") or not values.get(name):
            continue
        low = max(min(values[name]) - widen, _LOG_FLOOR.get(name, -math.inf))
        high = max(values[name]) + widen
        out[name] = (round(low, 4), round(high, 4))
    return out
