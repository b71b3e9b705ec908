"""The shared machinery of every backend: validation, concurrency, retries, recording, budget.

A backend subclasses :class:`Backend` and implements one attempt, :meth:`Backend._attempt`.
:meth:`Backend.sample` wraps it:

1. checks the arguments (a bad argument is a framework fault: ``ValueError``);
2. derives a seed from the backend's own seeded stream when the caller passes ``None``;
3. waits for a concurrency slot (one semaphore per event loop, ``max_concurrency`` slots);
4. checks the :class:`~llmnas.llm.accounting.Budget` before every attempt;
5. runs the attempt, records it (success or error) with the recorder, charges the budget;
6. retries attempts that raised :class:`TransientError`, up to ``max_retries`` times, with
   exponential backoff and seeded jitter; then raises :class:`~llmnas.llm.base.LLMUnavailable`.

Any other exception from an attempt is recorded and propagates unchanged (config errors,
exhausted cassettes, bugs).
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from typing import Any, ClassVar

from llmnas.llm.accounting import Budget, PriceTable
from llmnas.llm.base import (
    CallRecord,
    Completion,
    LLMUnavailable,
    Messages,
    Recorder,
    Usage,
    prompt_sha256,
    sample_sync,
)

__all__ = ["Backend", "TransientError", "split_evenly"]


class TransientError(Exception):
    """A fault worth retrying (429, 5xx, timeout, dropped connection, malformed body).

    ``retry_after`` is the server's hint in seconds, when it gave one.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers that differ by at most one and sum to it."""
    base, extra = divmod(max(0, int(total)), parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


class Backend:
    """Base class of the backends; see the module docstring for what ``sample`` does."""

    kind: ClassVar[str] = "base"
    charges_money: ClassVar[bool] = False

    def __init__(
        self,
        model: str,
        *,
        recorder: Recorder | None = None,
        budget: Budget | None = None,
        prices: PriceTable | None = None,
        max_concurrency: int = 4,
        max_retries: int = 0,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        seed: int = 0,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.model = model
        self.recorder = recorder
        self.budget = budget if budget is not None else Budget()
        self.prices = prices if prices is not None else PriceTable()
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.seed = seed
        self._seeds = random.Random(seed)
        self._jitter = random.Random(seed + 1)
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._slots = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind}:{self.model})"

    async def _attempt(
        self, messages: Messages, *, n: int, temperature: float, max_tokens: int, seed: int
    ) -> list[Completion]:
        """One try at ``n`` completions. Raise :class:`TransientError` to ask for a retry."""
        raise NotImplementedError

    def _slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        slot = self._slots.get(loop)
        if slot is None:
            slot = self._slots[loop] = asyncio.Semaphore(self.max_concurrency)
        return slot

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry ``attempt + 1``: exponential, jittered, capped."""
        delay = self.backoff_s * (2**attempt) * (0.5 + 0.5 * self._jitter.random())
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.max_backoff_s)

    async def sample(
        self,
        messages: Messages,
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_tokens: int = 1024,
        seed: int | None = None,
    ) -> list[Completion]:
        """``n`` completions of the chat prompt ``messages`` (see :class:`~llmnas.llm.LLM`)."""
        messages = _checked_messages(messages)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not 0.0 <= temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {temperature}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if seed is None:
            seed = self._seeds.randrange(2**31)
        params = {"n": n, "temperature": temperature, "max_tokens": max_tokens, "seed": seed}
        sha = prompt_sha256(messages)
        async with self._slot():
            for attempt in range(self.max_retries + 1):
                self.budget.check()
                start = time.perf_counter()
                try:
                    completions = await self._attempt(
                        messages, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed
                    )
                except TransientError as exc:
                    self._record(messages, sha, params, [], start, _describe(exc), attempt)
                    if attempt == self.max_retries:
                        raise LLMUnavailable(
                            f"{self.kind}:{self.model}: giving up after {attempt + 1} "
                            f"attempt(s); last error: {_describe(exc)}"
                        ) from None
                    await asyncio.sleep(self.backoff(attempt, exc.retry_after))
                    continue
                except BaseException as exc:
                    self._record(messages, sha, params, [], start, _describe(exc), attempt)
                    raise
                self._record(messages, sha, params, completions, start, None, attempt)
                return completions
        raise AssertionError("unreachable")  # pragma: no cover

    def sample_sync(
        self,
        messages: Messages,
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_tokens: int = 1024,
        seed: int | None = None,
    ) -> list[Completion]:
        """Synchronous :meth:`sample` (runs on the shared background event loop)."""
        return sample_sync(
            self, messages, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed
        )

    def _record(
        self,
        messages: Messages,
        sha: str,
        params: dict[str, Any],
        completions: list[Completion],
        start: float,
        error: str | None,
        attempt: int,
    ) -> None:
        prompt_tokens = sum(c.prompt_tokens for c in completions)
        completion_tokens = sum(c.completion_tokens for c in completions)
        cost = 0.0
        if completions and self.charges_money:
            cost = self.prices.cost(self.model, prompt_tokens, completion_tokens)
        usage = Usage(
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost
        )
        record = CallRecord(
            backend=self.kind,
            model=self.model,
            messages=messages,
            replies=[c.text for c in completions],
            finish_reasons=[c.finish_reason for c in completions],
            parameters=dict(params),
            usage=usage,
            latency_s=time.perf_counter() - start,
            error=error,
            attempt=attempt,
            prompt_sha256=sha,
        )
        if error is None:
            self.budget.charge(usage.total_tokens, cost)
        if self.recorder is not None:
            self.recorder.record(record)


def _checked_messages(messages: Messages) -> Messages:
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise ValueError(f"message {i} must be a dict with a string 'content'")
        if message.get("role") not in {"system", "user", "assistant"}:
            raise ValueError(f"message {i}: role must be system, user or assistant")
        out.append(dict(message))
    return out
