"""``ast.parse`` made safe to call from several threads.

CPython 3.11 keeps the AST constructor's recursion counter in shared module state, so two
threads parsing at once can fail with ``SystemError: AST constructor recursion depth mismatch``
(python/cpython#106905). The loop parses on its main thread, its proposer thread and its
evaluation threads, so every parse in llmnas goes through :func:`parse_source`, which
serialises them. Parsing is fast; the lock costs nothing measurable.
"""

from __future__ import annotations

import ast
import threading
from typing import Any

__all__ = ["parse_source"]

_LOCK = threading.Lock()


def parse_source(source: str, *args: Any, **kwargs: Any) -> ast.Module:
    """:func:`ast.parse` under a process-wide lock."""
    with _LOCK:
        return ast.parse(source, *args, **kwargs)
