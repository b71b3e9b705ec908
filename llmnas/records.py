"""Typed records that flow through the loop: proposals, failures, evaluation results, candidates.

Data flows one way: a strategy emits :class:`Proposal` objects, the gate and the sandbox turn
each into an :class:`EvalResult`, the store assigns an id and keeps a :class:`Candidate`, and the
strategy is told the candidates. Everything here is plain data (pydantic models), JSON-safe.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "MESSAGE_LIMIT",
    "Candidate",
    "EvalResult",
    "Failure",
    "FailureKind",
    "Proposal",
    "Status",
]

MESSAGE_LIMIT = 600
"""Failure messages are cut to this many characters (they go into prompts and the store)."""


class Status(StrEnum):
    """Outcome of one evaluation."""

    OK = "ok"
    FAILED = "failed"
    REJECTED = "rejected"


class FailureKind(StrEnum):
    """Why a candidate did not produce a score. Candidate faults are data, never exceptions."""

    SYNTAX = "syntax"
    CONTRACT = "contract"
    IMPORT = "import"
    SHAPE = "shape"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    NONFINITE = "nonfinite"
    CRASH = "crash"
    REJECTED = "rejected"


class Failure(BaseModel):
    """A candidate fault: its kind, a short bounded message and the stage it happened in."""

    model_config = ConfigDict(frozen=True)

    kind: FailureKind
    message: str
    stage: str | None = None

    @field_validator("message")
    @classmethod
    def _bound(cls, value: str) -> str:
        value = value.strip()
        if len(value) > MESSAGE_LIMIT:
            value = value[: MESSAGE_LIMIT - 15] + " ...[truncated]"
        return value


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class EvalResult(BaseModel):
    """What the evaluator says about one candidate.

    ``metrics`` holds host-computed numbers (``val_accuracy`` is a fraction in [0, 1]) and the
    child's reports (``params``, ``flops``, ``train_seconds``). ``proxies`` maps proxy names to
    a float or ``None`` (undefined or non-finite; the reason is in ``proxy_notes``).
    """

    status: Status
    failure: Failure | None = None
    metrics: dict[str, float | int] = Field(default_factory=dict)
    proxies: dict[str, float | None] = Field(default_factory=dict)
    proxy_notes: dict[str, str] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)

    @field_validator("proxies")
    @classmethod
    def _finite_proxies(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        return {k: _finite_or_none(v) for k, v in value.items()}

    @classmethod
    def failed(
        cls,
        kind: FailureKind,
        message: str,
        *,
        stage: str | None = None,
        metrics: dict[str, float | int] | None = None,
        timings: dict[str, float] | None = None,
    ) -> EvalResult:
        status = Status.REJECTED if kind is FailureKind.REJECTED else Status.FAILED
        return cls(
            status=status,
            failure=Failure(kind=kind, message=message, stage=stage),
            metrics=metrics or {},
            timings=timings or {},
        )

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def contract_dict(self, file: str) -> dict[str, Any]:
        """The ``llmnas evaluate --json`` object for one file (see DESIGN, command line)."""
        return {
            "file": file,
            "status": self.status.value,
            "failure": None
            if self.failure is None
            else {"kind": self.failure.kind.value, "message": self.failure.message},
            "metrics": dict(self.metrics),
            "proxies": dict(self.proxies),
        }


class Proposal(BaseModel):
    """A candidate program proposed by a strategy, before any check.

    ``meta`` carries operator details: the prompt instruction, LLM call ids, a genotype, etc.
    """

    source: str
    operator: str
    parent_ids: list[int] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)


class Candidate(BaseModel):
    """A proposal that went through the gate and the evaluator and was committed to the store."""

    id: int
    generation: int = 0
    source: str
    operator: str
    parent_ids: list[int] = Field(default_factory=list)
    hash: str = ""
    result: EvalResult
    descriptors: dict[str, float] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    created_at: float = 0.0

    @property
    def status(self) -> Status:
        return self.result.status

    @property
    def val_accuracy(self) -> float | None:
        value = self.result.metrics.get("val_accuracy")
        return None if value is None else float(value)
