"""llmnas: LLM-driven evolutionary neural architecture search over PyTorch source code.

The public API is listed in ``__all__``; attributes load lazily so that the sandbox worker,
which imports :mod:`llmnas.sandbox`, does not pull in the rest of the package.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Candidate": "llmnas.records",
    "EvalResult": "llmnas.records",
    "Failure": "llmnas.records",
    "FailureKind": "llmnas.records",
    "Proposal": "llmnas.records",
    "Status": "llmnas.records",
    "EvalSettings": "llmnas.evaluator",
    "Evaluator": "llmnas.evaluator",
    "Strategy": "llmnas.strategies.base",
    "Task": "llmnas.tasks",
    "get_task": "llmnas.tasks",
    "check": "llmnas.gate",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llmnas' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
