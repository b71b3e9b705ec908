"""The LLM interface: completions, the ``LLM`` protocol, call records and the recorder protocol.

Everything a caller needs to talk to a language model, independent of the backend:

- :class:`Completion`: one sampled reply with its usage and timing;
- :class:`LLM`: ``await llm.sample(messages, n=..., temperature=..., max_tokens=..., seed=...)``
  returns ``n`` completions; :func:`sample_sync` does the same from synchronous code;
- :class:`CallRecord` and :class:`Recorder`: every backend call, successful or not, is
  described by one record and handed to a recorder (the run store implements ``Recorder``);
- :func:`prompt_sha256`: the stable hash of a prompt, used by replay cassettes;
- the errors: :class:`LLMError` (a framework-level failure: the run should stop),
  :class:`LLMConfigError` (bad key, unknown model, bad spec: one clear line) and
  :class:`LLMUnavailable` (transient faults persisted past the retry limit, or a manual
  answer never came).

Messages are OpenAI-style chat messages: ``{"role": "system" | "user" | "assistant",
"content": str}``. Tool calls, images and streaming are not handled.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "LLM",
    "CallRecord",
    "Completion",
    "LLMConfigError",
    "LLMError",
    "LLMUnavailable",
    "Messages",
    "Recorder",
    "Usage",
    "estimate_tokens",
    "prompt_sha256",
    "run_sync",
    "sample_sync",
]

Messages = list[dict[str, Any]]
"""A chat prompt: a list of ``{"role": ..., "content": ...}`` dictionaries."""

T = TypeVar("T")


class LLMError(Exception):
    """A backend failure the caller cannot fix by retrying the same call: the run stops."""


class LLMConfigError(LLMError):
    """The backend is misconfigured (bad key, unknown model, missing files, bad spec).

    The message is one line that names what was expected.
    """


class LLMUnavailable(LLMError):
    """Transient faults (429, 5xx, timeouts, bad bodies) persisted past the retry limit."""


class Completion(BaseModel):
    """One sampled reply.

    When a request returns several completions, its token counts are split evenly over them
    (remainders go to the first ones), so summing over completions gives the request's exact
    usage. ``latency_s`` is the wall time of the request that produced the completion.
    """

    model_config = ConfigDict(frozen=True)

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    model: str = ""
    finish_reason: str | None = None


class Usage(BaseModel):
    """Tokens and dollars of one backend call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class CallRecord(BaseModel):
    """One backend call (one HTTP request, one local generation, one cassette read...).

    ``error`` is ``None`` on success; otherwise it is a one-line description and ``replies``
    is empty. A call that was retried produces one record per attempt (``attempt`` counts
    from 0). ``parameters`` holds the sampling parameters as sent (``n``, ``temperature``,
    ``max_tokens``, ``seed``).
    """

    backend: str
    model: str
    messages: Messages
    replies: list[str] = Field(default_factory=list)
    finish_reasons: list[str | None] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    error: str | None = None
    attempt: int = 0
    prompt_sha256: str = ""
    timestamp: float = Field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class Recorder(Protocol):
    """Receives every backend call, in the order the calls end.

    Implementations should be cheap; an exception raised here is a framework fault and
    propagates to the caller of ``sample``.
    """

    def record(self, call: CallRecord) -> None: ...


@runtime_checkable
class LLM(Protocol):
    """A language model that samples ``n`` chat completions for one prompt.

    ``seed=None`` lets the backend derive a seed from its own seeded stream; an integer makes
    the call reproducible where the backend allows it (hf, replay, manual: always; OpenAI-
    compatible servers: best effort, via the ``seed`` request field).
    """

    model: str

    async def sample(
        self,
        messages: Messages,
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_tokens: int = 1024,
        seed: int | None = None,
    ) -> list[Completion]: ...


def prompt_sha256(messages: Messages) -> str:
    """sha256 hex digest of the canonical JSON of ``messages``.

    Canonical JSON: ``json.dumps(messages, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` encoded as UTF-8. Every key of every message counts (normally just
    ``role`` and ``content``); whitespace inside contents counts; key order does not.
    """
    canonical = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def estimate_tokens(content: str | Messages | list[Any]) -> int:
    """A rough token count without a tokenizer: characters / 4, rounded up, of a text, a
    messages list or a list of replies (strings or ``{"text": ...}`` dicts)."""
    if isinstance(content, str):
        return -(-len(content) // 4)
    total = 0
    for item in content:
        text = item if isinstance(item, str) else item.get("content", item.get("text", ""))
        total += -(-len(text or "") // 4)
    return total


class _LoopThread:
    """One daemon thread running an event loop, shared by every synchronous caller.

    Backends keep per-loop state (HTTP clients, semaphores); running all synchronous calls on
    one long-lived loop lets them reuse connections instead of creating a loop per call.
    """

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="llmnas-llm-loop", daemon=True
                )
                thread.start()
                cls._loop = loop
            return cls._loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the shared background loop and wait for its result.

    Works from plain synchronous code and from inside another running event loop (the
    caller's thread blocks until the result is ready).
    """
    loop = _LoopThread.get()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("sample_sync called from a coroutine on the LLM loop; await sample()")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


def sample_sync(
    llm: LLM,
    messages: Messages,
    *,
    n: int = 1,
    temperature: float = 1.0,
    max_tokens: int = 1024,
    seed: int | None = None,
) -> list[Completion]:
    """Synchronous :meth:`LLM.sample` (runs on a shared background event loop)."""
    return run_sync(
        llm.sample(messages, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed)
    )
