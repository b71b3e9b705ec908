"""Reply parsing: turn an LLM reply into candidate source code, or a ``syntax`` failure.

:func:`extract_program` handles, in this order:

1. line endings (CRLF, CR) and a byte-order mark; reasoning blocks ``<think>...</think>``
   (also ``<thinking>``/``<reasoning>``) are removed; an unmatched closing tag drops everything
   before it, an unclosed opening tag drops everything after it;
2. SEARCH/REPLACE edits (``<<<<<<< SEARCH`` / ``=======`` / ``>>>>>>> REPLACE``, inside or
   outside fences) applied in order to ``parent_source``: a block must match exactly one place,
   first verbatim, then ignoring trailing spaces, then ignoring a uniform indentation shift
   (the replacement is re-indented by the same shift); an empty SEARCH appends. A block that
   matches nowhere or in several places, an incomplete block, or edits with no parent are
   loud failures;
3. fenced blocks (backticks or tildes, any language tag or none, closing fence on its own
   line or glued to the last code line, an unclosed fence running to the end): among the
   blocks that parse and define a top-level ``class Model``, each is completed with the
   earlier Python blocks that define names it uses but lacks (imports in a block of their
   own), and the last one that is then self-contained wins (else the last one); with no such
   block, a block that mentions ``class Model`` but does not parse is a ``syntax`` failure;
   else the last block of code that parses is returned (the gate will report ``contract``);
4. raw code without fences: from the first line that starts like code (``import``, ``from``,
   ``class``, ``def``, a decorator) to the end, minus trailing prose lines (not indented, three
   or more words, no ``=`` and no call at the start), must parse as a whole;
5. otherwise: ``syntax`` failure "no code found in the reply" quoting its start.

Tabs: code that only parses with tabs expanded (4, then 8 columns) is returned expanded.
Truncated code is never patched: code that does not parse is a ``syntax`` failure, and with
``finish_reason="length"`` an unclosed fence or raw code running to the end of the reply is
one too, even if it happens to parse. Nothing here runs or imports the code.
"""

from __future__ import annotations

import ast
import builtins
import re
import textwrap
from dataclasses import dataclass

from llmnas.pyast import parse_source
from llmnas.records import Failure, FailureKind

__all__ = ["ExtractResult", "apply_search_replace", "extract_program", "strip_thinking"]

_THINK_PAIR = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.IGNORECASE | re.DOTALL)
_THINK_CLOSE = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)
_OPEN_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$")
_SEARCH = re.compile(r"^[ \t]*<{5,9}[ \t]*SEARCH[ \t]*$")
_DIVIDER = re.compile(r"^[ \t]*={5,9}[ \t]*$")
_REPLACE = re.compile(r"^[ \t]*>{5,9}[ \t]*REPLACE[ \t]*$")
_CODE_START = re.compile(
    r"^(import[ \t]+\w|from[ \t]+[\w.]+[ \t]+import[ \t]"
    r"|class[ \t]+\w|(async[ \t]+)?def[ \t]+\w|@\w)"
)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3", "pytorch", "torch"}
_KEYWORDS = {"assert", "del", "for", "if", "return", "raise", "try", "while", "with", "pass"}


@dataclass(frozen=True)
class ExtractResult:
    """``source`` on success, ``failure`` (kind ``syntax``) otherwise; ``method`` says how."""

    source: str | None
    failure: Failure | None = None
    method: str = "none"

    @property
    def ok(self) -> bool:
        return self.failure is None


def _fail(message: str, method: str = "none") -> ExtractResult:
    failure = Failure(kind=FailureKind.SYNTAX, message=message, stage="extract")
    return ExtractResult(source=None, failure=failure, method=method)


def _ok(source: str, method: str) -> ExtractResult:
    return ExtractResult(source=source.strip("\n") + "\n", method=method)


def strip_thinking(text: str) -> str:
    """``text`` without reasoning blocks (see the module docstring)."""
    text = _THINK_PAIR.sub("", text)
    closing = list(_THINK_CLOSE.finditer(text))
    if closing:
        text = text[closing[-1].end() :]
    opening = _THINK_OPEN.search(text)
    return text[: opening.start()] if opening else text


@dataclass
class _Parsed:
    code: str
    tree: ast.Module | None
    error: str


def _parse(code: str) -> _Parsed:
    variants = [code] + ([code.expandtabs(4), code.expandtabs(8)] if "\t" in code else [])
    error = ""
    for variant in variants:
        try:
            return _Parsed(variant, parse_source(variant), "")
        except SyntaxError as exc:
            error = error or f"line {exc.lineno}: {exc.msg}"
        except (ValueError, RecursionError, MemoryError) as exc:
            error = error or f"cannot parse: {type(exc).__name__}"
    return _Parsed(code, None, error)


def _defines_model(tree: ast.Module | None) -> bool:
    return tree is not None and any(
        isinstance(n, ast.ClassDef) and n.name == "Model" for n in tree.body
    )


def _has_code(tree: ast.Module | None) -> bool:
    kinds = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef, ast.Import, ast.ImportFrom)
    return tree is not None and any(isinstance(n, kinds) for n in tree.body)


def _bound_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _unbound_names(parsed: _Parsed) -> set[str]:
    tree = parsed.tree
    if tree is None:
        return set()
    loads = {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    return loads - _bound_names(tree) - set(dir(builtins))


@dataclass
class _Block:
    lang: str
    code: str
    closed: bool


def _fenced_blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        match = _OPEN_FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang = match.group(1), match.group(2).lower()
        body: list[str] = []
        closed = False
        i += 1
        while i < len(lines):
            line = lines[i]
            stripped = line.strip()
            if stripped.startswith(fence) and stripped == fence[0] * len(stripped):
                closed = True
                break
            tail = line.rstrip()
            if tail.endswith(fence) and not tail[: -len(fence)].endswith(fence[0]):
                body.append(tail[: -len(fence)])
                closed = True
                break
            body.append(line)
            i += 1
        blocks.append(_Block(lang, textwrap.dedent("\n".join(body)), closed))
        i += 1
    return blocks


def _truncated(closed: bool, finish_reason: str | None) -> bool:
    return not closed and finish_reason == "length"


def _from_blocks(blocks: list[_Block], finish_reason: str | None) -> ExtractResult | None:
    parsed = [(b, _parse(b.code)) for b in blocks if b.code.strip()]
    complete = [(i, b, p) for i, (b, p) in enumerate(parsed) if _defines_model(p.tree)]
    if complete:
        options = [(b, _with_helpers(p, parsed[:i])) for i, b, p in complete]
        block, (source, method) = next(
            (option for option in reversed(options) if not _unbound_names(option[1][0])),
            options[-1],
        )
        if _truncated(block.closed, finish_reason):
            return _fail("reply truncated at max_tokens inside the code block", "fenced")
        return _ok(source.code, method)
    broken = [(b, p) for b, p in parsed if p.tree is None and "class Model" in b.code]
    if broken:
        block, result = broken[-1]
        cut = "" if block.closed else "reply truncated (code block never closed); "
        return _fail(f"{cut}the program does not parse: {result.error}", "fenced")
    code = [(b, p) for b, p in parsed if _has_code(p.tree)]
    if code:
        block, result = code[-1]
        if _truncated(block.closed, finish_reason):
            return _fail("reply truncated at max_tokens inside the code block", "fenced")
        return _ok(result.code, "fenced")
    broken = [(b, p) for b, p in parsed if p.tree is None and b.lang in _PYTHON_TAGS - {""}]
    if broken:
        return _fail(f"the Python code block does not parse: {broken[-1][1].error}", "fenced")
    return None


def _with_helpers(chosen: _Parsed, earlier: list[tuple[_Block, _Parsed]]) -> tuple[_Parsed, str]:
    """``chosen`` preceded by the earlier Python blocks that bind names it uses but lacks."""
    missing = _unbound_names(chosen)
    helpers = [
        p.code
        for b, p in earlier
        if missing
        and b.lang in _PYTHON_TAGS
        and p.tree is not None
        and not _defines_model(p.tree)
        and _bound_names(p.tree) & missing
    ]
    if helpers:
        joined = _parse("\n\n".join([*helpers, chosen.code]))
        if _defines_model(joined.tree):
            return joined, "fenced-joined"
    return chosen, "fenced"


def _is_prose(line: str) -> bool:
    if not line.strip() or line[0] in " \t" or "=" in line:
        return False
    words = line.split()
    if len(words) < 3 or words[0] in _KEYWORDS or _CODE_START.match(line):
        return False
    return not re.match(r"^[A-Za-z_][\w.]*\(", line)


def _from_raw(text: str, finish_reason: str | None) -> ExtractResult | None:
    lines = [line for line in text.split("\n") if not _OPEN_FENCE.match(line)]
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return None
    end = len(lines)
    while end > start and (not lines[end - 1].strip() or _is_prose(lines[end - 1])):
        end -= 1
    result = _parse("\n".join(lines[start:end]))
    if result.tree is None:
        return _fail(f"the program does not parse: {result.error}", "raw")
    reached_end = all(not line.strip() for line in lines[end:])
    if _truncated(not reached_end, finish_reason):
        return _fail("reply truncated at max_tokens (code runs to the end of the reply)", "raw")
    return _ok(result.code, "raw")


def _edit_blocks(text: str) -> list[tuple[str, str]] | str:
    blocks: list[tuple[str, str]] = []
    state, search, replace = "out", [], []
    for line in text.split("\n"):
        if state == "out" and _SEARCH.match(line):
            state, search, replace = "search", [], []
        elif state == "search" and _DIVIDER.match(line):
            state = "replace"
        elif state == "replace" and _REPLACE.match(line):
            blocks.append(("\n".join(search), "\n".join(replace)))
            state = "out"
        elif state == "search":
            search.append(line)
        elif state == "replace":
            replace.append(line)
    if state != "out":
        return f"SEARCH/REPLACE block {len(blocks) + 1} is incomplete (reply cut short?)"
    return blocks


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _locate(source: list[str], search: list[str]) -> tuple[list[int], int]:
    """Start lines where ``search`` matches and the indentation shift to apply."""
    size = len(search)
    spans = range(len(source) - size + 1)
    exact = [i for i in spans if source[i : i + size] == search]
    if exact:
        return exact, 0
    trimmed = [s.rstrip() for s in search]
    loose = [i for i in spans if [s.rstrip() for s in source[i : i + size]] == trimmed]
    if loose:
        return loose, 0
    shifted, shift = [], 0
    for i in spans:
        window = source[i : i + size]
        if [w.strip() for w in window] != [s.strip() for s in search]:
            continue
        deltas = {_indent(w) - _indent(s) for w, s in zip(window, search, strict=True) if s.strip()}
        if len(deltas) == 1:
            shifted.append(i)
            shift = deltas.pop()
    return shifted, shift


def _reindent(lines: list[str], shift: int) -> list[str]:
    if shift >= 0:
        return [(" " * shift + line) if line.strip() else line for line in lines]
    return [line[min(-shift, _indent(line)) :] for line in lines]


def apply_search_replace(parent_source: str, text: str) -> ExtractResult:
    """Apply the SEARCH/REPLACE blocks in ``text`` to ``parent_source`` (see module doc)."""
    blocks = _edit_blocks(text)
    if isinstance(blocks, str):
        return _fail(blocks, "search-replace")
    if not blocks:
        return _fail("no complete SEARCH/REPLACE block found", "search-replace")
    source = parent_source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, (search, replace) in enumerate(blocks, start=1):
        if not search.strip():
            source = source + replace.split("\n")
            continue
        wanted = search.split("\n")
        starts, shift = _locate(source, wanted)
        first = wanted[0].strip() or next((w.strip() for w in wanted if w.strip()), "")
        if not starts:
            return _fail(
                f"SEARCH/REPLACE block {number} does not match the parent program "
                f"(its SEARCH part starts with {first[:80]!r})",
                "search-replace",
            )
        if len(starts) > 1:
            return _fail(
                f"SEARCH/REPLACE block {number} matches {len(starts)} places in the parent "
                f"program (starting with {first[:80]!r}); it must match exactly one",
                "search-replace",
            )
        new = _reindent(replace.split("\n"), shift) if replace else []
        source = source[: starts[0]] + new + source[starts[0] + len(wanted) :]
    result = _parse("\n".join(source))
    if result.tree is None:
        return _fail(f"the edited program does not parse: {result.error}", "search-replace")
    return _ok(result.code, "search-replace")


def extract_program(
    reply: str, parent_source: str | None = None, *, finish_reason: str | None = None
) -> ExtractResult:
    """The candidate program in ``reply`` (see the module docstring for every rule).

    ``parent_source`` is needed only for SEARCH/REPLACE replies; ``finish_reason`` is the
    completion's (``"length"`` marks a reply cut at ``max_tokens``).
    """
    text = strip_thinking(reply.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n"))
    if any(_SEARCH.match(line) for line in text.split("\n")):
        if parent_source is None:
            return _fail("the reply has SEARCH/REPLACE edits but there is no parent program")
        return apply_search_replace(parent_source, text)
    blocks = _fenced_blocks(text)
    result = _from_blocks(blocks, finish_reason) if blocks else None
    if result is None:
        result = _from_raw(text, finish_reason)
    if result is None:
        snippet = " ".join(text.split())[:160] or "(empty reply)"
        return _fail(f"no code found in the reply: {snippet!r}")
    return result
