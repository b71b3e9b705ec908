"""The target policy: what a mutation or crossover prompt asks of the child.

Targets follow four rules (``docs/search.md`` shows them on a real prompt):

1. **Accuracy first, honestly.** The accuracy target is the best parent's validation accuracy
   plus one standard error of the measurement (``task_facts.standard_error``). When less than
   one standard error of head-room is left, the prompt says a gain would be within the noise
   and asks to keep accuracy instead of inventing a target nobody can measure.
2. **No caps nobody asked for.** The user's objectives (``[evolution] objectives``) name what
   is optimised: ``params`` and ``flops`` are second objectives on the Pareto front ("at equal
   accuracy, fewer is better"), never a cap that shrinks round by round. Hard budgets
   (``max_params``, ``max_flops``) are stated as hard limits (and enforced by the cascade).
3. **Targets agree with the instruction.** Every instruction has a direction (``grow``,
   ``shrink`` or none, written in ``instructions.txt``). A growing instruction asks for 1.5-3x
   the best parent's parameters, a shrinking one for 0.3-0.7x, both clipped to the hard budget.
4. **Niches.** A request may carry a niche: the descriptor ranges of an empty (or weakly held)
   archive cell next to a parent (LLMatic's idea). The prompt then asks for a working program
   inside those ranges and says it is kept even when it is less accurate, so the model is
   asked for diversity, not only for smaller programs. The instruction is drawn to agree with
   the niche's direction. A niche is clipped to the hard budgets; one wholly above a budget is
   dropped (:func:`fit_niche`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from llmnas.task_facts import standard_error

__all__ = [
    "Direction",
    "Instruction",
    "Objectives",
    "direction_of_niche",
    "fit_niche",
    "parse_instruction",
    "targets_block",
]

Direction = Literal["grow", "shrink", "same"]

GROW = (1.5, 3.0)
SHRINK = (0.3, 0.7)


@dataclass(frozen=True)
class Instruction:
    """One mutation instruction and the direction it moves the model's size."""

    text: str
    direction: Direction = "same"


def parse_instruction(line: str) -> Instruction:
    """``grow: make the network deeper`` -> Instruction("make the network deeper", "grow")."""
    head, sep, rest = line.partition(":")
    if sep and head.strip() in ("grow", "shrink"):
        return Instruction(rest.strip(), head.strip())  # type: ignore[arg-type]
    return Instruction(line.strip())


@dataclass(frozen=True)
class Objectives:
    """What the user optimises: accuracy first, then the listed costs; optional hard budgets."""

    secondary: tuple[str, ...] = ("params",)
    max_params: int | None = None
    max_flops: int | None = None


def direction_of_niche(niche: Mapping[str, tuple[float, float]], log10_params: float) -> Direction:
    """``grow`` if the niche's parameter range lies above the parent, ``shrink`` if below."""
    low, high = niche.get("log10_params", (log10_params, log10_params))
    if low > log10_params:
        return "grow"
    if high < log10_params:
        return "shrink"
    return "same"


def fit_niche(
    niche: Mapping[str, tuple[float, float]] | None, objectives: Objectives
) -> dict[str, tuple[float, float]] | None:
    """The niche within the hard budgets: its parameter range clipped to ``max_params`` (and
    its FLOPs range to ``max_flops``), or ``None`` when it lies wholly above a budget."""
    if not niche:
        return None
    out = dict(niche)
    for key, cap in (
        ("log10_params", objectives.max_params),
        ("log10_flops", objectives.max_flops),
    ):
        if cap is None or key not in out:
            continue
        low, high = out[key]
        limit = math.log10(cap)
        if low >= limit:
            return None
        out[key] = (low, min(high, limit))
    return out


def _count(value: float) -> str:
    return f"{int(round(value)):,}"


def _range(low: float, high: float) -> str:
    return f"{_count(low)} to {_count(high)}"


def _niche_lines(niche: Mapping[str, tuple[float, float]]) -> list[str]:
    parts = []
    names = {
        "log10_params": "parameters",
        "log10_flops": "FLOPs",
        "log10_flops_per_param": "FLOPs per parameter",
    }
    for key, (low, high) in niche.items():
        if key in names:
            what, lo, hi = names[key], 10**low, 10**high
            parts.append(
                f"{what} {lo:,.1f} to {hi:,.1f}" if hi < 100 else f"{what} {_range(lo, hi)}"
            )
        else:
            parts.append(f"{key} {low:g} to {high:g}")
    return [
        "- niche: " + ", ".join(parts) + ". This part of the archive is still empty (or weakly "
        "held) next to the parents: a working program there is kept even if it is less "
        "accurate than the parents, so reach the niche first and then make it as accurate as "
        "you can"
    ]


def targets_block(
    parents: Sequence[tuple[float | None, int | None, int | None]],
    *,
    n_val: int | None,
    objectives: Objectives,
    direction: Direction = "same",
    niche: Mapping[str, tuple[float, float]] | None = None,
) -> str:
    """The targets as prompt lines; ``parents`` are (val_accuracy, params, flops) triples."""
    scored = [p for p in parents if p[0] is not None]
    lines: list[str] = []
    if niche:
        lines += _niche_lines(niche)
    if scored:
        acc, params, _ = max(scored, key=lambda p: p[0])  # type: ignore[arg-type,return-value]
        assert acc is not None
        se = standard_error(acc, n_val) if n_val else 0.0
        if niche:
            lines.append(
                f"- validation accuracy: as high as the niche allows (best parent {acc:.4f})"
            )
        elif not n_val:
            lines.append(f"- validation accuracy: higher than the best parent's {acc:.4f}")
        elif 1.0 - acc < se:
            lines.append(
                f"- validation accuracy: keep it at the best parent's {acc:.4f}; any gain would be "
                f"within the noise (standard error {se:.3f}), so improve the other targets"
            )
        else:
            lines.append(
                f"- validation accuracy: above {min(1.0, acc + se):.4f} (the best parent's "
                f"{acc:.4f} plus one standard error of {se:.3f})"
            )
    else:
        params = None
        lines.append("- validation accuracy: as high as possible")
    sized = bool(not niche and params and direction != "same")  # a size line agreeing with it
    if sized:
        low, high = GROW if direction == "grow" else SHRINK
        lo, hi = params * low, params * high
        if objectives.max_params is not None:
            hi = min(hi, objectives.max_params)
            lo = min(lo, hi)
        verb = "grows" if direction == "grow" else "shrinks"
        lines.append(
            f"- parameters: about {_range(lo, hi)} (the change {verb} the model; the best parent "
            f"has {_count(params)})"
        )
    for key, what, cap in (
        ("params", "parameters", objectives.max_params),
        ("flops", "FLOPs", objectives.max_flops),
    ):
        if key in objectives.secondary and not (key == "params" and sized):
            rule = "at equal accuracy fewer is better"
            lines.append(
                f"- {what}: " + (f"a second objective: {rule}; no cap" if cap is None else rule)
            )
        if cap is not None:
            lines.append(
                f"- {what}: at most {cap:,} (a hard budget: larger programs are rejected "
                "without training)"
            )
    if "latency_ms" in objectives.secondary:
        lines.append("- latency: a second objective: at equal accuracy faster is better")
    return "\n".join(lines)
