"""``replay:FILE.jsonl``: serve recorded completions instead of calling a model.

Each non-blank line of the cassette is a JSON object ``{"response": str}`` with an optional
``"prompt_sha256"`` (see :func:`~llmnas.llm.base.prompt_sha256`) and optional integer
``"prompt_tokens"`` / ``"completion_tokens"`` (reported as the completion's usage; 0 when
absent). :func:`~llmnas.llm.recording.export_cassette` writes this format from a run's records.

Which line answers a prompt (each line is served at most once):

1. the earliest unserved line whose ``prompt_sha256`` equals the prompt's hash;
2. else the earliest unserved line without a hash;
3. else the earliest unserved line of any kind (a replay whose prompts drifted still runs).

A call for ``n`` completions takes ``n`` lines by this rule. When too few lines are left the
call raises :class:`CassetteExhausted` (an :class:`~llmnas.strategies.base.Exhausted`: the loop
stops cleanly with its message) and serves nothing. Sampling parameters are ignored. The file
is read once, when the backend is built; a malformed line is an
:class:`~llmnas.llm.base.LLMConfigError` naming the line.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmnas.llm.backend import Backend
from llmnas.llm.base import Completion, LLMConfigError, Messages, prompt_sha256
from llmnas.strategies.base import Exhausted

__all__ = ["CassetteExhausted", "ReplayBackend", "read_cassette"]


class CassetteExhausted(Exhausted):
    """Every line of the replay cassette has been served."""


@dataclass(frozen=True)
class _Entry:
    response: str
    prompt_sha256: str | None
    prompt_tokens: int
    completion_tokens: int


def read_cassette(path: str | Path) -> list[dict[str, Any]]:
    """The cassette's lines as dicts, validated (raises :class:`LLMConfigError`)."""
    path = Path(path)
    if not path.is_file():
        raise LLMConfigError(f"replay cassette not found: {path} (expected a .jsonl file)")
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LLMConfigError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("response"), str):
            raise LLMConfigError(f'{path}:{number}: expected {{"response": str, ...}}')
        sha = entry.get("prompt_sha256")
        if sha is not None and not isinstance(sha, str):
            raise LLMConfigError(f"{path}:{number}: prompt_sha256 must be a string")
        for key in ("prompt_tokens", "completion_tokens"):
            if not isinstance(entry.get(key, 0), int):
                raise LLMConfigError(f"{path}:{number}: {key} must be an integer")
        entries.append(entry)
    return entries


class ReplayBackend(Backend):
    """Serves the lines of a cassette (see the module docstring for the matching rule)."""

    kind = "replay"

    def __init__(self, path: str | Path, **options: Any) -> None:
        self.path = Path(path)
        super().__init__(str(self.path), **options)
        self._entries = [
            _Entry(
                response=e["response"],
                prompt_sha256=e.get("prompt_sha256"),
                prompt_tokens=e.get("prompt_tokens", 0),
                completion_tokens=e.get("completion_tokens", 0),
            )
            for e in read_cassette(self.path)
        ]
        self._served = [False] * len(self._entries)
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        """Lines not served yet."""
        with self._lock:
            return self._served.count(False)

    def _pick(self, sha: str, taken: set[int]) -> int | None:
        free = [i for i, done in enumerate(self._served) if not done and i not in taken]
        for wanted in (sha, None):
            for i in free:
                if self._entries[i].prompt_sha256 == wanted:
                    return i
        return free[0] if free else None

    async def _attempt(
        self, messages: Messages, *, n: int, temperature: float, max_tokens: int, seed: int
    ) -> list[Completion]:
        sha = prompt_sha256(messages)
        with self._lock:
            chosen: list[int] = []
            for _ in range(n):
                index = self._pick(sha, set(chosen))
                if index is None:
                    used = len(self._entries)
                    raise CassetteExhausted(
                        f"replay cassette {self.path} is exhausted: all {used} recorded "
                        f"completions were served (a call asked for {n} more)"
                    )
                chosen.append(index)
            for index in chosen:
                self._served[index] = True
        return [
            Completion(
                text=self._entries[i].response,
                prompt_tokens=self._entries[i].prompt_tokens,
                completion_tokens=self._entries[i].completion_tokens,
                latency_s=0.0,
                model=self.model,
                finish_reason="stop",
            )
            for i in chosen
        ]
