"""Rendering an edited syntax tree back to source: missing imports, unparse, line wrapping.

``ast.unparse`` drops comments and writes each call on one line; long ``nn.Sequential(...)``
and ``SkipAdd(...)`` calls are then put one argument per line so edited candidates stay
readable for people and for the LLM operators that read them back.
"""

from __future__ import annotations

import ast

from llmnas.pyast import parse_source

__all__ = ["to_source"]


def _bound(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
    return names


def add_missing_imports(tree: ast.Module) -> None:
    """Import ``torch`` / ``nn`` when the code uses them without binding them."""
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    bound, missing = _bound(tree), []
    if "torch" in used and "torch" not in bound:
        missing.append("import torch")
    if "nn" in used and "nn" not in bound:
        missing.append("from torch import nn")
    if missing:
        at = 0
        for i, node in enumerate(tree.body):
            if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                i == 0 and isinstance(node, ast.Expr)
            ):
                at = i + 1
        tree.body[at:at] = parse_source("\n".join(missing)).body


def to_source(tree: ast.Module) -> str:
    """The program's source, with missing imports added and long layer lists wrapped."""
    add_missing_imports(tree)
    source = ast.unparse(ast.fix_missing_locations(tree))
    wrapped = "\n".join(_wrap(line) for line in source.splitlines())
    try:
        same = ast.dump(parse_source(wrapped)) == ast.dump(parse_source(source))
    except SyntaxError:
        same = False
    return (wrapped if same else source) + "\n"


def _wrap(line: str, limit: int = 100) -> str:
    """Put the arguments of a long ``Sequential(...)``/``SkipAdd(...)`` one per line."""
    if len(line) <= limit:
        return line
    start = max(line.find("Sequential("), line.find("SkipAdd("))
    if start < 0:
        return line
    open_at = line.index("(", start)
    parts, depth, quote, last = [], 0, "", open_at + 1
    for i in range(open_at, len(line)):
        ch = line[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                parts.append(line[last:i].strip())
                close_at = i
                break
        elif ch == "," and depth == 1:
            parts.append(line[last:i].strip())
            last = i + 1
    else:
        return line
    indent = " " * (len(line) - len(line.lstrip()))
    inner = [_wrap(f"{indent}    {part},", limit) for part in parts if part]
    tail = _wrap(f"{indent}){line[close_at + 1 :]}", limit)
    return "\n".join([line[: open_at + 1], *inner, tail])
