"""The space-aware LLM operator: prompts in a search space's notation, replies of one line.

For candidates that come from a search space (the NB201 tabular tasks, the cell and chain
spaces), :class:`SpaceLLMOperator` shows the model what the space lets it change
(:mod:`llmnas.spaces.text`), never the program: the space's layout and operations, every
architecture evaluated so far with its validation accuracy (best first, trimmed from the
bottom to fit the prompt-token budget), the last attempts (instruction -> result) and the
parents. The model answers with one ``ARCH: ...`` line; the operator parses it into a genotype
and renders the candidate program itself, so a reply is a few tokens instead of a program.

On blind tasks the view is blind (neutral operation names, no parameter counts, no code).
Replies that do not parse become proposals carrying a ``syntax`` failure (recorded, never
run). As with the code operator, no prompt is sent twice in a run. Instructions are a data
file per space kind (``instructions_cell.txt``, ``instructions_chain.txt``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from llmnas import prompting
from llmnas.llm.base import estimate_tokens, prompt_sha256
from llmnas.operators.code_ops import sample_one
from llmnas.records import Candidate, Failure, FailureKind, Proposal
from llmnas.replies import strip_thinking
from llmnas.spaces.text import SpaceText
from llmnas.strategies.evolution import Request
from llmnas.task_facts import TaskFacts

__all__ = ["SpaceLLMOperator"]


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


class SpaceLLMOperator:
    """LLM mutation and crossover in a search space's notation (see the module docstring)."""

    name = "llm"
    can_fix = False

    def __init__(
        self,
        *,
        llm: Any,
        task: Any,
        text: SpaceText,
        settings: Any,
        evolution: Any,
        facts: TaskFacts | None = None,
        sent: Iterable[str] = (),
    ):
        self.llm = llm
        self.task = task
        self.text = text
        self.settings = settings
        self.evolution = evolution
        self.facts = facts
        kind = "cell" if "|" in text.notation else "chain"
        self.instructions = prompting.instructions(settings.prompts, f"instructions_{kind}")
        self.sent: set[str] = set(sent)
        self.skipped = 0
        self._shown: dict[int, str | None] = {}

    # -- what a prompt shows -------------------------------------------------------------------
    def _arch(self, cand: Candidate) -> str | None:
        if cand.id not in self._shown:  # parsing a program is the costly part of a prompt
            genotype = self.text.genotype_of(cand.source)
            self._shown[cand.id] = None if genotype is None else self.text.show(genotype)
        return self._shown[cand.id]

    def _line(self, cand: Candidate) -> str:
        arch = self._arch(cand) or "(not in the space)"
        parts = [f"#{cand.id}", arch]
        if cand.val_accuracy is not None:
            parts.append(f"val {_acc(cand.val_accuracy)}")
            params = cand.result.metrics.get("params")
            if params is not None and not self.text.blind:
                parts.append(f"params {int(params):,}")
        elif cand.result.failure is not None:
            parts.append(f"{cand.result.failure.kind.value}: {cand.result.failure.message[:80]}")
        return "  ".join(parts)

    def _evaluated(self, req: Request) -> list[Candidate]:
        known = {c.id: c for c in [*req.elites, *req.history, *req.parents]}
        scored = [c for c in known.values() if c.val_accuracy is not None and self._arch(c)]
        return sorted(scored, key=lambda c: (-(c.val_accuracy or 0.0), c.id))

    def _attempts(self, req: Request) -> str:
        tried = [c for c in req.history if c.operator != "seed"]
        recent = tried[-self.evolution.memory :] if self.evolution.memory else []
        lines = []
        for c in recent:
            asked = c.meta.get("instruction") or c.meta.get("request") or c.operator
            if c.operator == "crossover":
                asked = "combine " + " and ".join(f"#{p}" for p in c.parent_ids)
            lines.append(f"- {asked} -> {self._line(c)}")
        if not lines:
            return prompting.EMPTY_BLOCK
        return prompting.render("space_attempts", {"attempts": "\n".join(lines)},
                                self.settings.prompts)  # fmt: skip

    def _fields(self, req: Request, evaluated: list[Candidate]) -> dict[str, Any]:
        parents = sorted(req.parents, key=lambda c: (c.val_accuracy or -1.0, c.id))
        best = evaluated[0].val_accuracy if evaluated else None
        goal = (
            f"a validation accuracy above {_acc(best)}, the best so far."
            if best is not None
            else "the highest validation accuracy you can reach."
        )
        facts = prompting.EMPTY_BLOCK
        if self.facts is not None and not getattr(self.task, "tabular", False):
            facts = prompting.render("facts", self.facts.fields(best), self.settings.prompts)
        return {
            "task_name": self.task.name,
            "task_description": getattr(self.task, "space_description", self.task.description),
            "space": self.text.describe(tabular=bool(getattr(self.task, "tabular", False))),
            "facts": facts,
            "n_evaluated": len(evaluated),
            "evaluated": "\n".join(self._line(c) for c in evaluated) or "(nothing yet)",
            "attempts": self._attempts(req),
            "parents": "\n".join(self._line(c) for c in parents),
            "goal": goal,
            "notation": self.text.notation,
        }

    def _render(self, req: Request, evaluated: list[Candidate], instruction: str | None):
        fields = self._fields(req, evaluated)
        if instruction is None:
            user = prompting.render("space_crossover", fields, self.settings.prompts)
        else:
            fields["instruction"] = instruction
            user = prompting.render("space_mutate", fields, self.settings.prompts)
        return prompting.chat_messages(user, self.settings.prompts, system="space_system")

    def _variants(self, req: Request) -> Iterator[tuple[list[dict[str, str]], str | None]]:
        evaluated = self._evaluated(req)
        first = None if req.kind == "crossover" else self.instructions[0].text
        while len(evaluated) > 1:  # the list shrinks from the worst end to fit the budget
            probe = self._render(req, evaluated, first)
            if estimate_tokens(probe) <= self.evolution.prompt_tokens:
                break
            evaluated = evaluated[: max(1, len(evaluated) * 9 // 10)]
        if req.kind == "crossover":
            yield self._render(req, evaluated, None), None
            return
        order = list(self.instructions)
        random.Random(req.seed).shuffle(order)
        for instruction in order:
            yield self._render(req, evaluated, instruction.text), instruction.text

    # -- the operator ----------------------------------------------------------------------------
    def run(self, requests: Sequence[Request]) -> list[Proposal]:
        from llmnas.llm.base import run_sync

        prepared = []
        for req in requests:
            if req.kind == "fix":
                continue
            for messages, instruction in self._variants(req):
                digest = prompt_sha256(messages)
                if digest not in self.sent:
                    self.sent.add(digest)
                    prepared.append((req, messages, instruction))
                    break
            else:
                self.skipped += 1
        if not prepared:
            return []

        async def gather() -> list[Proposal]:
            return list(await asyncio.gather(*(self._one(r, m, i) for r, m, i in prepared)))

        try:
            return run_sync(gather())
        except BaseException:  # unanswered prompts may be sent again (e.g. after an outage)
            self.sent.difference_update(prompt_sha256(m) for _, m, _ in prepared)
            raise

    async def _one(
        self, req: Request, messages: list[dict[str, str]], instruction: str | None
    ) -> Proposal:
        completion = await sample_one(self.llm, self.settings, messages, req.seed)
        meta: dict[str, Any] = {
            "prompt": messages,
            "reply": completion.text,
            "instruction": instruction,
            "prompt_style": "space",
            "model": completion.model,
            "tokens": completion.prompt_tokens + completion.completion_tokens,
            "prompt_tokens_est": estimate_tokens(messages),
            "reply_tokens_est": estimate_tokens(completion.text),
            "extract": "arch",
        }
        try:
            genotype = self.text.parse(strip_thinking(completion.text))
        except ValueError as exc:
            failure = Failure(kind=FailureKind.SYNTAX, message=str(exc), stage="extract")
            meta["failure"] = failure.model_dump(mode="json")
            source = completion.text
        else:
            meta["genotype"] = self.text.encode(genotype)
            source = self.text.render(genotype)
        return Proposal(
            source=source, operator=req.kind, parent_ids=[p.id for p in req.parents], meta=meta
        )
