"""One owner per candidate: a proposal goes in, a commit-ready result comes out.

:class:`CandidatePipeline` holds everything that happens to a candidate between the strategy
and the store, so the loop only schedules:

1. :meth:`~CandidatePipeline.admit` (main thread): a reply that held no program keeps its
   failure; otherwise the static gate runs **once** (:func:`llmnas.gate.check`) and the
   normalised hash is deduplicated against the store and the candidates in flight. Either the
   candidate is ready to evaluate, or it comes back with its final result (failed, rejected
   duplicate) and is committed without running anything.
2. :meth:`~CandidatePipeline.evaluate` (evaluation threads): the cascade's stages, or one
   evaluation; the gated source goes to the sandbox (or to the table of a tabular task) as it
   is, never gated again.
3. :meth:`~CandidatePipeline.observe` (main thread, at commit): the cascade's history grows, in
   commit order, so its decisions are deterministic and a resumed run rebuilds them by
   observing the stored results again.

The pipeline owns its evaluation settings and cascade; candidate faults are results, our own
bugs raise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmnas import gate
from llmnas.records import EvalResult, Failure, FailureKind, Proposal, Status

__all__ = ["Admitted", "CandidatePipeline"]


@dataclass(frozen=True)
class Admitted:
    """A proposal after the gate: its normalised source and hash, and its result when it is
    already decided (``None``: evaluate it)."""

    source: str
    hash: str
    result: EvalResult | None = None


class CandidatePipeline:
    """Gate once, deduplicate, evaluate (cascade or single), observe; see the module docstring.

    ``find_hash(hash)`` returns a stored candidate with that hash, or ``None``.
    """

    def __init__(
        self,
        *,
        evaluator: Any,
        settings: Any,
        find_hash: Callable[[str], Any],
        cascade: Any = None,
    ) -> None:
        self.evaluator = evaluator
        self.settings = settings
        self.cascade = cascade
        self._find_hash = find_hash
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        return self.evaluator.device

    def admit(self, proposal: Proposal, in_flight: set[str]) -> Admitted:
        """Main thread: the gated candidate, decided already or ready to evaluate."""
        failure = proposal.meta.get("failure")
        if failure:  # the reply held no program: record the reply as it is
            decided = EvalResult(status=Status.FAILED, failure=Failure.model_validate(failure))
            return Admitted(proposal.source, gate.check(proposal.source).hash, decided)
        checked = gate.check(proposal.source)
        if not checked.ok:
            return Admitted(checked.source, checked.hash,
                            EvalResult(status=Status.FAILED, failure=checked.failure))  # fmt: skip
        twin = self._find_hash(checked.hash)
        if twin is not None or checked.hash in in_flight:
            what = f"candidate #{twin.id}" if twin is not None else "a candidate being evaluated"
            rejected = EvalResult.failed(FailureKind.REJECTED, f"duplicate of {what}",
                                         stage="dedup")  # fmt: skip
            return Admitted(checked.source, checked.hash, rejected)
        return Admitted(checked.source, checked.hash)

    def evaluate(self, source: str) -> EvalResult:
        """Evaluation thread: the cascade's stages, or one evaluation, of a gated source."""
        if self.cascade is None:
            return self.evaluator.evaluate(source, self.settings, gated=True)
        return self.cascade.run(self.evaluator, source, self.settings, self._lock)

    def observe(self, result: EvalResult) -> None:
        """Main thread, at commit (and for every stored result on resume)."""
        if self.cascade is not None:
            with self._lock:
                self.cascade.observe(result)

    def close(self) -> None:
        """Stop the evaluation workers (in-flight evaluations return at once)."""
        self.evaluator.close()
