"""The two code operators behind :class:`~llmnas.strategies.evolution.EvolutionStrategy`.

``ASTOperator`` edits the syntax tree (no language model; operator name ``ast``).
``LLMOperator`` renders EvoPrompting/LLMatic prompts, samples the model concurrently, and
extracts a program from each reply (operator names ``mutate``, ``crossover``, ``fix``). A
reply without a usable program becomes a proposal that carries its failure in
``meta["failure"]``: the loop records it as a failed candidate without running anything.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from llmnas import prompting
from llmnas.operators import ast_ops
from llmnas.records import Proposal
from llmnas.replies import extract_program
from llmnas.strategies.evolution import Request

__all__ = ["ASTOperator", "LLMOperator"]


class ASTOperator:
    """Seeded syntax-tree mutation and crossover of the parents' source."""

    name = "ast"
    can_fix = False

    def __init__(self, *, input_shape: tuple[int, ...], attempts: int = 8):
        self.input_shape = tuple(input_shape)
        self.attempts = attempts

    def run(self, requests: Sequence[Request]) -> list[Proposal]:
        out = []
        for req in requests:
            rng = random.Random(req.seed)
            edit = None
            for _ in range(self.attempts):
                if req.kind == "crossover" and len(req.parents) == 2:
                    a, b = req.parents
                    edit = ast_ops.crossover(a.source, b.source, rng, input_shape=self.input_shape)
                    parents = [a.id, b.id]
                else:
                    parent = req.parents[rng.randrange(len(req.parents))]
                    edit = ast_ops.mutate(parent.source, rng, input_shape=self.input_shape)
                    parents = [parent.id]
                if edit is not None:
                    break
            if edit is None:
                continue
            meta = {"edit": edit.kind, "description": edit.description, "request": req.kind}
            out.append(Proposal(source=edit.source, operator="ast", parent_ids=parents, meta=meta))
        return out


class LLMOperator:
    """Language-model mutation, crossover and repair; requests are sampled concurrently."""

    name = "llm"
    can_fix = True

    def __init__(self, *, llm: Any, task: Any, settings: Any, seed: int):
        self.llm = llm
        self.task = task
        self.settings = settings
        self.rng = random.Random(seed)
        self.instructions = prompting.instructions(settings.prompts)

    def run(self, requests: Sequence[Request]) -> list[Proposal]:
        from llmnas.llm.base import run_sync

        async def gather() -> list[Proposal]:
            return list(await asyncio.gather(*(self._one(r) for r in requests)))

        return run_sync(gather())

    def _messages(self, req: Request) -> tuple[list[dict[str, str]], str | None]:
        prompts = self.settings.prompts
        if req.kind == "fix":
            return prompting.fix_messages(req.parents[0], self.task, prompts_dir=prompts), None
        if req.kind == "crossover":
            return prompting.crossover_messages(req.parents, self.task, prompts_dir=prompts), None
        instruction = random.Random(req.seed).choice(self.instructions)
        msgs = prompting.mutation_messages(req.parents, self.task, instruction, prompts_dir=prompts)
        return msgs, instruction

    async def _one(self, req: Request) -> Proposal:
        messages, instruction = self._messages(req)
        completion = (
            await self.llm.sample(
                messages,
                n=1,
                temperature=self.settings.temperature,
                max_tokens=self.settings.max_tokens,
                seed=req.seed,
            )
        )[0]
        parent_source = req.parents[0].source
        extracted = extract_program(
            completion.text, parent_source, finish_reason=completion.finish_reason
        )
        meta: dict[str, Any] = {
            "prompt": messages,
            "reply": completion.text,
            "instruction": instruction,
            "model": completion.model,
            "tokens": completion.prompt_tokens + completion.completion_tokens,
            "extract": extracted.method,
        }
        if extracted.ok:
            source = extracted.source or ""
        else:
            assert extracted.failure is not None
            source = completion.text
            meta["failure"] = extracted.failure.model_dump(mode="json")
        return Proposal(
            source=source,
            operator=req.kind,
            parent_ids=[p.id for p in req.parents],
            meta=meta,
        )
