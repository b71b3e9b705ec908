"""The ``llmnas`` command line (typer + rich). Contracts are in the README and DESIGN.

Bad input gets one line on stderr naming what was expected, and exit code 2. A run that stops
because its LLM stayed unavailable past ``[llm] patience_s`` exits with code 75 (EX_TEMPFAIL)
after saying how to resume; an interrupted run exits 0 and says the same.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from llmnas import cli_archive, cli_bench, cli_ui
from llmnas.cli_common import err, fail, out

__all__ = ["EXIT_LLM_DOWN", "app", "fail"]

EXIT_LLM_DOWN = 75
"""Exit code of a run stopped by an LLM outage (resumable)."""

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="LLM-driven evolutionary neural architecture search over PyTorch source code.",
)


@app.callback()
def _root() -> None:
    """LLM-driven evolutionary neural architecture search over PyTorch source code."""


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
    from llmnas.devices import resolve_device
    from llmnas.evaluator import EvalSettings, Evaluator
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


# ---------------------------------------------------------------------- run and resume


def _progress_runner(budget: int):
    """A rich live display: a progress bar plus best accuracy, coverage, tokens, failures."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]evolving"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err,
    )
    bar = progress.add_task("", total=budget)

    def update(stats) -> None:
        best = "-" if stats.best_val is None else f"{stats.best_val:.3f} (#{stats.best_id})"
        fails = ", ".join(f"{k} {v}" for k, v in sorted(stats.failures.items())) or "none"
        tokens = f" | tokens {stats.tokens:,} ${stats.cost:.3f}" if stats.tokens else ""
        line = f"best val {best} | coverage {stats.coverage:.0%}{tokens} | failures: {fails}"
        progress.update(bar, completed=stats.committed, description=line)
        if not err.is_terminal:  # a log file or a pipe: one plain line per candidate
            total = progress.tasks[0].total
            err.print(f"[{stats.committed}/{total:g}] {line}", highlight=False, soft_wrap=True)

    return progress, update


def _where(config) -> str:
    ex = config.executor
    if ex.kind == "local":
        return ""
    return f", executor ray ({ex.address or 'a local Ray'})"


def _run_and_report(start) -> None:
    from llmnas.runner import RunError

    progress, update = _progress_runner(0)
    holder = {}

    def ready(run, why: str) -> None:
        holder["run"] = run
        if why:
            err.print(why)
        err.print(
            f"run {run.store.run_dir}: task {run.config.task}, strategy {run.strategy_name}, "
            f"budget {run.config.budget}, seed {run.config.seed}, "
            f"{run.evaluator.workers} worker(s), "
            f"sandbox {run.evaluator.isolation}{_where(run.config)}"
        )
        progress.update(progress.task_ids[0], total=run.config.budget)
        progress.start()

        def repeat_progress(done: int, total: int) -> None:
            if done == 1:
                progress.stop()  # the bar is done; plain lines from here
            err.print(f"repeating the best: training {done}/{total}", highlight=False)

        run.on_repeat = repeat_progress

    try:
        stats = start(ready, update)
    except RunError as exc:
        progress.stop()
        fail(str(exc))
    finally:
        progress.stop()
    run = holder["run"]
    err.print(f"stopped: {stats.stopped}", markup=False, emoji=False, highlight=False,
              soft_wrap=True)  # fmt: skip
    if stats.wall_seconds > 0:
        busy = stats.busy_seconds / (stats.wall_seconds * run.evaluator.workers)
        err.print(f"{stats.evaluated} evaluated in {stats.wall_seconds:.0f} s; sandbox workers "
                  f"busy {busy:.0%} of the time", highlight=False)  # fmt: skip
    if stats.outages:
        err.print(f"the LLM was unavailable {stats.outages} time(s), "
                  f"{stats.outage_seconds:.0f} s in all", highlight=False)  # fmt: skip
    if stats.stopped == "interrupted" or stats.llm_down:
        err.print(f"resume with: llmnas resume {run.store.run_dir}")
    _summary(run.store.run_dir)
    if stats.llm_down:
        raise typer.Exit(EXIT_LLM_DOWN)


def _summary(run_dir: Path) -> None:
    from llmnas.inspect_run import best, open_run, rebuild_archive, repeated

    with open_run(run_dir) as store:
        cands = store.candidates()
        archive = rebuild_archive(store)
        inc = best(store)
        rep = repeated(store).get(inc.id) if inc is not None else None
        ok = sum(c.status.value == "ok" for c in cands)
    score = "-" if inc is None else f"{inc.val_accuracy:.3f}"
    if rep is not None:
        score = f"{rep.mean:.3f} ± {rep.std:.3f} (n={rep.n})"
    table = Table(title=f"archive {run_dir}")
    for col in (
        "candidates",
        "ok",
        "elites",
        "coverage",
        "QD-score",
        "best val acc",
        "best id",
        "params",
    ):
        table.add_column(col, justify="right")
    table.add_row(
        str(len(cands)),
        str(ok),
        str(len(archive)),
        f"{archive.coverage:.1%}",
        f"{archive.qd_score:.2f}",
        score,
        "-" if inc is None else str(inc.id),
        "-" if inc is None else f"{inc.result.metrics.get('params', 0):,}",
    )
    out.print(table)


@app.command()
def run(
    task: str | None = typer.Option(
        None, help="task name (mnist1d, digits, cifar10, synthetic, nb201-*)"
    ),
    strategy: str | None = typer.Option(None, help="auto, llm, ast, random, regevo or darts"),
    budget: int | None = typer.Option(None, help="candidates to record"),
    seed: int | None = typer.Option(None, help="seed of every random choice in the run"),
    out_dir: Path | None = typer.Option(None, "--out", help="run folder, e.g. archive/NAME"),
    llm: str | None = typer.Option(
        None, "--llm", help="openai:MODEL, hf:PATH, replay:FILE.jsonl or manual:DIR"
    ),
    llm_url: str | None = typer.Option(
        None, "--llm-url", help="base URL of an OpenAI-compatible server"
    ),
    epochs: int | None = typer.Option(
        None, help="training epochs per candidate (default: task recipe)"
    ),
    workers: int | None = typer.Option(None, help="sandbox workers"),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or cuda:N"),
    max_cost: float | None = typer.Option(
        None, "--max-cost", help="stop when the LLM cost reaches this many dollars"
    ),
    max_tokens: int | None = typer.Option(
        None, "--max-tokens", help="stop when the LLM used this many tokens"
    ),
    prompts: Path | None = typer.Option(
        None, "--prompts", help="folder of prompt templates overriding the shipped ones"
    ),
    wall_time: float | None = typer.Option(
        None, "--wall-time", help="stop after this many seconds"
    ),
    proxies: str | None = typer.Option(
        None, help="zero-cost proxies recorded for every candidate: all, none or a,b"
    ),
    executor: str | None = typer.Option(
        None, "--executor", help="local (this machine) or ray (sandbox pools in Ray actors)"
    ),
    config: Path | None = typer.Option(None, "--config", help="TOML file with run settings"),
) -> None:
    """Run an architecture search and print the archive summary."""
    from llmnas.config import STRATEGIES, ConfigError, load_config
    from llmnas.runner import start_run

    if strategy is not None and strategy not in STRATEGIES:
        fail(f"--strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    if executor is not None and executor not in ("local", "ray"):
        fail(f"--executor must be local or ray; got {executor!r}")
    try:
        cfg = load_config(config).with_overrides(
            task=task,
            strategy=strategy,
            budget=budget,
            seed=seed,
            out=None if out_dir is None else str(out_dir),
            epochs=epochs,
            workers=workers,
            device=device,
            wall_time_s=wall_time,
            proxies=None if proxies is None else list(_proxies(proxies)),
            llm_spec=llm,
            llm_url=llm_url,
            llm_max_cost=max_cost,
            llm_max_tokens_total=max_tokens,
            llm_prompts=None if prompts is None else str(prompts),
            executor_kind=executor,
        )
    except ConfigError as exc:
        fail(str(exc))
    if prompts is not None and not prompts.is_dir():
        fail(f"--prompts must be a folder of templates, got {str(prompts)!r}")
    _run_and_report(lambda ready, update: start_run(cfg, ready, update))


@app.command()
def resume(run_dir: Path = typer.Argument(..., help="the run folder, e.g. archive/NAME")) -> None:
    """Continue a stopped or killed run; nothing committed is lost or trained twice."""
    from llmnas.runner import resume_run

    _run_and_report(lambda ready, update: resume_run(run_dir, ready, update))


app.add_typer(cli_archive.app, name="archive")
app.command("bench")(cli_bench.bench)
app.command("ui")(cli_ui.ui)
