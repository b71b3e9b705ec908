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
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from llmnas import prompting
from llmnas.llm.base import estimate_tokens, prompt_sha256
from llmnas.memory import attempts_table, elite_summary
from llmnas.operators import ast_ops
from llmnas.records import Proposal
from llmnas.replies import extract_program
from llmnas.strategies.evolution import Request
from llmnas.targets import Objectives, direction_of_niche, fit_niche, targets_block
from llmnas.task_facts import TaskFacts

__all__ = ["ASTOperator", "LLMOperator", "sample_one"]


async def sample_one(llm: Any, settings: Any, messages: list[dict[str, str]], seed: int) -> Any:
    """One completion for ``messages`` with the run's ``[llm]`` sampling settings."""
    replies = await llm.sample(
        messages, n=1, temperature=settings.temperature, max_tokens=settings.max_tokens, seed=seed
    )
    return replies[0]


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
    """Language-model mutation, crossover and repair; requests are sampled concurrently.

    Prompts carry the task's facts, the run's memory and targets from :mod:`llmnas.targets`.
    A mutation's instruction is drawn (seeded by the request) among those whose direction
    agrees with the request's niche. No prompt is sent twice in a run: a mutation whose prompt
    was sent before tries the other instructions, and a request whose every variant was sent
    before is skipped. ``sent`` holds the prompt hashes of a resumed run.
    """

    name = "llm"
    can_fix = True

    def __init__(
        self,
        *,
        llm: Any,
        task: Any,
        settings: Any,
        seed: int,
        evolution: Any = None,
        facts: TaskFacts | None = None,
        sent: Iterable[str] = (),
    ):
        from llmnas.config import EvolutionSettings

        self.llm = llm
        self.task = task
        self.settings = settings
        self.evolution = evolution or EvolutionSettings()
        self.facts = facts
        self.rng = random.Random(seed)
        self.instructions = prompting.instructions(settings.prompts)
        self.objectives = Objectives(
            secondary=tuple(self.evolution.objectives),
            max_params=self.evolution.max_params,
            max_flops=self.evolution.max_flops,
        )
        self.sent: set[str] = set(sent)
        self.skipped = 0

    def run(self, requests: Sequence[Request]) -> list[Proposal]:
        from llmnas.llm.base import run_sync

        prepared = [p for r in requests if (p := self._prepare(r)) is not None]

        async def gather() -> list[Proposal]:
            return list(await asyncio.gather(*(self._one(r, m, i) for r, m, i in prepared)))

        if not prepared:
            return []
        try:
            return run_sync(gather())
        except BaseException:  # unanswered prompts may be sent again (e.g. after an outage)
            self.sent.difference_update(prompt_sha256(m) for _, m, _ in prepared)
            raise

    def _prepare(self, req: Request) -> tuple[Request, list[dict[str, str]], str | None] | None:
        """The request's messages (never a prompt sent before), or ``None`` to skip it."""
        for messages, instruction in self._variants(req):
            digest = prompt_sha256(messages)
            if digest not in self.sent:
                self.sent.add(digest)
                return req, messages, instruction
        self.skipped += 1
        return None

    def _variants(self, req: Request) -> Iterator[tuple[list[dict[str, str]], str | None]]:
        prompts = self.settings.prompts
        req.niche = fit_niche(req.niche, self.objectives)
        if req.kind == "fix":
            yield prompting.fix_messages(req.parents[0], self.task, prompts_dir=prompts), None
            return
        history = list(req.history)
        while True:  # the memory shrinks until the prompt fits its token budget
            attempts = attempts_table(history, {c.id for c in req.elites})
            common = {
                "facts": self.facts,
                "attempts": attempts,
                "elites": elite_summary(req.elites) if attempts else "",
                "prompts_dir": prompts,
            }
            probe = self._render(req, common, self.instructions[0])
            if not history or estimate_tokens(probe) <= self.evolution.prompt_tokens:
                break
            history = history[1:]
        if req.kind == "crossover":
            yield self._render(req, common, None), None
            return
        direction = "same"
        if req.niche:
            best = max(req.parents, key=lambda c: c.val_accuracy or 0.0)
            direction = direction_of_niche(req.niche, best.descriptors.get("log10_params", 0.0))
        fitting = [i for i in self.instructions if direction in ("same", i.direction)]
        # a niche above (below) the parent takes only growing (shrinking) instructions
        order = list(fitting or self.instructions)
        random.Random(req.seed).shuffle(order)
        for instruction in order:
            yield self._render(req, common, instruction), instruction.text

    def _render(self, req: Request, common: dict[str, Any], instruction: Any):
        views = [
            (p.val_accuracy, p.result.metrics.get("params"), p.result.metrics.get("flops"))
            for p in req.parents
        ]
        direction = "same" if instruction is None or req.niche else instruction.direction
        targets = targets_block(
            views,
            n_val=None if self.facts is None else self.facts.n_val,
            objectives=self.objectives,
            direction=direction,
            niche=req.niche,
        )
        fields = {**common, "targets": targets}
        if req.kind == "crossover" or instruction is None:
            return prompting.crossover_messages(req.parents, self.task, **fields)
        return prompting.mutation_messages(req.parents, self.task, instruction.text, **fields)

    async def _one(
        self, req: Request, messages: list[dict[str, str]], instruction: str | None
    ) -> Proposal:
        completion = await sample_one(self.llm, self.settings, messages, req.seed)
        parent_source = req.parents[0].source
        extracted = extract_program(
            completion.text, parent_source, finish_reason=completion.finish_reason
        )
        meta: dict[str, Any] = {
            "prompt": messages,
            "reply": completion.text,
            "instruction": instruction,
            "niche": req.niche,
            "model": completion.model,
            "tokens": completion.prompt_tokens + completion.completion_tokens,
            "prompt_tokens_est": estimate_tokens(messages),
            "reply_tokens_est": estimate_tokens(completion.text),
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
