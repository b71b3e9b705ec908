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
)
from llmnas.records import Candidate, EvalResult, FailureKind, Status
from llmnas.targets import Instruction
from llmnas.task_facts import TaskFacts
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
FACTS = TaskFacts(
    n_train=3500,
    n_val=500,
    input_shape=(1, 8),
    num_classes=4,
    optimizer="adam",
    lr=0.01,
    weight_decay=0.0,
    momentum=0.9,
    batch_size=100,
    epochs=15,
    schedule="constant",
)
FACTS_TEXT = (
    "How every program is trained and scored (fixed by the task; you write only the "
    "architecture):\n"
    "- data: 3,500 training and 500 validation examples, inputs of shape (1, 8), 4 classes, "
    "no data augmentation\n"
    "- training: Adam, constant learning rate 0.01, no weight decay, batch size 100, 15 epochs "
    "(525 steps), cross-entropy on the logits; model.train() while training, model.eval() for "
    "validation\n"
    "- noise: validation accuracy is measured once on 500 examples; at 0.875 its standard error "
    "is about 0.015, so differences below about 0.030 are mostly noise\n"
    "- counting: parameters are all of the model's parameters (sum of numel); FLOPs are those "
    "of one forward pass of one example, counted by torch.utils.flop_counter: 2 per "
    "multiply-add in convolutions, linear layers, recurrent cells and matrix products; "
    "activations, normalisation and pooling count 0"
)
ATTEMPTS = (
    "| id | made by | parents | outcome |\n|---|---|---|---|\n"
    "| #3 | mutate: make the network wider | #1 | val 0.8000, 100 params, 180 FLOPs, not kept |"
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

{FACTS_TEXT}

Here are 2 programs from this run's archive, sorted from the lowest to the highest validation \
accuracy:

{PARENTS.replace("### Program 1", "### Program 1 (#1)").replace("### Program 2", "### Program 2 (#2)")}

Recent attempts in this run, oldest first (what was tried, from which parents, and what came \
of it):

{ATTEMPTS}

The archive so far: 2 programs.

Change to make: add a residual connection.

Targets for the new program:
- validation accuracy: above 0.8898 (the best parent's 0.8750 plus one standard error of 0.015)
- parameters: a second objective: at equal accuracy fewer is better; no cap

Reply with the complete new program in a single ```python fenced block. \
Do not repeat a program shown above unchanged."""

CROSSOVER = f"""Task: toy. Toy task: 8 features, 4 classes.

{CONTRACT}

Here are two parent programs from this run's archive, the weaker one first:

{PARENTS}

Write a child program that combines the strongest ideas of both parents into one coherent \
architecture.

Targets for the child:
- validation accuracy: higher than the best parent's 0.8750
- parameters: a second objective: at equal accuracy fewer is better; no cap

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


def test_golden_facts():
    assert render("facts", FACTS.fields(0.875)) == FACTS_TEXT


def test_golden_parent():
    fields = {"rank": 3, "id": "", "val_accuracy": "0.5000", "params": "1,234", "flops": "unknown"}
    expected = (
        "### Program 3\nvalidation accuracy: 0.5000\nparameters: 1,234\nFLOPs: unknown\n\n"
        "```python\nx = 1\n```"
    )
    assert render("parent", {**fields, "source": "x = 1"}) == expected


def test_golden_mutate():
    parents = [{**STRONG, "id": 2}, {**WEAK, "id": 1}]
    messages = mutation_messages(
        parents,
        TASK,
        "add a residual connection.",
        facts=FACTS,
        attempts=ATTEMPTS,
        elites="2 programs",
    )
    assert messages == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": MUTATE},
    ]


def test_golden_crossover():
    messages = crossover_messages([STRONG, WEAK], TASK)
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
        Instruction("make the network deeper", "grow"),
        Instruction("make the network wider", "grow"),
        Instruction("make the network shallower", "shrink"),
        Instruction("add a residual connection", "same"),
        Instruction("halve the number of parameters", "shrink"),
        Instruction("double the number of parameters", "grow"),
    ]
    texts = [i.text for i in listed]
    assert not any(t.startswith("#") or ":" in t for t in texts)
    assert len(set(texts)) == len(texts)


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
        {
            "rank": 1,
            "id": "",
            "val_accuracy": "$x",
            "params": "${y}",
            "flops": 0,
            "source": "cost = '$$5'",
        },
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


def test_empty_blocks_leave_no_blank_lines_but_code_keeps_its_own():
    text = mutation_messages([WEAK], TASK, "make it wider")[1]["content"]
    assert "\n\n\n" not in text.split("```python")[0]  # no facts, no memory: no gap
    assert "import torch\n\n\nclass Model" in text  # the parent's blank lines are kept
