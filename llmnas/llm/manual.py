"""``manual:DIR``: a person (or another program) answers the prompts through files.

For every completion asked for, the backend writes the prompt to ``DIR`` and waits for the
answer next to it:

- prompt: ``DIR/<seq>-<sha12>.prompt.md``, where ``<seq>`` is a six-digit counter (one more
  than the highest ``<seq>`` already in ``DIR``, so a resumed run never overwrites) and
  ``<sha12>`` is the first 12 hex digits of :func:`~llmnas.llm.base.prompt_sha256`;
- answer: ``DIR/<seq>-<sha12>.response.md`` (same stem); its whole content is the reply.

A call for ``n`` completions writes ``n`` prompt files with consecutive ``<seq>`` and waits for
all of their answers. The prompt file is Markdown: one ``## <role>`` section per message.
The backend polls every ``poll_s`` seconds and accepts an answer once it is non-empty and its
size has not changed between two polls (write it at once, or write elsewhere and rename).
No answer within ``timeout_s`` raises :class:`~llmnas.llm.base.LLMUnavailable`; the prompt
files stay, so the answers can still be given to a resumed run. Tokens are not counted.
"""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path
from typing import Any

from llmnas.llm.backend import Backend
from llmnas.llm.base import Completion, LLMUnavailable, Messages, prompt_sha256

__all__ = ["ManualBackend", "render_prompt_markdown"]

_SEQ = re.compile(r"^(\d+)-[0-9a-f]{12}\.prompt\.md$")


def render_prompt_markdown(messages: Messages) -> str:
    """The prompt file's text: ``## role`` headings followed by each message's content."""
    parts = [f"## {m['role']}\n\n{m['content'].rstrip()}\n" for m in messages]
    return "\n".join(parts)


class ManualBackend(Backend):
    """Writes prompt files and polls for response files (see the module docstring)."""

    kind = "manual"

    def __init__(
        self,
        directory: str | Path,
        *,
        timeout_s: float = 3600.0,
        poll_s: float = 0.2,
        **options: Any,
    ) -> None:
        self.directory = Path(directory)
        super().__init__(str(self.directory), **options)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.timeout_s = float(timeout_s)
        self.poll_s = float(poll_s)
        self._lock = threading.Lock()
        self._next = 1 + max(
            (int(m.group(1)) for p in self.directory.iterdir() if (m := _SEQ.match(p.name))),
            default=0,
        )

    def _write_prompts(self, messages: Messages, n: int) -> list[Path]:
        sha12 = prompt_sha256(messages)[:12]
        text = render_prompt_markdown(messages)
        responses = []
        with self._lock:
            for _ in range(n):
                stem = f"{self._next:06d}-{sha12}"
                self._next += 1
                prompt = self.directory / f"{stem}.prompt.md"
                tmp = prompt.with_suffix(".tmp")
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(prompt)
                responses.append(self.directory / f"{stem}.response.md")
        return responses

    async def _attempt(
        self, messages: Messages, *, n: int, temperature: float, max_tokens: int, seed: int
    ) -> list[Completion]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        waiting = self._write_prompts(messages, n)
        answers: dict[Path, str] = {}
        sizes: dict[Path, int] = {}
        while len(answers) < len(waiting):
            for path in waiting:
                if path in answers or not path.is_file():
                    continue
                size = path.stat().st_size
                if size > 0 and sizes.get(path) == size:
                    answers[path] = path.read_text(encoding="utf-8")
                sizes[path] = size
            if len(answers) == len(waiting):
                break
            if loop.time() - start > self.timeout_s:
                missing = [p.name for p in waiting if p not in answers]
                raise LLMUnavailable(
                    f"manual backend: no answer within {self.timeout_s:g} s; "
                    f"waiting for {', '.join(missing)} in {self.directory}"
                )
            await asyncio.sleep(self.poll_s)
        latency = loop.time() - start
        return [
            Completion(
                text=answers[path].replace("\r\n", "\n"),
                latency_s=latency,
                model="manual",
                finish_reason="stop",
            )
            for path in waiting
        ]
