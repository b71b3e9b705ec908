"""Untrusted text made safe for HTML: highlighted source and diffs (Pygments, difflib).

Every function here takes text a candidate or a model wrote and returns markup in which that
text is escaped: Pygments' HTML formatter and difflib's ``HtmlDiff`` both escape ``<``, ``>``
and ``&`` in the text they wrap. Templates mark only these results as safe.
"""

from __future__ import annotations

import difflib
import html
from functools import lru_cache

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer, PythonLexer

__all__ = ["code_html", "diff_html", "pygments_css", "side_by_side_html", "unified_diff"]

_FORMATTER = HtmlFormatter(cssclass="code", linenos="table", wrapcode=True)
_DIFF_FORMATTER = HtmlFormatter(cssclass="code diff", wrapcode=True)


def code_html(source: str) -> Markup:
    """Python source with syntax highlighting and line numbers."""
    return Markup(highlight(source, PythonLexer(), _FORMATTER))


def unified_diff(a: str, b: str, *, a_name: str, b_name: str, context: int = 3) -> str:
    """A unified diff from ``a`` to ``b`` (plain text, for the API)."""
    lines = difflib.unified_diff(
        a.splitlines(keepends=True), b.splitlines(keepends=True),
        fromfile=a_name, tofile=b_name, n=context,
    )  # fmt: skip
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def diff_html(a: str, b: str, *, a_name: str, b_name: str) -> Markup:
    """A highlighted unified diff; says so when the two texts are the same."""
    text = unified_diff(a, b, a_name=a_name, b_name=b_name)
    if not text:
        text = f"(no difference between {a_name} and {b_name})\n"
    return Markup(highlight(text, DiffLexer(), _DIFF_FORMATTER))


def side_by_side_html(a: str, b: str, *, a_name: str, b_name: str) -> Markup:
    """Two sources side by side with changed lines marked (difflib's HTML table)."""
    table = difflib.HtmlDiff(tabsize=4, wrapcolumn=72).make_table(
        a.splitlines(),
        b.splitlines(),
        fromdesc=html.escape(a_name),
        todesc=html.escape(b_name),
        context=False,
    )  # the descriptions are not escaped by difflib; the lines are
    return Markup(table)


@lru_cache(maxsize=1)
def pygments_css() -> str:
    """The stylesheet for highlighted code and diffs."""
    return _FORMATTER.get_style_defs(".code")
