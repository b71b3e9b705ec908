"""Prompt and reply tokens per candidate: space prompts against code prompts, same steps.

Usage::

    .venv/bin/python benchmarks/prompt_styles.py RUN [RUN ...]

Each RUN is a finished run folder whose LLM candidates used space prompts (e.g. a cell of
``llmnas bench --config benchmarks/llm_nb201.toml``). For every such candidate the script
prints what its space prompt and reply took (characters / 4, as stored with the candidate) and
what the code prompt for the same step takes: the same parents shown as programs, the same
task, the mutation instruction "change the architecture" (crossover: the crossover prompt),
the last 8 attempts as the code operator's memory table. The code reply is counted as the
child's whole program, the least a complete-program reply can take; a SEARCH/REPLACE edit of
the ``NB201_ARCH`` line would be far shorter, but models asked for programs rarely give one.
Nothing is sent to a model: this measures prompt sizes, not search quality.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from llmnas import prompting
from llmnas.llm.base import estimate_tokens
from llmnas.memory import attempts_table
from llmnas.store import RunStore
from llmnas.tasks import get_task


def measure(run: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {"space_prompt": [], "space_reply": [], "code_prompt": [],
                                 "code_reply": []}  # fmt: skip
    with RunStore.open(run, read_only=True) as store:
        task = get_task(store.config()["task"])
        cands = store.candidates()
    by_id = {c.id: c for c in cands}
    for i, c in enumerate(cands):
        if c.meta.get("prompt_style") != "space" or c.status.value != "ok":
            continue
        parents = [by_id[p] for p in c.parent_ids]
        history = [h for h in cands[:i] if h.operator != "seed"][-8:]
        memory = {"attempts": attempts_table(history, set()), "elites": ""}
        if c.operator == "crossover" and len(parents) == 2:
            code = prompting.crossover_messages(parents, task, **memory)
        else:
            code = prompting.mutation_messages(parents, task, "change the architecture", **memory)
        out["space_prompt"].append(c.meta["prompt_tokens_est"])
        out["space_reply"].append(c.meta["reply_tokens_est"])
        out["code_prompt"].append(estimate_tokens(code))
        out["code_reply"].append(estimate_tokens(c.source))
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    totals: dict[str, list[int]] = {}
    for run in argv:
        for key, values in measure(Path(run)).items():
            totals.setdefault(key, []).extend(values)
    n = len(totals.get("space_prompt", []))
    if not n:
        print("no valid space-prompt candidates in these runs", file=sys.stderr)
        return 1
    print(f"{n} candidates from {len(argv)} run(s); tokens estimated as characters / 4")
    print(f"{'':14} {'prompt mean':>12} {'prompt median':>14} {'reply mean':>11} {'total':>8}")
    for style in ("space", "code"):
        p, r = totals[f"{style}_prompt"], totals[f"{style}_reply"]
        total = statistics.mean(p) + statistics.mean(r)
        print(f"{style + ' prompts':14} {statistics.mean(p):12,.0f} {statistics.median(p):14,.0f} "
              f"{statistics.mean(r):11,.0f} {total:8,.0f}")  # fmt: skip
    ratio = (statistics.mean(totals["code_prompt"]) + statistics.mean(totals["code_reply"])) / (
        statistics.mean(totals["space_prompt"]) + statistics.mean(totals["space_reply"])
    )
    print(f"code / space tokens per candidate: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
