"""The package's layering (docs/ARCHITECTURE.md, "Layers"): imports point downward only.

Every import of an ``llmnas`` module counts, at module level or inside a function; imports
under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "llmnas"

FORBIDDEN = {
    # ground floor: plain data, the static gate, settings, tasks and NB201 cells
    ("records", "gate", "config", "tasks", "nb201_cell", "archive_config", "devices", "pyast"): (
        "spaces", "strategies", "operators", "archive", "islands", "store", "loop", "runner",
        "evaluator", "cascade", "bench", "report", "ui", "executors",
    ),
    # proposal side: strategies and operators never reach into evaluation or the loop
    ("strategies", "operators", "spaces"): ("loop", "runner", "evaluator", "store", "bench", "ui"),
    # the trust boundary knows nothing of what happens to its results
    ("sandbox",): ("store", "strategies", "operators", "loop", "runner", "archive", "bench", "ui",
                   "executors"),
    # executors carry sandbox jobs to where they run; what happens to the results is not theirs
    ("executors",): ("store", "strategies", "operators", "loop", "runner", "archive", "bench",
                     "evaluator", "pipeline", "cascade", "ui"),
    # the explorer only reads stores: it never runs, searches or evaluates anything
    ("ui",): ("loop", "runner", "evaluator", "sandbox", "strategies", "operators", "bench", "cascade",
              "executors"),
}  # fmt: skip


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _type_checking(node)
            for n in ast.walk(node)}  # fmt: skip
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("llmnas")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llmnas"):
            base = node.module or ""
            for alias in node.names:  # `from llmnas import prompting` names a module
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known}


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    return {m: _imports(p, known) - {m} for m, p in files.items()}


def _top(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_layers_import_downward_only() -> None:
    graph = _graph()
    bad = []
    for lower, upper in FORBIDDEN.items():
        for module, deps in graph.items():
            if _top(module) in lower:
                bad += [f"{module} -> {d}" for d in sorted(deps) if _top(d) in upper]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    graph = _graph()
    pairs = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps
                    if a in graph.get(b, set())})  # fmt: skip
    assert not pairs, f"mutual imports: {pairs}"


def test_no_module_is_longer_than_400_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}  # fmt: skip
    assert not long, long


def test_the_wheel_lists_every_package_and_the_top_level_prompts() -> None:
    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {_module(p.parent / "__init__.py") for p in PACKAGE.rglob("__init__.py")}
    assert set(project["packages"]) == found | {"llmnas.prompts"}
    assert project["package-dir"] == {"llmnas.prompts": "prompts"}
    from llmnas.prompting import PROMPTS_DIR

    assert PROMPTS_DIR.resolve() == (PACKAGE.parent / "prompts").resolve()
