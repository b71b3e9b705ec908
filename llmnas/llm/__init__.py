"""The LLM layer: one interface, four backends, recording and accounting.

Build a backend with :func:`make_llm` (``openai:MODEL``, ``hf:MODEL_OR_PATH``,
``replay:FILE.jsonl``, ``manual:DIR``) and call ``await llm.sample(messages, n=...)`` or
``llm.sample_sync(...)``. Every call is handed to the ``recorder`` as a :class:`CallRecord`;
a shared :class:`Budget` stops the run cleanly (:class:`BudgetExceeded`) when spent, and a
replay cassette that runs dry raises :class:`CassetteExhausted`; both are
:class:`~llmnas.strategies.base.Exhausted`. Backend modules load lazily (transformers and
openai are imported only by the backend that needs them).
"""

from __future__ import annotations

from llmnas.llm.accounting import DEFAULT_PRICES, Budget, BudgetExceeded, PriceTable
from llmnas.llm.backend import Backend
from llmnas.llm.base import (
    LLM,
    CallRecord,
    Completion,
    LLMConfigError,
    LLMError,
    LLMUnavailable,
    Messages,
    Recorder,
    Usage,
    prompt_sha256,
    sample_sync,
)
from llmnas.llm.factory import make_llm
from llmnas.llm.recording import (
    JsonlRecorder,
    MemoryRecorder,
    TeeRecorder,
    export_cassette,
    load_records,
)
from llmnas.llm.replay import CassetteExhausted

__all__ = [
    "DEFAULT_PRICES",
    "LLM",
    "Backend",
    "Budget",
    "BudgetExceeded",
    "CallRecord",
    "CassetteExhausted",
    "Completion",
    "JsonlRecorder",
    "LLMConfigError",
    "LLMError",
    "LLMUnavailable",
    "MemoryRecorder",
    "Messages",
    "PriceTable",
    "Recorder",
    "TeeRecorder",
    "Usage",
    "export_cassette",
    "load_records",
    "make_llm",
    "prompt_sha256",
    "sample_sync",
]
