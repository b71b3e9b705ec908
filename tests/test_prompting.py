"""Prompt templates: golden strings for every template, strict rendering, builders, overrides."""

from __future__ import annotations

import pytest

from llmnas.prompting import (
    FAILURE_HINTS,
    PromptError,
    crossover_messages,
    fix_messages,
    instructions,
    load_template,
    mutation_messages,
    parent_view,
    render,
    target_metrics,
)
from llmnas.records import Candidate, EvalResult, FailureKind, Status
from llmnas.tasks import get_task

TASK = {
    "name": "toy",
    "description": "Toy task: 8 features, 4 classes.",
    "input_shape": (1, 8),
    "num_classes": 4,
}
SMALL = """import torch


class Model(torch.nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.fc = torch.nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))
"""
DEEP = SMALL.replace(
    "torch.nn.Linear(8, num_classes)",
    "torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, num_classes))",
)
WEAK = {"source": SMALL, "val_accuracy": 0.75, "params": 36, "flops": 64}
STRONG = {"source": DEEP, "metrics": {"val_accuracy": 0.875, "params": 212, "flops": 400}}

SYSTEM = (
    "You are an expert deep-learning researcher who designs neural network architectures by "
    "writing PyTorch code. You write complete, self-contained programs that run as they are. "
    "You answer with code in a single ```python fenced block and keep any explanation short."
)
CONTRACT = (
    "The program must be one self-contained Python file that defines\n"
    "\n"
    "    class Model(torch.nn.Module):\n"
    "        def __init__(self, input_shape: tuple[int, ...], num_classes: int): ...\n"
    "        def forward(self, x: torch.Tensor) -> torch.Tensor: ...\n"
    "\n"
    "forward maps a batch of shape (B, *input_shape) to logits of shape (B, num_classes). "
    "Here input_shape is (1, 8) (channels first) and num_classes is 4; derive every layer size "
    "from these two arguments instead of hard-coding them. Only these modules may be imported: "
    "abc, collections, copy, dataclasses, enum, functools, itertools, math, numbers, numpy, "
    "operator, torch, typing. Do not read files, use the network, start processes or print. "
    "The training loop, optimiser, data and metrics are fixed by the task: write the "
    'architecture only. Code under `if __name__ == "__main__":` is never run.'
)
PARENTS = """### Program 1
validation accuracy: 0.7500
parameters: 36
FLOPs: 64

```python
import torch


class Model(torch.nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.fc = torch.nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))
```

### Program 2
validation accuracy: 0.8750
parameters: 212
FLOPs: 400

```python
import torch


class Model(torch.nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.fc = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, num_classes))

    def forward(self, x):
        return self.fc(x.flatten(1))
```"""

MUTATE = f"""Task: toy. Toy task: 8 features, 4 classes.

{CONTRACT}

Here are 2 programs for this task, sorted from the lowest to the highest validation accuracy:

{PARENTS}

Write a new program that improves on all of them. Target metrics for the new program:
- validation accuracy: at least 0.8850
- parameters: at most 190
- FLOPs: at most 360

Change to make: add a residual connection.

Reply with the complete new program in a single ```python fenced block. \
Do not repeat a program above unchanged."""

CROSSOVER = f"""Task: toy. Toy task: 8 features, 4 classes.

{CONTRACT}

Here are two parent programs for this task, the weaker one first:

{PARENTS}

Write a child program that combines the strongest ideas of both parents into one coherent \
architecture. Target metrics for the child:
- as accurate as possible, with as few parameters as possible

Reply with the complete child program in a single ```python fenced block."""

FIX = f"""Task: toy. Toy task: 8 features, 4 classes.

{CONTRACT}

This program failed its evaluation:

```python
{SMALL.rstrip()}
```

Failure kind: shape
Failure message: mat1 and mat2 shapes cannot be multiplied (4x8 and 9x4)
Hint: follow the tensor shapes through every layer; compute sizes from input_shape

Fix the problem and keep the idea of the architecture. Reply with the complete corrected \
program in a single ```python fenced block, or with SEARCH/REPLACE edits of the program above, \
each in this form:

<<<<<<< SEARCH
exact lines copied from the program
=======
the lines that replace them
>>>>>>> REPLACE"""


def test_golden_system():
    assert render("system", {}) == SYSTEM


def test_golden_contract():
    fields = {
        "input_shape": (1, 8),
        "num_classes": 4,
        "allowed_imports": "abc, collections, copy, dataclasses, enum, functools, itertools, "
        "math, numbers, numpy, operator, torch, typing",
    }
    assert render("contract", fields) == CONTRACT


def test_golden_parent():
    fields = {"rank": 3, "val_accuracy": "0.5000", "params": "1,234", "flops": "unknown"}
    expected = (
        "### Program 3\nvalidation accuracy: 0.5000\nparameters: 1,234\nFLOPs: unknown\n\n"
        "```python\nx = 1\n```"
    )
    assert render("parent", {**fields, "source": "x = 1"}) == expected


def test_golden_mutate():
    messages = mutation_messages([STRONG, WEAK], TASK, "add a residual connection.")
    assert messages == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": MUTATE},
    ]


def test_golden_crossover():
    messages = crossover_messages([STRONG, WEAK], TASK, targets={})
    assert messages == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": CROSSOVER},
    ]


def test_golden_fix():
    failure = {
        "kind": "shape",
        "message": "mat1 and mat2 shapes cannot be multiplied (4x8 and 9x4)",
    }
    messages = fix_messages({"source": SMALL, "failure": failure}, TASK)
    assert messages == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": FIX}]


def test_golden_instructions():
    listed = instructions()
    assert len(listed) >= 12
    assert listed[:6] == [
        "make the network deeper",
        "make the network wider",
        "make the network shallower",
        "add a residual connection",
        "halve the number of parameters",
        "double the number of parameters",
    ]
    assert not any(line.startswith("#") for line in listed)
    assert len(set(listed)) == len(listed)


def test_rendering_is_strict():
    with pytest.raises(PromptError, match="needs field.*num_classes"):
        render("contract", {"input_shape": (1, 8), "allowed_imports": "torch"})
    with pytest.raises(PromptError, match="has no field.*extra"):
        render("system", {"extra": 1})
    with pytest.raises(PromptError, match="unknown prompt template 'nope'.*mutate"):
        render("nope", {})


def test_values_are_inserted_verbatim():
    text = render(
        "parent",
        {"rank": 1, "val_accuracy": "$x", "params": "${y}", "flops": 0, "source": "cost = '$$5'"},
    )
    assert "validation accuracy: $x\nparameters: ${y}" in text
    assert "cost = '$$5'" in text


def test_prompts_dir_overrides_and_falls_back(tmp_path):
    (tmp_path / "system.txt").write_text("Be brief about $$ costs.\n")
    (tmp_path / "broken.txt").write_text("a $ b\n")
    assert render("system", {}, prompts_dir=tmp_path) == "Be brief about $ costs."
    messages = mutation_messages([WEAK], TASK, "make it wider", prompts_dir=tmp_path)
    assert messages[0]["content"] == "Be brief about $ costs."
    assert messages[1]["content"].startswith("Task: toy.")  # mutate.txt from the package
    with pytest.raises(PromptError, match="malformed placeholder"):
        render("broken", {}, prompts_dir=tmp_path)
    assert load_template("mutate.txt", tmp_path) == load_template("mutate")


def test_candidates_as_parents_sorted_by_accuracy():
    def cand(i: int, acc: float | None, source: str) -> Candidate:
        if acc is None:
            result = EvalResult.failed(FailureKind.SHAPE, "bad shapes")
        else:
            result = EvalResult(status=Status.OK, metrics={"val_accuracy": acc, "params": 10 * i})
        return Candidate(id=i, source=source, operator="seed", result=result)

    parents = [cand(1, 0.9, "A = 1\n"), cand(2, None, "B = 2\n"), cand(3, 0.5, "C = 3\n")]
    text = mutation_messages(parents, get_task("synthetic"), "make it deeper")[1]["content"]
    order = [text.index(s) for s in ("B = 2", "C = 3", "A = 1")]
    assert order == sorted(order)
    assert "validation accuracy: unknown" in text and "parameters: 30" in text
    assert "input_shape is (1, 8)" in text and "num_classes is 4" in text
    assert parent_view(parents[1]).failure_kind == "shape"
    fixed = fix_messages(parents[1], TASK)[1]["content"]
    assert "Failure kind: shape\nFailure message: bad shapes" in fixed
    assert FAILURE_HINTS["shape"] in fixed


def test_builder_argument_errors():
    with pytest.raises(ValueError, match="at least one parent"):
        mutation_messages([], TASK, "x")
    with pytest.raises(ValueError, match="exactly two"):
        crossover_messages([WEAK], TASK)
    with pytest.raises(ValueError, match="needs a failure"):
        fix_messages({"source": SMALL}, TASK)
    with pytest.raises(TypeError, match="source"):
        parent_view({"val_accuracy": 0.5})


def test_target_metrics():
    assert target_metrics([WEAK, STRONG]) == {"val_accuracy": 0.885, "params": 190, "flops": 360}
    assert target_metrics([{"source": "", "val_accuracy": 0.995}]) == {"val_accuracy": 1.0}
    assert target_metrics([{"source": ""}]) == {}
