"""The ask/tell protocol every search strategy implements (LLM, AST, random, regevo, DARTS).

``ask(n)`` returns up to ``n`` proposals (fewer, or none, when the strategy has nothing to
offer right now); ``tell(candidates)`` reports evaluated candidates in commit order, including
failures and rejections. A strategy never evaluates code itself: the loop owns the gate, the
sandbox and the store. Strategies are seeded and hold no global random state, so a run is
resumed by building the strategy with the same seed and telling it the stored candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from llmnas.records import Candidate, Proposal

__all__ = ["Exhausted", "Strategy"]


class Exhausted(Exception):
    """Raised by ``ask`` when a strategy can never propose again (e.g. a replay cassette ran out).

    The loop stops cleanly and prints the message.
    """


@runtime_checkable
class Strategy(Protocol):
    """Ask/tell search strategy."""

    name: str

    def ask(self, n: int) -> list[Proposal]:
        """Propose up to ``n`` candidates."""
        ...

    def tell(self, candidates: Sequence[Candidate]) -> None:
        """Receive evaluated candidates (any status), in commit order."""
        ...
