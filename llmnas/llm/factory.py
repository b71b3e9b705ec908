"""``make_llm(spec)``: build a backend from a ``--llm`` spec string.

Specs (the text after the first colon is passed through, so model names may contain colons,
e.g. ``openai:llama3.1:8b`` for Ollama):

- ``openai:MODEL``: an OpenAI-compatible server (:mod:`llmnas.llm.openai_backend`);
- ``hf:MODEL_OR_PATH``: a local transformers model (:mod:`llmnas.llm.hf_backend`);
- ``replay:FILE.jsonl``: recorded completions (:mod:`llmnas.llm.replay`);
- ``manual:DIR``: prompts and answers as files (:mod:`llmnas.llm.manual`).

Anything else is an :class:`~llmnas.llm.base.LLMConfigError` that lists these forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from llmnas.llm.accounting import Budget, PriceTable
from llmnas.llm.backend import Backend
from llmnas.llm.base import LLMConfigError, Recorder

__all__ = ["SPEC_FORMS", "make_llm"]

SPEC_FORMS = "openai:MODEL, hf:MODEL_OR_PATH, replay:FILE.jsonl or manual:DIR"


def make_llm(
    spec: str,
    *,
    url: str | None = None,
    device: str = "cpu",
    recorder: Recorder | None = None,
    prices: Mapping[str, tuple[float, float]] | PriceTable | None = None,
    max_concurrency: int = 4,
    timeout_s: float = 120.0,
    max_retries: int = 4,
    seed: int = 0,
    budget: Budget | None = None,
    backoff_s: float = 0.5,
) -> Backend:
    """The backend named by ``spec`` (see the module docstring).

    ``url`` is used by ``openai`` only, ``device`` by ``hf`` only; ``timeout_s`` is the
    per-attempt deadline for ``openai`` and the wait for an answer file for ``manual``;
    ``max_retries`` and ``backoff_s`` (first backoff, doubled each retry) apply to ``openai``.
    ``prices`` (dollars per million prompt/completion tokens per model) extends the default
    table; ``budget`` caps tokens/dollars across every backend that shares it.
    """
    kind, sep, target = (spec or "").partition(":")
    kind = kind.strip().lower()
    if not sep or not target.strip():
        raise LLMConfigError(f"bad --llm spec {spec!r}; expected {SPEC_FORMS}")
    table = prices if isinstance(prices, PriceTable) else PriceTable(prices)
    common = {
        "recorder": recorder,
        "budget": budget,
        "prices": table,
        "max_concurrency": max_concurrency,
        "seed": seed,
    }
    if kind == "openai":
        from llmnas.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(
            target,
            url=url,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            **common,
        )
    if kind == "hf":
        from llmnas.llm.hf_backend import HFBackend

        return HFBackend(target, device=device, **common)
    if kind == "replay":
        from llmnas.llm.replay import ReplayBackend

        return ReplayBackend(Path(target), **common)
    if kind == "manual":
        from llmnas.llm.manual import ManualBackend

        return ManualBackend(Path(target), timeout_s=timeout_s, **common)
    raise LLMConfigError(f"unknown LLM backend {kind!r} in {spec!r}; expected {SPEC_FORMS}")
