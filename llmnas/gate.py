"""Static gate: the checks a candidate passes before any code of it runs.

1. parse (``syntax``), with a size limit;
2. the ``if __name__ == "__main__":`` blocks at module level are dropped (never run);
3. import policy (``import``): only torch, numpy and the standard modules a model needs;
   the builtins that reach outside the program (``exec``, ``eval``, ``open``, ``__import__``,
   ...) and dunder attributes that reach interpreter internals are refused;
4. contract (``contract``): a top-level ``class Model`` deriving from a ``Module`` with
   ``__init__(self, input_shape, num_classes)`` and ``forward``;
5. a normalised-AST hash (docstrings, comments and formatting removed) for deduplication.

The gate is a filter for honest mistakes and cheap tricks, not the security boundary: that is
the sandbox. Nothing here imports or executes the candidate.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass

from llmnas.pyast import parse_source
from llmnas.records import Failure, FailureKind

__all__ = ["ALLOWED_IMPORTS", "GateResult", "MAX_SOURCE_BYTES", "check", "normalised_hash"]

MAX_SOURCE_BYTES = 100_000

ALLOWED_IMPORTS = frozenset(
    {
        "torch",
        "numpy",
        "math",
        "typing",
        "collections",
        "functools",
        "itertools",
        "dataclasses",
        "numbers",
        "operator",
        "enum",
        "abc",
        "copy",
        "__future__",
    }
)
"""Top-level modules a candidate may import (submodules of these are allowed too)."""

FORBIDDEN_NAMES = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "open",
        "__import__",
        "breakpoint",
        "input",
        "globals",
        "locals",
        "vars",
        "memoryview",
        "__builtins__",
        "__loader__",
        "__spec__",
    }
)

FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "__globals__",
        "__subclasses__",
        "__builtins__",
        "__code__",
        "__closure__",
        "__dict__",
        "__getattribute__",
        "__mro__",
        "__bases__",
        "__base__",
        "__import__",
        "__loader__",
        "__reduce__",
        "__reduce_ex__",
        "f_globals",
        "f_locals",
        "f_back",
        "gi_frame",
        "cr_frame",
    }
)


@dataclass(frozen=True)
class GateResult:
    """``source`` is the program that will run (main-guard blocks removed)."""

    source: str
    hash: str
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def _fail(source: str, kind: FailureKind, message: str) -> GateResult:
    return GateResult(
        source=source,
        hash=_raw_hash(source),
        failure=Failure(kind=kind, message=message, stage="gate"),
    )


def _raw_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8", "replace")).hexdigest()


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    sides = [test.left, *test.comparators]
    has_name = any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
    has_main = any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)
    return has_name and has_main


def _strip_main_guard(source: str, tree: ast.Module) -> tuple[str, ast.Module]:
    guards = [n for n in tree.body if _is_main_guard(n)]
    if not guards:
        return source, tree
    lines = source.splitlines(keepends=True)
    for node in reversed(guards):
        del lines[node.lineno - 1 : node.end_lineno]
    stripped = "".join(lines)
    return stripped, parse_source(stripped)


def _policy_violation(tree: ast.Module) -> str | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top not in ALLOWED_IMPORTS:
                    return f"import of {alias.name!r} is not allowed (allowed: {_allowed()})"
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                return "relative imports are not allowed: a candidate is a single file"
            top = (node.module or "").split(".")[0]
            if top not in ALLOWED_IMPORTS:
                return f"import from {node.module!r} is not allowed (allowed: {_allowed()})"
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            return f"use of {node.id!r} is not allowed in a candidate"
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            return f"access to attribute {node.attr!r} is not allowed in a candidate"
        elif isinstance(node, (ast.Global, ast.Nonlocal)) and "__builtins__" in node.names:
            return "rebinding __builtins__ is not allowed"
    return None


def _allowed() -> str:
    return ", ".join(sorted(ALLOWED_IMPORTS - {"__future__"}))


def _contract_violation(tree: ast.Module) -> str | None:
    models = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Model"]
    if not models:
        return "no top-level class named Model (expected: class Model(torch.nn.Module))"
    cls = models[-1]
    base_names = [ast.unparse(b) for b in cls.bases]
    if not any(b.split(".")[-1] == "Module" for b in base_names):
        got = ", ".join(base_names) or "no base class"
        return f"Model must derive from torch.nn.Module (got: {got})"
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
    init = methods.get("__init__")
    if init is None:
        return "Model must define __init__(self, input_shape, num_classes)"
    args = init.args
    positional = [a.arg for a in args.posonlyargs + args.args]
    if positional[:3] != ["self", "input_shape", "num_classes"]:
        got = ", ".join(positional) or "nothing"
        return f"Model.__init__ must take (self, input_shape, num_classes); got ({got})"
    required_extra = len(positional) - 3 - len(args.defaults)  # defaults cover the last ones
    if required_extra > 0:
        return "Model.__init__ may take extra parameters only with default values"
    if any(d is None for d in args.kw_defaults):
        return "Model.__init__ keyword-only parameters need default values"
    if "forward" not in methods:
        return "Model must define forward(self, x)"
    return None


def check(source: str) -> GateResult:
    """Run every static check; the first failure wins."""
    if not isinstance(source, str) or not source.strip():
        return _fail(source or "", FailureKind.SYNTAX, "empty program")
    if len(source.encode("utf-8", "replace")) > MAX_SOURCE_BYTES:
        return _fail(source, FailureKind.SYNTAX, f"program larger than {MAX_SOURCE_BYTES} bytes")
    source = (
        source.replace("\r\n", "\n").expandtabs(8) if "\r" in source or "\t" in source else source
    )
    try:
        tree = parse_source(source)
    except SyntaxError as exc:
        return _fail(source, FailureKind.SYNTAX, f"line {exc.lineno}: {exc.msg}")
    except (ValueError, RecursionError, MemoryError) as exc:
        return _fail(source, FailureKind.SYNTAX, f"cannot parse: {type(exc).__name__}")
    source, tree = _strip_main_guard(source, tree)
    problem = _policy_violation(tree)
    if problem:
        return _fail(source, FailureKind.IMPORT, problem)
    problem = _contract_violation(tree)
    if problem:
        return _fail(source, FailureKind.CONTRACT, problem)
    return GateResult(source=source, hash=normalised_hash(tree))


class _StripDocstrings(ast.NodeTransformer):
    def _strip(self, node: ast.AST) -> ast.AST:
        self.generic_visit(node)
        body = getattr(node, "body", None)
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
        return node

    visit_Module = visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _strip


def normalised_hash(program: str | ast.Module) -> str:
    """sha256 of the AST without docstrings, comments, formatting or main-guard blocks."""
    tree = parse_source(program) if isinstance(program, str) else program
    tree = _StripDocstrings().visit(parse_source(ast.unparse(tree)))
    tree.body = [n for n in tree.body if not _is_main_guard(n)]
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()
