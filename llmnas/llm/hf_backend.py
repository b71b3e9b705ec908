"""``hf:MODEL_OR_PATH``: a local transformers causal language model.

The model and tokenizer are loaded once, when the backend is built, from local files only (a
folder, or a model already in the Hugging Face cache): nothing is ever downloaded. A missing
model is an :class:`~llmnas.llm.base.LLMConfigError`.

The prompt is the tokenizer's chat template (with the generation prompt) when it has one;
otherwise a plain concatenation, one ``Role: content`` paragraph per message followed by
``Assistant:``. The ``n`` samples of a call share the prompt, so they are drawn as one batch
of ``n`` rows without padding, by a small sampling loop over the model's key/value cache:
softmax at ``temperature`` (greedy at 0), drawn with a ``torch.Generator`` seeded by the
call's seed, so the same seed gives the same replies on the same device and no global random
state is touched. A row stops at an end-of-sequence token (``finish_reason="stop"``) or after
``max_tokens`` new tokens (``"length"``); ``max_tokens`` is cut to what the model's context
allows. Generation runs in a worker thread, one call at a time. Top-p/top-k, stop strings and
streaming are not handled.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from llmnas.llm.backend import Backend, split_evenly
from llmnas.llm.base import Completion, LLMConfigError, LLMError, Messages

__all__ = ["HFBackend", "plain_prompt"]


def plain_prompt(messages: Messages) -> str:
    """The prompt used when the tokenizer has no chat template."""
    parts = [f"{m['role'].capitalize()}: {m['content'].strip()}" for m in messages]
    return "\n\n".join(parts) + "\n\nAssistant:"


class HFBackend(Backend):
    """A local causal LM sampled in batches (see the module docstring)."""

    kind = "hf"

    def __init__(self, model: str, *, device: str = "cpu", **options: Any) -> None:
        super().__init__(model, **options)
        self.device = device
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise LLMConfigError(
                f"hf backend needs transformers: pip install 'llmnas[hf]' ({exc})"
            ) from None
        self._torch = torch
        where = str(Path(model).expanduser()) if Path(model).expanduser().exists() else model
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
            dtype = torch.float32 if device == "cpu" else "auto"
            self.lm = AutoModelForCausalLM.from_pretrained(
                where, local_files_only=True, dtype=dtype
            )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LLMConfigError(
                f"hf:{model}: no local model found ({first}); pass a folder with config, "
                "weights and tokenizer, or download the model into the Hugging Face cache first"
            ) from None
        try:
            self.lm.to(device)
        except (RuntimeError, AssertionError) as exc:
            raise LLMConfigError(f"hf:{model}: cannot use device {device!r} ({exc})") from None
        self.lm.eval()
        self._eos = _eos_ids(self.tokenizer, self.lm)
        config = self.lm.config
        self._context = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )
        self._gen_lock = threading.Lock()

    def prompt_ids(self, messages: Messages) -> list[int]:
        """Token ids of the prompt (chat template when available, else :func:`plain_prompt`)."""
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(self.tokenizer(plain_prompt(messages))["input_ids"])

    async def _attempt(
        self, messages: Messages, *, n: int, temperature: float, max_tokens: int, seed: int
    ) -> list[Completion]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        texts, counts, reasons, prompt_len = await asyncio.to_thread(
            self._generate, messages, n, temperature, max_tokens, seed
        )
        latency = loop.time() - start
        prompt_split = split_evenly(prompt_len, n)
        return [
            Completion(
                text=text,
                prompt_tokens=p,
                completion_tokens=c,
                latency_s=latency,
                model=self.model,
                finish_reason=reason,
            )
            for text, c, reason, p in zip(texts, counts, reasons, prompt_split, strict=True)
        ]

    def _generate(
        self, messages: Messages, n: int, temperature: float, max_tokens: int, seed: int
    ) -> tuple[list[str], list[int], list[str], int]:
        torch = self._torch
        ids = self.prompt_ids(messages)
        if not ids:
            raise LLMError(f"hf:{self.model}: the prompt encodes to no tokens")
        if self._context is not None:
            room = int(self._context) - len(ids)
            if room < 1:
                raise LLMError(
                    f"hf:{self.model}: prompt of {len(ids)} tokens fills the model's "
                    f"context of {self._context} tokens"
                )
            max_tokens = min(max_tokens, room)
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        eos = torch.tensor(sorted(self._eos) or [-1], device=self.device)
        with self._gen_lock, torch.inference_mode():
            step_input = torch.tensor([ids] * n, device=self.device)
            past = None
            done = torch.zeros(n, dtype=torch.bool, device=self.device)
            stopped = torch.zeros(n, dtype=torch.bool, device=self.device)
            lengths = torch.zeros(n, dtype=torch.long, device=self.device)
            rows: list[Any] = []
            for _ in range(max_tokens):
                out = self.lm(input_ids=step_input, past_key_values=past, use_cache=True)
                past = out.past_key_values
                logits = out.logits[:, -1, :].float()
                if temperature == 0:
                    token = logits.argmax(dim=-1)
                else:
                    probs = torch.softmax(logits / temperature, dim=-1)
                    token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                lengths += (~done).long()
                hit = torch.isin(token, eos) & ~done
                stopped |= hit
                rows.append(token)
                done |= hit
                if bool(done.all()):
                    break
                step_input = token.unsqueeze(1)
        generated = torch.stack(rows, dim=1).tolist() if rows else [[] for _ in range(n)]
        texts, counts, reasons = [], [], []
        for row, length, stop in zip(generated, lengths.tolist(), stopped.tolist(), strict=True):
            kept = row[:length]
            if stop:
                kept = kept[:-1]
            texts.append(self.tokenizer.decode(kept, skip_special_tokens=True))
            counts.append(int(length))
            reasons.append("stop" if stop else "length")
        return texts, counts, reasons, len(ids)


def _eos_ids(tokenizer: Any, model: Any) -> set[int]:
    found: set[int] = set()
    for value in (
        getattr(tokenizer, "eos_token_id", None),
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
    ):
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, (list, tuple)):
            found.update(v for v in value if isinstance(v, int))
    return found
