"""Consoles and the one-line error exit shared by the command-line modules."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["err", "fail", "out"]

err = Console(stderr=True, soft_wrap=True)  # messages with paths stay on one line
out = Console()


def fail(message: str) -> NoReturn:
    """Bad user input: one line on stderr naming what was expected, exit code 2."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)
