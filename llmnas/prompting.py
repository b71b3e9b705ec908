"""Prompt templates: strict rendering and the chat-message builders of the LLM operators.

Templates are plain text files in the repository's top-level ``prompts/`` (installed as the
package ``llmnas.prompts``), one per
template name: ``system``, ``contract``, ``facts`` (how the task trains and scores, from
:mod:`llmnas.task_facts`), ``parent``, ``memory`` (recent attempts, from
:mod:`llmnas.memory`), ``mutate``, ``crossover``, ``fix`` and ``instructions`` (a list, one
instruction per line, with an optional ``grow:``/``shrink:`` direction). Placeholders use
:class:`string.Template` syntax: ``$field`` or ``${field}``; ``$$`` is a literal dollar sign.
Rendering is strict: a field the template needs but is not given, a given field the template
does not use, and a malformed placeholder are all :class:`PromptError`. Values are inserted
verbatim (a value is never itself expanded), and trailing newlines of the rendered text are
dropped. A block whose content is empty (no facts for a dict task, no memory yet) leaves no
blank lines behind.

``prompts_dir`` points at a folder of overrides: a template found there wins, the others come
from the package.

The builders (:func:`mutation_messages`, :func:`crossover_messages`, :func:`fix_messages`)
take parents as :class:`~llmnas.records.Candidate` records or plain dicts (``source`` plus
``val_accuracy``/``params``/``flops`` at the top level or under ``metrics``) and a task (a
:class:`~llmnas.tasks.base.Task` or a dict with ``name``, ``description``, ``input_shape``,
``num_classes``), and return the chat ``messages`` list: a system message and a user message.
Parents are shown from the lowest to the highest validation accuracy (EvoPrompting order;
unknown accuracy first). Accuracies are fractions in [0, 1]. Targets come from
:mod:`llmnas.targets` unless the caller renders its own.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from llmnas.gate import ALLOWED_IMPORTS
from llmnas.targets import Instruction, Objectives, parse_instruction, targets_block
from llmnas.task_facts import TaskFacts

__all__ = [
    "EMPTY_BLOCK",
    "FAILURE_HINTS",
    "PROMPTS_DIR",
    "ParentView",
    "PromptError",
    "chat_messages",
    "crossover_messages",
    "fix_messages",
    "instructions",
    "load_template",
    "mutation_messages",
    "parent_view",
    "render",
]


PROMPTS_DIR = Path(str(resources.files("llmnas.prompts")))
"""The packaged templates: the repository's top-level ``prompts/``, installed as
``llmnas.prompts``."""


class PromptError(ValueError):
    """A template is unknown or malformed, or its fields do not match."""


FAILURE_HINTS: dict[str, str] = {
    "syntax": "the program must be complete, valid Python; do not cut it short",
    "contract": "define class Model(torch.nn.Module) with __init__(self, input_shape, "
    "num_classes) and forward(self, x) at the top level",
    "import": "import only the allowed modules and do not use exec, eval, open or dunder tricks",
    "shape": "follow the tensor shapes through every layer; compute sizes from input_shape",
    "timeout": "make the model smaller or cheaper so that it trains in time",
    "memory": "use fewer parameters and smaller activations",
    "nonfinite": "stabilise the computation (normalisation, no division by zero, sane scales)",
    "crash": "read the error message and fix the code that raised it",
    "rejected": "the program was discarded by the pre-filter; try a clearly different design",
}
"""One hint per failure kind, shown in fix prompts."""


def load_template(name: str, prompts_dir: str | Path | None = None) -> str:
    """The raw text of template ``name`` (with or without ``.txt``)."""
    file = name if name.endswith(".txt") else f"{name}.txt"
    if prompts_dir is not None:
        override = Path(prompts_dir) / file
        if override.is_file():
            return override.read_text(encoding="utf-8")
    packaged = PROMPTS_DIR / file
    if not packaged.is_file():
        known = sorted(p.stem for p in PROMPTS_DIR.glob("*.txt"))
        raise PromptError(f"unknown prompt template {name!r}; known: {', '.join(known)}")
    return packaged.read_text(encoding="utf-8")


def render(name: str, fields: Mapping[str, Any], prompts_dir: str | Path | None = None) -> str:
    """Template ``name`` with ``fields`` substituted (strict; see the module docstring)."""
    template = string.Template(load_template(name, prompts_dir))
    if not template.is_valid():
        raise PromptError(f"template {name!r} has a malformed placeholder (use $$ for '$')")
    needed = set(template.get_identifiers())
    missing = sorted(needed - set(fields))
    unknown = sorted(set(fields) - needed)
    if missing:
        raise PromptError(f"template {name!r} needs field(s) {', '.join(missing)}")
    if unknown:
        raise PromptError(f"template {name!r} has no field(s) {', '.join(unknown)}")
    return template.substitute({k: str(v) for k, v in fields.items()}).rstrip("\n")


def instructions(
    prompts_dir: str | Path | None = None, name: str = "instructions"
) -> list[Instruction]:
    """The mutation instructions: non-blank lines of ``<name>.txt`` not starting with #,
    each with its direction (``grow:``/``shrink:`` prefix, else ``same``)."""
    lines = load_template(name, prompts_dir).splitlines()
    return [parse_instruction(s) for line in lines if (s := line.strip()) and not s.startswith("#")]


@dataclass(frozen=True)
class ParentView:
    """What a prompt shows of a program."""

    source: str
    id: int | None = None
    val_accuracy: float | None = None
    params: int | None = None
    flops: int | None = None
    failure_kind: str | None = None
    failure_message: str | None = None


def parent_view(parent: Any) -> ParentView:
    """Normalise a :class:`~llmnas.records.Candidate`, a :class:`ParentView` or a dict."""
    if isinstance(parent, ParentView):
        return parent
    if isinstance(parent, Mapping):
        metrics = {**dict(parent.get("metrics") or {}), **dict(parent)}
        failure = parent.get("failure")
        source = parent.get("source")
        cid = parent.get("id")
    else:
        result = getattr(parent, "result", None)
        metrics = dict(getattr(result, "metrics", None) or {})
        failure = getattr(result, "failure", None)
        source = getattr(parent, "source", None)
        cid = getattr(parent, "id", None)
    if not isinstance(source, str):
        raise TypeError(f"a parent needs a 'source' string, got {type(parent).__name__}")
    if isinstance(failure, Mapping):
        kind, message = failure.get("kind"), failure.get("message")
    else:
        kind, message = getattr(failure, "kind", None), getattr(failure, "message", None)
    acc, params, flops = (metrics.get(k) for k in ("val_accuracy", "params", "flops"))
    return ParentView(
        source=source,
        id=None if cid is None else int(cid),
        val_accuracy=None if acc is None else float(acc),
        params=None if params is None else int(params),
        flops=None if flops is None else int(flops),
        failure_kind=None if kind is None else str(getattr(kind, "value", kind)),
        failure_message=None if message is None else str(message),
    )


def _sorted(parents: Sequence[Any]) -> list[ParentView]:
    views = [parent_view(p) for p in parents]
    return sorted(views, key=lambda v: -1.0 if v.val_accuracy is None else v.val_accuracy)


def _accuracy(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.4f}"


def _count(value: float | None) -> str:
    return "unknown" if value is None else f"{int(value):,}"


def _task_fields(task: Any) -> dict[str, Any]:
    get = task.get if isinstance(task, Mapping) else lambda k: getattr(task, k, None)
    shape = tuple(get("input_shape") or ())
    if not shape or get("num_classes") is None:
        raise TypeError("a task needs input_shape and num_classes")
    return {
        "name": str(get("name") or "task"),
        "description": str(get("description") or "").strip(),
        "input_shape": shape,
        "num_classes": int(get("num_classes")),
    }


def _context(task: Any, prompts_dir: str | Path | None) -> dict[str, str]:
    info = _task_fields(task)
    allowed = ", ".join(sorted(ALLOWED_IMPORTS - {"__future__"}))
    contract = render(
        "contract",
        {
            "input_shape": info["input_shape"],
            "num_classes": info["num_classes"],
            "allowed_imports": allowed,
        },
        prompts_dir,
    )
    return {
        "task_name": info["name"],
        "task_description": info["description"],
        "contract": contract,
    }


def _parents_block(views: list[ParentView], prompts_dir: str | Path | None) -> str:
    blocks = [
        render(
            "parent",
            {
                "rank": i,
                "id": "" if v.id is None else f" (#{v.id})",
                "val_accuracy": _accuracy(v.val_accuracy),
                "params": _count(v.params),
                "flops": _count(v.flops),
                "source": v.source.strip("\n"),
            },
            prompts_dir,
        )
        for i, v in enumerate(views, start=1)
    ]
    return "\n\n".join(blocks)


def _best_accuracy(views: list[ParentView]) -> float | None:
    scored = [v.val_accuracy for v in views if v.val_accuracy is not None]
    return max(scored) if scored else None


def _facts(facts: TaskFacts | None, views: list[ParentView], prompts_dir) -> str:
    if facts is None:
        return _EMPTY
    return render("facts", facts.fields(_best_accuracy(views)), prompts_dir)


def _memory(attempts: str, elites: str, prompts_dir) -> str:
    if not attempts:
        return _EMPTY
    return render("memory", {"attempts": attempts, "elites": elites or "empty"}, prompts_dir)


def _targets(views: list[ParentView], targets: str | None, facts: TaskFacts | None) -> str:
    if targets is not None:
        return targets
    triples = [(v.val_accuracy, v.params, v.flops) for v in views]
    n_val = None if facts is None else facts.n_val
    return targets_block(triples, n_val=n_val, objectives=Objectives())


_EMPTY = "\x00empty block\x00"
"""Stands for a block with no content; removed with the blank line before it."""


EMPTY_BLOCK = _EMPTY


def chat_messages(
    user: str, prompts_dir: str | Path | None, system: str = "system"
) -> list[dict[str, str]]:
    """A system message (template ``system``) and ``user``, whose :data:`EMPTY_BLOCK` fields
    are removed with the blank line before them."""
    return _messages(user, prompts_dir, system)


def _messages(
    user: str, prompts_dir: str | Path | None, system_name: str = "system"
) -> list[dict[str, str]]:
    system = render(system_name, {}, prompts_dir)
    user = user.replace("\n\n" + _EMPTY, "").replace(_EMPTY, "")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def mutation_messages(
    parents: Sequence[Any],
    task: Any,
    instruction: str,
    *,
    targets: str | None = None,
    facts: TaskFacts | None = None,
    attempts: str = "",
    elites: str = "",
    prompts_dir: str | Path | None = None,
) -> list[dict[str, str]]:
    """EvoPrompting mutation prompt: task facts, parents sorted by accuracy, the run's recent
    attempts, one instruction and the targets.

    ``targets`` is a rendered block (see :func:`llmnas.targets.targets_block`); ``None`` uses
    the default policy (accuracy first, parameters as a second objective, no caps).
    """
    if not parents:
        raise ValueError("a mutation prompt needs at least one parent")
    views = _sorted(parents)
    fields = {
        **_context(task, prompts_dir),
        "facts": _facts(facts, views, prompts_dir),
        "n_parents": len(views),
        "parents": _parents_block(views, prompts_dir),
        "memory": _memory(attempts, elites, prompts_dir),
        "targets": _targets(views, targets, facts),
        "instruction": instruction.strip().rstrip("."),
    }
    return _messages(render("mutate", fields, prompts_dir), prompts_dir)


def crossover_messages(
    parents: Sequence[Any],
    task: Any,
    *,
    targets: str | None = None,
    facts: TaskFacts | None = None,
    attempts: str = "",
    elites: str = "",
    prompts_dir: str | Path | None = None,
) -> list[dict[str, str]]:
    """Crossover prompt for exactly two parents (the weaker shown first)."""
    if len(parents) != 2:
        raise ValueError(f"a crossover prompt needs exactly two parents, got {len(parents)}")
    views = _sorted(parents)
    fields = {
        **_context(task, prompts_dir),
        "facts": _facts(facts, views, prompts_dir),
        "parents": _parents_block(views, prompts_dir),
        "memory": _memory(attempts, elites, prompts_dir),
        "targets": _targets(views, targets, facts),
    }
    return _messages(render("crossover", fields, prompts_dir), prompts_dir)


def fix_messages(
    failed: Any,
    task: Any,
    *,
    failure: Any = None,
    prompts_dir: str | Path | None = None,
) -> list[dict[str, str]]:
    """Repair prompt for a failed candidate: its source, failure kind, message and a hint.

    ``failure`` (a :class:`~llmnas.records.Failure` or a dict with ``kind`` and ``message``)
    overrides the failure read from ``failed``; one of them must carry it.
    """
    if failure is not None:
        failed = {"source": parent_view(failed).source, "failure": failure}
    view = parent_view(failed)
    if view.failure_kind is None:
        raise ValueError("a fix prompt needs a failure with a kind and a message")
    fields = {
        **_context(task, prompts_dir),
        "source": view.source.strip("\n"),
        "failure_kind": view.failure_kind,
        "failure_message": view.failure_message or "(no message)",
        "hint": FAILURE_HINTS.get(view.failure_kind, "fix the reported problem"),
    }
    return _messages(render("fix", fields, prompts_dir), prompts_dir)
