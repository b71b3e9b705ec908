"""Token and cost accounting: a price table and a budget the backends charge.

Prices are dollars per million tokens, ``(prompt, completion)``, per model name. A model is
looked up by exact name, then by the longest table key that is a prefix of it (so dated names
such as ``gpt-4o-mini-2024-07-18`` find ``gpt-4o-mini``), after dropping a ``provider/``
prefix. A model not in the table costs 0; the table logs that once per model name.

:data:`DEFAULT_PRICES` is deliberately small: a few OpenAI chat models at their list prices
when this table was written (check the provider's page; pass ``prices=`` to override or
extend). Local backends (``hf``, ``replay``, ``manual``) cost nothing but still count tokens.

A :class:`Budget` caps total tokens and/or dollars. Backends call :meth:`Budget.check` before
each request and :meth:`Budget.charge` after it; a request in flight is never cut, so the caps
can be overrun by the requests running concurrently when the limit is crossed (at most
``max_concurrency`` of them). The next call raises :class:`BudgetExceeded`, an
:class:`~llmnas.strategies.base.Exhausted`, so the loop stops cleanly with its message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from llmnas.strategies.base import Exhausted

__all__ = ["DEFAULT_PRICES", "Budget", "BudgetExceeded", "PriceTable"]

log = logging.getLogger("llmnas.llm")

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}
"""Dollars per million ``(prompt, completion)`` tokens (OpenAI list prices, 2025)."""


class BudgetExceeded(Exhausted):
    """The LLM token or cost budget is spent; the loop stops cleanly."""


class PriceTable:
    """Per-model prices; ``prices`` entries replace or extend :data:`DEFAULT_PRICES`."""

    def __init__(
        self,
        prices: Mapping[str, tuple[float, float]] | None = None,
        *,
        include_defaults: bool = True,
    ) -> None:
        table = dict(DEFAULT_PRICES) if include_defaults else {}
        for model, pair in (prices or {}).items():
            prompt, completion = pair
            if prompt < 0 or completion < 0:
                raise ValueError(f"price for {model!r} must be non-negative, got {pair}")
            table[model] = (float(prompt), float(completion))
        self.prices = table
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def lookup(self, model: str) -> tuple[float, float] | None:
        """The ``(prompt, completion)`` price of ``model``, or ``None`` when unknown."""
        name = model.rsplit("/", 1)[-1]
        if name in self.prices:
            return self.prices[name]
        matches = [key for key in self.prices if name.startswith(key)]
        return self.prices[max(matches, key=len)] if matches else None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars for one call; 0 for unknown models (logged once per model)."""
        price = self.lookup(model)
        if price is None:
            with self._lock:
                if model not in self._warned:
                    self._warned.add(model)
                    log.warning("no price known for model %r: its calls are counted as $0", model)
            return 0.0
        return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000


class Budget:
    """Caps on total LLM tokens and dollars (``None``: no cap). Thread-safe."""

    def __init__(self, max_tokens: int | None = None, max_cost: float | None = None) -> None:
        if max_tokens is not None and max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        if max_cost is not None and max_cost < 0:
            raise ValueError(f"max_cost must be >= 0, got {max_cost}")
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self.tokens_used = 0
        self.cost_used = 0.0
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self._reason() is not None

    def _reason(self) -> str | None:
        if self.max_tokens is not None and self.tokens_used >= self.max_tokens:
            return f"LLM token budget spent: {self.tokens_used} of {self.max_tokens} tokens used"
        if self.max_cost is not None and self.cost_used >= self.max_cost:
            return f"LLM cost budget spent: ${self.cost_used:.4f} of ${self.max_cost:.4f} used"
        return None

    def check(self) -> None:
        """Raise :class:`BudgetExceeded` if a cap is reached."""
        with self._lock:
            reason = self._reason()
        if reason is not None:
            raise BudgetExceeded(reason)

    def charge(self, tokens: int, cost: float) -> None:
        """Add one call's usage (never raises: the next :meth:`check` does)."""
        with self._lock:
            self.tokens_used += int(tokens)
            self.cost_used += float(cost)
            self.calls += 1

    def __repr__(self) -> str:
        return (
            f"Budget(tokens {self.tokens_used}/{self.max_tokens}, "
            f"cost ${self.cost_used:.4f}/{self.max_cost}, calls {self.calls})"
        )
