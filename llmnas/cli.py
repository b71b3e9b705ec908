"""The ``llmnas`` command line (typer + rich). Contracts are in the README and DESIGN.

Bad input gets one line on stderr naming what was expected, and exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["app", "fail"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="LLM-driven evolutionary neural architecture search over PyTorch source code.",
)
err = Console(stderr=True)
out = Console()


@app.callback()
def _root() -> None:
    """LLM-driven evolutionary neural architecture search over PyTorch source code."""


def fail(message: str) -> NoReturn:
    """Bad user input: one line, exit code 2."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _proxies(text: str) -> tuple[str, ...]:
    from llmnas.proxies import parse_proxy_selection

    try:
        return tuple(parse_proxy_selection(text))
    except ValueError as exc:
        fail(str(exc))


@app.command()
def evaluate(
    files: list[Path] = typer.Argument(..., help="candidate programs (.py)"),
    task: str = typer.Option(..., "--task", help="task name, e.g. mnist1d"),
    epochs: int | None = typer.Option(
        None, help="training epochs (default: task recipe; 0: build and proxies only)"
    ),
    timeout: float = typer.Option(600.0, help="wall-time limit per candidate, seconds"),
    memory_mb: int = typer.Option(4096, "--memory-mb", help="memory limit per candidate, MB"),
    device: str = typer.Option("cpu", help="auto, cpu, cuda or cuda:N"),
    proxies: str = typer.Option("none", help="all, none, or a comma-separated list"),
    workers: int = typer.Option(1, min=1, help="sandbox workers sharing the machine"),
    seed: int | None = typer.Option(None, help="training seed (default: the task recipe's)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per file, one per line"),
) -> None:
    """Evaluate candidate programs in the sandbox and print their scores."""
    from llmnas.evaluator import EvalSettings, Evaluator, resolve_device
    from llmnas.tasks import TaskError, get_task

    for f in files:
        if not f.is_file():
            fail(f"expected a readable .py file, got {str(f)!r} (not found)")
    if epochs is not None and epochs < 0:
        fail(f"--epochs must be >= 0, got {epochs}")
    if timeout <= 0 or memory_mb <= 0:
        fail("--timeout and --memory-mb must be positive")
    try:
        the_task = get_task(task)
        resolved = resolve_device(device)
        the_task.load()
    except (TaskError, ValueError) as exc:
        fail(str(exc))
    settings = EvalSettings(
        epochs=epochs,
        timeout_s=timeout,
        memory_mb=memory_mb,
        proxies=_proxies(proxies),
        seed=seed,
    )
    sources = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    with Evaluator(the_task, workers=workers, device=resolved, settings=settings) as ev:
        if as_json:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers) as pool:
                for f, result in zip(files, pool.map(ev.evaluate, sources), strict=True):
                    sys.stdout.write(json.dumps(result.contract_dict(str(f))) + "\n")
                    sys.stdout.flush()
            return
        from rich.progress import Progress

        results = []
        with Progress(console=err, transient=True) as progress:
            bar = progress.add_task(f"evaluating on {task} ({ev.isolation})", total=len(files))
            for source in sources:
                results.append(ev.evaluate(source))
                progress.advance(bar)
    _print_table(files, results, task)


def _print_table(files, results, task: str) -> None:
    table = Table(title=f"llmnas evaluate --task {task}")
    for col in ("file", "status", "val acc", "params", "FLOPs", "train s", "failure"):
        table.add_column(
            col, justify="right" if col in {"val acc", "params", "FLOPs", "train s"} else "left"
        )
    for f, r in zip(files, results, strict=True):
        m = r.metrics
        acc = m.get("val_accuracy")
        table.add_row(
            str(f),
            r.status.value,
            "-" if acc is None else f"{acc:.3f}",
            f"{m['params']:,}" if "params" in m else "-",
            f"{m['flops']:,}" if "flops" in m else "-",
            f"{m.get('train_seconds', 0):.1f}",
            "" if r.failure is None else f"{r.failure.kind.value}: {r.failure.message[:80]}",
        )
    out.print(table)


def main() -> None:  # pragma: no cover - console entry point
    app()
