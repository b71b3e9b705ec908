"""``llmnas archive list|show|best|export|lineage RUN``: inspect a stored run.

With ``--json``, ``list`` prints one object per candidate per line and ``best`` one object
with ``id`` and ``metrics`` (see DESIGN, command line). Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from llmnas.cli_common import err, fail, out
from llmnas.store import StoreError

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Inspect a run: candidates, elites, lineage, export.")

RUN = typer.Argument(..., help="the run folder, e.g. archive/NAME")
JSON = typer.Option(False, "--json", help="machine-readable output")


def _open(run_dir: Path):
    from llmnas.inspect_run import open_run

    try:
        return open_run(run_dir)
    except StoreError as exc:
        fail(str(exc))


def _pick(store, candidate: int | None, run_dir: Path):
    """The candidate with this id, or the incumbent; one line and exit 2 when there is none."""
    from llmnas.inspect_run import best

    if candidate is None:
        inc = best(store)
        if inc is None:
            fail(f"run {run_dir} has no successfully evaluated candidate yet")
        return inc
    try:
        return store.get(candidate)
    except StoreError as exc:
        fail(str(exc))


def _emit(obj) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


@app.command("list")
def list_(run_dir: Path = RUN, as_json: bool = JSON) -> None:
    """Every candidate: operator, parents, status, failure, accuracy, size."""
    from llmnas.inspect_run import list_rows

    with _open(run_dir) as store:
        rows = list_rows(store)
    if as_json:
        for r in rows:
            _emit(r)
        return
    table = Table(title=f"{run_dir}: {len(rows)} candidates")
    for col in ("id", "gen", "operator", "parents", "status", "val acc", "params", "failure"):
        table.add_column(col)
    for r in rows:
        failure = (
            ""
            if r["failure_kind"] is None
            else f"{r['failure_kind']}: {(r['failure_message'] or '')[:60]}"
        )
        table.add_row(
            str(r["id"]),
            str(r["generation"]),
            r["operator"],
            ",".join(map(str, r["parent_ids"])),
            r["status"],
            _fmt(r["val_accuracy"]),
            _fmt(r["params"], ","),
            failure,
        )
    out.print(table)


@app.command()
def show(
    run_dir: Path = RUN,
    as_json: bool = JSON,
    heatmap: Path | None = typer.Option(None, help="PNG path (default: RUN/heatmap.png)"),
) -> None:
    """Summary: counts by status and failure kind, coverage, QD-score, elites, heatmap PNG."""
    from collections import Counter

    from llmnas.archive import ArchiveError
    from llmnas.heatmap import save_heatmap
    from llmnas.inspect_run import best, rebuild_archive, repeated
    from llmnas.llm.base import estimate_tokens

    with _open(run_dir) as store:
        cands = store.candidates()
        archive = rebuild_archive(store)
        inc = best(store)
        rep = repeated(store).get(inc.id) if inc is not None else None
        config = store.config()
        calls = store.llm_calls()
    statuses = Counter(c.status.value for c in cands)
    failures = Counter(c.result.failure.kind.value for c in cands if c.result.failure)
    by_op = Counter(c.operator for c in cands)
    valid_by_op = Counter(c.operator for c in cands if c.status.value == "ok")
    by_instr = Counter(c.meta.get("instruction") for c in cands if c.meta.get("instruction"))
    valid_by_instr = Counter(
        c.meta.get("instruction")
        for c in cands
        if c.meta.get("instruction") and c.status.value == "ok"
    )
    png = heatmap or Path(run_dir) / "heatmap.png"
    try:
        save_heatmap(archive, png)
        png_path: str | None = str(png)
    except ArchiveError as exc:
        png_path = None
        err.print(f"no heatmap: {exc}")
    tokens = sum(
        (c.get("usage") or {}).get("prompt_tokens", 0)
        + (c.get("usage") or {}).get("completion_tokens", 0)
        for c in calls
    )
    summary = {
        "run": str(run_dir),
        "task": config.get("task"),
        "strategy": config.get("strategy"),
        "candidates": len(cands),
        "status": dict(statuses),
        "failures": dict(failures),
        "valid_rate_by_operator": {op: valid_by_op[op] / n for op, n in by_op.items()},
        "valid_rate_by_instruction": {i: valid_by_instr[i] / n for i, n in by_instr.items()},
        "elites": len(archive),
        "coverage": archive.coverage,
        "qd_score": archive.qd_score,
        "best": None
        if inc is None
        else {"id": inc.id, "metrics": inc.result.metrics, "repeats": rep and rep.as_dict()},
        "llm_calls": len(calls),
        "llm_tokens": tokens,
        "distinct_prompts": len({c.get("prompt_sha256") for c in calls}),
        "prompt_tokens_est": sum(estimate_tokens(c.get("messages") or []) for c in calls),
        "reply_tokens_est": sum(estimate_tokens(c.get("replies") or []) for c in calls),
        "heatmap": png_path,
    }
    if as_json:
        _emit(summary)
        return
    table = Table(title=f"{run_dir} — task {summary['task']}, strategy {summary['strategy']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("candidates", str(len(cands)))
    for status, n in sorted(statuses.items()):
        table.add_row(f"  {status}", str(n))
    for kind, n in sorted(failures.items()):
        table.add_row(f"  failure: {kind}", str(n))
    for op, rate in sorted(summary["valid_rate_by_operator"].items()):
        table.add_row(f"  valid rate, {op}", f"{rate:.0%} of {by_op[op]}")
    for instr, rate in sorted(summary["valid_rate_by_instruction"].items()):
        table.add_row(f"  valid rate, '{instr[:40]}'", f"{rate:.0%} of {by_instr[instr]}")
    table.add_row("elites", str(len(archive)))
    table.add_row("coverage", f"{archive.coverage:.1%}")
    table.add_row("QD-score", f"{archive.qd_score:.3f}")
    if inc is not None:
        score = f"{inc.val_accuracy:.3f} (#{inc.id}, one training)"
        if rep is not None:
            score = f"{rep.mean:.3f} ± {rep.std:.3f} (#{inc.id}, {rep.n} training seeds)"
        table.add_row("best val accuracy", score)
        table.add_row("best params", f"{inc.result.metrics.get('params', 0):,}")
    table.add_row("LLM calls / tokens", f"{len(calls)} / {tokens:,}")
    if calls:
        table.add_row("  distinct prompts", f"{summary['distinct_prompts']} of {len(calls)}")
        est = f"{summary['prompt_tokens_est']:,} / {summary['reply_tokens_est']:,}"
        table.add_row("  prompt / reply tokens (chars/4)", est)
    table.add_row("heatmap", png_path or "-")
    out.print(table)


@app.command("best")
def best_(run_dir: Path = RUN, as_json: bool = JSON) -> None:
    """The incumbent, chosen on validation accuracy: the best mean over repeated trainings
    when the run has repeats, else the best single run."""
    from llmnas.inspect_run import best, repeated

    with _open(run_dir) as store:
        inc = best(store)
        rep = repeated(store).get(inc.id) if inc is not None else None
    if inc is None:
        fail(f"run {run_dir} has no successfully evaluated candidate yet")
    obj = {
        "id": inc.id,
        "operator": inc.operator,
        "parent_ids": inc.parent_ids,
        "metrics": inc.result.metrics,
        "repeats": None if rep is None else rep.as_dict(),
    }
    if as_json:
        _emit(obj)
        return
    score = f"val accuracy {inc.val_accuracy:.3f} (one training)"
    if rep is not None:
        score = f"val accuracy {rep.mean:.3f} ± {rep.std:.3f} over {rep.n} training seeds"
    out.print(
        f"best candidate #{inc.id} ({inc.operator}): {score}, "
        f"params {inc.result.metrics.get('params', 0):,}"
    )
    out.print(inc.source)


@app.command()
def repeat(
    run_dir: Path = RUN,
    top_k: int = typer.Option(1, min=0, help="repeat the k most accurate candidates"),
    seeds: int = typer.Option(3, min=2, help="trainings per candidate, the first included"),
    pareto: bool = typer.Option(False, help="also repeat the accuracy/params Pareto front"),
    workers: int = typer.Option(1, min=1, help="sandbox workers"),
) -> None:
    """Train a finished run's best candidates again with other training seeds (resumable)."""
    from llmnas.evaluator import EvalSettings, Evaluator
    from llmnas.inspect_run import best, repeated
    from llmnas.repeats import run_repeats
    from llmnas.store import RunStore, StoreError
    from llmnas.tasks import TaskError, get_task

    try:
        store = RunStore.open(run_dir)
    except StoreError as exc:
        fail(str(exc))
    config = store.config()
    try:
        task = get_task(config["task"])
    except TaskError as exc:
        store.close()
        fail(str(exc))
    if task.tabular:
        store.close()
        fail(f"run {run_dir} is on the tabular task {task.name}: there is nothing to retrain")
    base = task.recipe.seed
    settings = EvalSettings(
        epochs=config.get("epochs"),
        timeout_s=config.get("timeout_s", 600.0),
        memory_mb=config.get("memory_mb", 4096),
    )

    def progress(done: int, total: int) -> None:
        err.print(f"repeat {done}/{total}", highlight=False)

    with store, Evaluator(task, workers=workers, device=config.get("device", "cpu")) as ev:
        ran = run_repeats(
            store,
            ev,
            settings,
            top_k=top_k,
            seeds=seeds,
            pareto=pareto,
            base_seed=base,
            on_progress=progress,
        )
        inc = best(store)
        rep = repeated(store).get(inc.id) if inc is not None else None
    err.print(f"{ran} training(s) run")
    if inc is not None and rep is not None:
        out.print(
            f"incumbent #{inc.id}: val accuracy {rep.mean:.4f} ± {rep.std:.4f} over {rep.n} "
            f"training seeds, params {inc.result.metrics.get('params', 0):,}"
        )


@app.command()
def lineage(
    run_dir: Path = RUN,
    candidate: int | None = typer.Argument(None, help="candidate id (default: the incumbent)"),
    as_json: bool = JSON,
    full: bool = typer.Option(False, "--full", help="also print each step's prompt and reply"),
) -> None:
    """Ancestry of a candidate, with the operator, edit or prompt behind each step."""
    from llmnas.inspect_run import lineage as trace

    with _open(run_dir) as store:
        steps = trace(store, _pick(store, candidate, run_dir).id)
    if as_json:
        for step in steps:
            _emit(step)
        return
    for step in steps:
        how = step["instruction"] or step["edit"] or ""
        calls = ", ".join(f"#{i}" for i in step["llm_call_ids"])
        how += f"  (LLM call {calls})" if calls else ""
        out.print(
            f"#{step['id']} gen {step['generation']} {step['operator']:9} "
            f"parents {step['parent_ids']} {step['status']} val {_fmt(step['val_accuracy'])} "
            f"params {_fmt(step['params'], ',')}  {how}",
            highlight=False, markup=False, emoji=False,
        )  # fmt: skip
        for part in ("prompt", "reply") if full else ():
            if step[part]:  # untrusted text: printed as it is, never as markup
                out.rule(f"{part} of #{step['id']}", style="dim")
                out.print(step[part], highlight=False, markup=False, emoji=False)


@app.command()
def export(
    run_dir: Path = RUN,
    candidate: int | None = typer.Argument(None, help="candidate id (default: the incumbent)"),
    to: Path = typer.Option(Path("export"), "--to", help="output folder"),
    weights: bool = typer.Option(
        True, help="retrain with the run's recipe and save safetensors weights"
    ),
) -> None:
    """Write a candidate as a standalone .py plus trained weights (safetensors)."""
    from llmnas.evaluator import EvalSettings, Evaluator
    from llmnas.inspect_run import export as write
    from llmnas.tasks import get_task

    with _open(run_dir) as store:
        cand = _pick(store, candidate, run_dir)
        candidate = cand.id
        config = store.config()
        blob = None
        if weights:
            task = get_task(config["task"])
            if task.tabular:
                fail("tabular tasks have no trained weights; use --no-weights")
            settings = EvalSettings(
                epochs=config.get("epochs"), save_weights=True, seed=config.get("seed")
            )
            with Evaluator(task, device=config.get("device", "cpu"), settings=settings) as ev:
                result, blob = ev.evaluate_with_weights(cand.source)
            if not result.ok:
                fail(f"candidate #{candidate} did not retrain: {result.failure.message}")
        paths = write(store, candidate, to, blob)
    for p in paths:
        out.print(str(p))
    if blob is not None:
        out.print(
            "load with: model = Model(input_shape, num_classes); "
            "model.load_state_dict(safetensors.torch.load_file(PATH))",
            highlight=False,
        )


@app.command()
def cassette(
    run_dir: Path = RUN,
    to: Path = typer.Option(..., "--to", help="output .jsonl, usable as --llm replay:FILE"),
) -> None:
    """Export every successful LLM call of a run as a replay cassette."""
    from llmnas.llm.recording import export_cassette

    with _open(run_dir) as store:
        lines = export_cassette(store.llm_calls(), to)
    out.print(f"wrote {lines} completions to {to} (replay with --llm replay:{to})")
