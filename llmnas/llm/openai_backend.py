"""``openai:MODEL``: any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama, ...).

Uses the official ``openai`` ``AsyncOpenAI`` client with its own retries disabled; the retry
policy is ours (see :mod:`llmnas.llm.backend`):

- retried with backoff: 429, 408, 409, 5xx, timeouts (``timeout_s`` per attempt), dropped
  connections, and malformed bodies (not JSON, no ``choices``, a choice without a message);
- raised at once as :class:`~llmnas.llm.base.LLMConfigError` (the run stops): 401/403 (bad
  key), 404 (unknown model or wrong base URL);
- other 4xx raise :class:`~llmnas.llm.base.LLMError` with the server's message, except one
  case: a server that rejects ``max_tokens`` and asks for ``max_completion_tokens`` (newer
  OpenAI models) is retried once with that field, and the backend remembers it.

``n`` is sent as the ``n`` field; servers that ignore it (Ollama, llama.cpp) return fewer
choices, and the backend tops up with more requests (``seed + k`` for the k-th) until it has
``n``. The base URL comes from ``url``, else ``OPENAI_BASE_URL``, else OpenAI's. The key comes
from ``OPENAI_API_KEY``; against a custom base URL a placeholder key is used when none is set.
Streaming, tools and logprobs are not used.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from typing import Any

import openai

from llmnas.llm.backend import Backend, TransientError, split_evenly
from llmnas.llm.base import Completion, LLMConfigError, LLMError, Messages

__all__ = ["PLACEHOLDER_KEY", "OpenAIBackend"]

PLACEHOLDER_KEY = "sk-no-key-required"
_RETRIED_STATUS = {408, 409, 429}


class OpenAIBackend(Backend):
    """Chat completions through ``openai.AsyncOpenAI`` (see the module docstring)."""

    kind = "openai"
    charges_money = True

    def __init__(
        self,
        model: str,
        *,
        url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        **options: Any,
    ) -> None:
        if not model:
            raise LLMConfigError("openai backend needs a model name: openai:MODEL")
        super().__init__(model, max_retries=max_retries, **options)
        self.base_url = url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if self.base_url is None:
                raise LLMConfigError(
                    "OPENAI_API_KEY is not set (needed for api.openai.com); "
                    "set it, or point OPENAI_BASE_URL / --llm-url at a local server"
                )
            key = PLACEHOLDER_KEY
        self._api_key = key
        self.timeout_s = float(timeout_s)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]
        self._clients = weakref.WeakKeyDictionary()
        self._token_field = "max_tokens"

    def _client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=self.timeout_s,
                max_retries=0,
            )
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the HTTP client of the running event loop (others close with their loop)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    async def _attempt(
        self, messages: Messages, *, n: int, temperature: float, max_tokens: int, seed: int
    ) -> list[Completion]:
        out: list[Completion] = []
        request = 0
        while len(out) < n:
            if request >= n:
                raise TransientError(f"server returned {len(out)} of {n} choices")
            got = await self._request(
                messages, n - len(out), temperature, max_tokens, seed + request
            )
            out.extend(got)
            request += 1
        return out[:n]

    async def _request(
        self, messages: Messages, n: int, temperature: float, max_tokens: int, seed: int
    ) -> list[Completion]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(2):  # the second pass only after switching the max-tokens field
            fields = {
                "model": self.model,
                "messages": messages,
                "n": n,
                "temperature": temperature,
                "seed": seed,
                self._token_field: max_tokens,
            }
            try:
                response = await asyncio.wait_for(
                    self._client().chat.completions.create(**fields),
                    timeout=self.timeout_s + 1.0,
                )
            except TimeoutError:
                raise TransientError(f"no reply within {self.timeout_s:g} s") from None
            except openai.APIError as exc:
                if self._switch_token_field(exc):
                    continue
                raise self._translate(exc) from None
            except ValueError as exc:  # body that is not JSON
                raise TransientError(f"malformed response body ({exc})") from None
            return self._completions(response, loop.time() - start)
        raise LLMError(f"openai:{self.model}: the server rejected both max-token fields")

    def _switch_token_field(self, exc: openai.APIError) -> bool:
        wants_new = "max_completion_tokens" in str(exc)
        if getattr(exc, "status_code", None) == 400 and wants_new:
            if self._token_field == "max_tokens":
                self._token_field = "max_completion_tokens"
                return True
        return False

    def _translate(self, exc: openai.APIError) -> Exception:
        where = self.base_url or "api.openai.com"
        if isinstance(exc, openai.APITimeoutError):
            return TransientError(f"no reply within {self.timeout_s:g} s")
        if isinstance(exc, openai.APIConnectionError):
            return TransientError(f"connection failed: {exc}")
        if isinstance(exc, openai.APIResponseValidationError):
            return TransientError(f"malformed response body: {exc}")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            message = _server_message(exc)
            if status in (401, 403):
                return LLMConfigError(
                    f"openai:{self.model}: the server at {where} refused the API key "
                    f"(HTTP {status}: {message}); check OPENAI_API_KEY"
                )
            if status == 404:
                return LLMConfigError(
                    f"openai:{self.model}: unknown model or wrong base URL {where} "
                    f"(HTTP 404: {message})"
                )
            if status in _RETRIED_STATUS or status >= 500:
                return TransientError(f"HTTP {status}: {message}", _retry_after(exc))
            return LLMError(f"openai:{self.model}: HTTP {status}: {message}")
        return TransientError(f"{type(exc).__name__}: {exc}")

    def _completions(self, response: Any, latency: float) -> list[Completion]:
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise TransientError(f"malformed response body: no choices ({str(response)[:120]!r})")
        texts, reasons = [], []
        for choice in choices:
            message = getattr(choice, "message", None)
            if message is None:
                raise TransientError("malformed response body: a choice has no message")
            content = getattr(message, "content", None)
            if content is None:
                content = getattr(message, "refusal", None) or ""
            if not isinstance(content, str):
                raise TransientError("malformed response body: message content is not text")
            texts.append(content)
            reasons.append(getattr(choice, "finish_reason", None))
        usage = getattr(response, "usage", None)
        prompt = split_evenly(getattr(usage, "prompt_tokens", 0) or 0, len(texts))
        completion = split_evenly(getattr(usage, "completion_tokens", 0) or 0, len(texts))
        model = getattr(response, "model", None) or self.model
        return [
            Completion(
                text=text,
                prompt_tokens=p,
                completion_tokens=c,
                latency_s=latency,
                model=str(model),
                finish_reason=reason,
            )
            for text, reason, p, c in zip(texts, reasons, prompt, completion, strict=True)
        ]


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return " ".join(str(inner["message"]).split())[:300]
        if isinstance(inner, str):
            return inner[:300]
    return " ".join(str(exc.message).split())[:300]


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
