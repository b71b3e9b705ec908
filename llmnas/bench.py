"""``llmnas bench``: a grid of runs (strategy x seed) under equal budgets, then a final evaluation.

Each cell is an ordinary resumable run in ``<out>/<strategy>-<seed>/``; an interrupted bench
resumes where it stopped (finished cells are skipped, partial ones resumed). Then the incumbent
of every cell (chosen on validation only) is retrained with the task's full recipe for
``final_seeds`` seeds and scored **once** on the test split (cached in ``<cell>/final.json``).
Tabular tasks have no training: their final number is the table's validation accuracy. The
report (:mod:`llmnas.report`) goes to ``<out>/``. Example ``bench.toml``::

    task = "nb201-cifar10"
    strategies = ["random", "regevo", {name = "llm-4o", strategy = "llm", llm = "openai:gpt-4o"}]
    seeds = 10            # a count, or a list such as [0, 1, 2]
    budget = 100          # evaluations per cell
    out = "archive/bench-nb201"
    [run]                 # extra RunConfig fields for every cell
    timeout_s = 300
"""

from __future__ import annotations

import json
import os
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from rich.console import Console

from llmnas.config import ConfigError, RunConfig, validated
from llmnas.report_data import CELL_FILE, FINAL_FILE, read_json
from llmnas.store import RunStore, StoreError

__all__ = [
    "Anchor",
    "BenchConfig",
    "BenchError",
    "Cell",
    "StrategyEntry",
    "final_evaluation",
    "load_bench",
    "run_bench",
    "run_grid",
]

_BENCH_OWNED = ("task", "strategy", "budget", "seed", "out", "workers", "epochs", "wall_time_s")


class BenchError(ValueError):
    """A bench configuration or state problem; the message is one line."""


class StrategyEntry(BaseModel):
    """One row of the grid: a strategy, optionally with an LLM backend and its own settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("", pattern=r"^[A-Za-z0-9_.-]*$")
    strategy: Literal["ast", "random", "regevo", "darts", "llm"]
    llm: str | None = Field(None, description="LLM spec; {seed} becomes the cell's seed")
    run: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.strategy


class Anchor(BaseModel):
    """A published number shown beside the results, with how its protocol differs from ours."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    value: str
    protocol: str


class BenchConfig(BaseModel):
    """A parsed ``bench.toml``; unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    strategies: list[StrategyEntry] = Field(min_length=1)
    seeds: int | list[int]
    budget: int = Field(ge=1, description="evaluations per cell, whatever their fate")
    out: str
    workers: int = Field(1, ge=1)
    epochs: int | None = Field(None, ge=0, description="search epochs (default: task recipe)")
    wall_time_s: float | None = Field(None, gt=0)
    final_seeds: int = Field(3, ge=1)
    final_epochs: int | None = Field(None, ge=1, description="default: the task's full recipe")
    final_timeout_s: float = Field(3600.0, gt=0)
    run: dict[str, Any] = Field(default_factory=dict)
    notes: str = Field("", description="free text copied into the report")
    anchors: list[Anchor] = Field(default_factory=list, description="published reference numbers")

    @field_validator("strategies", mode="before")
    @classmethod
    def _entries(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"strategy": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, int) and value < 1:
            raise ValueError("seeds must be a positive count or a non-empty list of ints")
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("seeds must be a non-empty list of distinct ints")
        return value

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def cell_config(self, entry: StrategyEntry, seed: int) -> RunConfig:
        """The run config of one cell: ``[run]``, then the entry's ``run``, then the grid."""
        data: dict[str, Any] = {**self.run, **entry.run}
        data.update(
            task=self.task,
            strategy=entry.strategy, budget=self.budget, seed=seed,
            out=str(Path(self.out) / f"{entry.label}-{seed}"),
            workers=self.workers, epochs=self.epochs, wall_time_s=self.wall_time_s,
        )  # fmt: skip
        if entry.llm is not None:
            spec = entry.llm.replace("{seed}", str(seed))
            data["llm"] = {**data.get("llm", {}), "spec": spec}
        return validated(data)


def _one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "bench"
    if first["type"] == "extra_forbidden":
        return f"bench.toml: unknown key {where!r}"
    if first["type"] == "missing":
        return f"bench.toml: missing required key {where!r}"
    return f"bench.toml {where}: {first['msg']}"


def _cassettes_beside(config: BenchConfig, folder: Path) -> BenchConfig:
    """``replay:`` paths that exist relative to the config's folder are made relative to here."""
    entries = []
    for e in config.strategies:
        kind, _, target = (e.llm or "").partition(":")
        first = target.replace("{seed}", str(config.seed_list[0]))
        if kind == "replay" and not Path(first).is_absolute() and (folder / first).is_file():
            e = e.model_copy(update={"llm": "replay:" + os.path.relpath(folder / target)})
        entries.append(e)
    return config.model_copy(update={"strategies": entries})


def load_bench(path: str | Path) -> BenchConfig:
    """Parse and check a ``bench.toml``; :class:`BenchError` (one line) on any problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"bench config {str(path)!r} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"bench config {str(path)!r} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(BenchConfig.model_fields))
    if unknown:
        raise BenchError(f"bench.toml: unknown key {unknown[0]!r}; expected some of "
                         f"{', '.join(BenchConfig.model_fields)}")  # fmt: skip
    try:
        config = BenchConfig.model_validate(data)
    except ValidationError as exc:
        raise BenchError(_one_line(exc)) from None
    config = _cassettes_beside(config, path.parent)
    labels = [e.label for e in config.strategies]
    if len(set(labels)) != len(labels):
        raise BenchError(f"bench.toml strategies: names must be distinct, got {labels}")
    for entry in config.strategies:
        clash = sorted(set(_BENCH_OWNED) & (set(config.run) | set(entry.run)))
        if clash:
            raise BenchError(f"bench.toml: set {clash[0]!r} at the top level, not in a [run] table")
        if entry.llm is not None and entry.strategy != "llm":
            raise BenchError(f"bench.toml strategy {entry.label!r}: 'llm' needs strategy = 'llm'")
        try:
            config.cell_config(entry, config.seed_list[0])
        except ConfigError as exc:
            raise BenchError(f"bench.toml [run]: {exc}") from None
    return config


@dataclass
class Cell:
    """One run of the grid and what became of it."""

    entry: StrategyEntry
    seed: int
    dir: Path
    state: Literal["finished", "unavailable", "incomplete"] = "incomplete"
    message: str = ""

    @property
    def label(self) -> str:
        return f"{self.entry.label}-{self.seed}"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def _stored_finished(cell: Cell, wanted: RunConfig) -> bool:
    """Check that an existing cell was run with the bench's settings; is it finished?"""
    try:
        with RunStore.open(cell.dir, read_only=True) as store:
            stored, count = store.config(), store.count()
    except StoreError as exc:
        raise BenchError(str(exc)) from None
    for key in ("task", "strategy", "budget", "seed", "epochs"):
        if stored.get(key) != getattr(wanted, key):
            raise BenchError(
                f"cell {cell.dir} was run with {key}={stored.get(key)!r} but the bench asks for "
                f"{getattr(wanted, key)!r}; use a new 'out' folder"
            )
    done = read_json(cell.dir / CELL_FILE) or {}
    cell.message = done.get("stopped") or f"budget of {count} candidates reached"
    return count >= wanted.budget or done.get("stopped") not in (None, "", "interrupted")


def _run_cell(cell: Cell, config: BenchConfig, on_progress) -> str:
    """Start or resume one cell (skipped when finished); returns the loop's stop reason."""
    from llmnas.runner import RunError, resume_run, start_run

    wanted = config.cell_config(cell.entry, cell.seed)
    started, resumed = time.time(), (cell.dir / "run.sqlite").exists()
    try:
        if resumed:
            if _stored_finished(cell, wanted):
                cell.state = "finished"
                return cell.message
            stats = resume_run(cell.dir, on_progress=on_progress)
        else:
            stats = start_run(wanted, on_progress=on_progress)
    except RunError as exc:
        cell.state, cell.message = "unavailable", str(exc)
        return "unavailable"
    if stats.stopped != "interrupted":
        record = {"stopped": stats.stopped, "committed": stats.committed, "started": started,
                  "resumed": resumed, "at": time.time()}  # fmt: skip
        _write_json(cell.dir / CELL_FILE, record)
        cell.state, cell.message = "finished", stats.stopped
    return stats.stopped


def run_grid(config: BenchConfig, console: Console) -> tuple[list[Cell], bool]:
    """Run every cell in turn; returns the cells and whether the grid was interrupted."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cells = [
        Cell(entry, seed, Path(config.out) / f"{entry.label}-{seed}")
        for entry in config.strategies
        for seed in config.seed_list
    ]
    columns = (
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    progress = Progress(TextColumn("{task.fields[what]:>16}"), *columns, console=console)
    grid = progress.add_task("", total=len(cells), what="bench grid")
    current = progress.add_task("", total=config.budget, what="")

    def update(stats) -> None:
        best = "-" if stats.best_val is None else f"{stats.best_val:.3f}"
        progress.update(current, completed=stats.committed, description=f"best val {best}")

    with progress:
        for i, cell in enumerate(cells):
            progress.update(current, completed=0, what=cell.label, description="")
            if _run_cell(cell, config, update) == "interrupted":
                return cells, True
            if cell.state == "unavailable" or not console.is_terminal:  # a log gets a line
                console.print(f"{cell.label}: {cell.state} ({cell.message})", highlight=False)
            progress.update(grid, completed=i + 1)
    return cells, False


def _final_job(evaluator, source: str, settings) -> dict[str, Any]:
    result = evaluator.evaluate(source, settings)
    m, failure = result.metrics, result.failure
    return {
        "seed": settings.seed, "status": result.status.value,
        "failure": None if failure is None else f"{failure.kind.value}: {failure.message}",
        "test_accuracy": m.get("test_accuracy"), "val_accuracy": m.get("val_accuracy"),
        "train_seconds": m.get("train_seconds"),
    }  # fmt: skip


def final_evaluation(cells: list[Cell], config: BenchConfig, console: Console) -> None:
    """Retrain and test each finished cell's incumbent once (cached in ``final.json``)."""
    from llmnas.evaluator import EvalSettings, Evaluator
    from llmnas.inspect_run import best
    from llmnas.tasks import get_task

    task = get_task(config.task)
    epochs = config.final_epochs or task.recipe.full_epochs
    seeds = list(range(config.final_seeds))
    todo: list[tuple[Cell, Any, dict]] = []
    for cell in cells:
        if cell.state != "finished":
            continue
        with RunStore.open(cell.dir, read_only=True) as store:
            inc = best(store)
        if inc is None:
            _write_json(cell.dir / FINAL_FILE, {"incumbent_id": None, "runs": []})
            continue
        head = {
            "incumbent_id": inc.id, "hash": inc.hash, "val_accuracy": inc.val_accuracy,
            "params": inc.result.metrics.get("params"), "flops": inc.result.metrics.get("flops"),
            "mode": "tabular" if task.tabular else "trained",
            "epochs": None if task.tabular else epochs, "seeds": [] if task.tabular else seeds,
        }  # fmt: skip
        cached = read_json(cell.dir / FINAL_FILE)
        if cached is not None and all(cached.get(k) == v for k, v in head.items()):
            continue
        if task.tabular:  # no training and no separate test split: the table's number
            _write_json(cell.dir / FINAL_FILE, {**head, "runs": [], "final": inc.val_accuracy})
        else:
            todo.append((cell, inc, head))
    if not todo:
        return
    jobs = [(c, inc, head, s) for c, inc, head in todo for s in seeds]
    console.print(
        f"final evaluation: {len(todo)} incumbent(s) x {len(seeds)} seed(s), {epochs} epochs, "
        "scored once on the test split"
    )
    device, memory = config.run.get("device", "cpu"), config.run.get("memory_mb", 4096)
    kw = {"epochs": epochs, "predict_test": True, "timeout_s": config.final_timeout_s}
    with Evaluator(task, workers=config.workers, device=device) as ev:
        with ThreadPoolExecutor(config.workers) as pool:
            futures = [
                (c, head, pool.submit(_final_job, ev, inc.source,
                                      EvalSettings(**kw, seed=s, memory_mb=memory)))
                for c, inc, head, s in jobs
            ]  # fmt: skip
            done: dict[str, list[dict]] = {}
            for cell, head, fut in futures:
                runs = done.setdefault(cell.label, [])
                runs.append(fut.result())
                if len(runs) == len(seeds):
                    scores = [r["test_accuracy"] for r in runs if r["test_accuracy"] is not None]
                    final = sum(scores) / len(scores) if scores else None
                    _write_json(cell.dir / FINAL_FILE, {**head, "runs": runs, "final": final})
                    console.print(f"  {cell.label}: test accuracy {final}")


def run_bench(
    path: str | Path, console: Console | None = None, out: str | Path | None = None
) -> Path | None:
    """Run (or resume) the bench in ``path`` and write its report; returns ``report.md``,
    or ``None`` when the grid was interrupted (run it again to resume). ``out`` replaces the
    config's ``out`` folder."""
    from llmnas.report import write_report

    console = console or Console(stderr=True)
    config = load_bench(path)
    if out is not None:
        config = config.model_copy(update={"out": str(out)})
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    cells, interrupted = run_grid(config, console)
    if interrupted:
        again = f"llmnas bench --config {path}" + (f" --out {out}" if out else "")
        console.print(f"bench interrupted; run `{again}` again to resume")
        return None
    final_evaluation(cells, config, console)
    report = write_report(config, cells, out)
    console.print(f"bench done in {time.monotonic() - started:.0f} s; report: {report}")
    return report
