"""``llmnas bench --config bench.toml``: the benchmark grid, final evaluation and report.

Registered on the main app in :mod:`llmnas.cli` with ``app.command("bench")(cli_bench.bench)``.
Progress goes to stderr; the per-strategy summary table to stdout. Bad configs exit with code 2
and one line naming what was expected; an interrupted bench exits with code 130 and resumes
where it stopped when run again.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from llmnas.cli_common import err, fail, out

__all__ = ["bench"]


def _summary(report_md: Path) -> None:
    data = json.loads(report_md.with_name("report.json").read_text())
    metric = data["final_protocol"]["metric"]
    table = Table(title=f"bench {data['task']['name']}: final {metric}")
    for col in ("strategy", "runs", "mean ± std", "valid-code rate", "QD-score", "LLM tokens"):
        table.add_column(col, justify="right")
    for s in data["strategies"]:
        mean, std = s["final_mean"], s["final_std"]
        qd = s["qd_score"][0]
        table.add_row(
            s["strategy"],
            f"{s['finished']}/{s['cells']}",
            "-" if mean is None else f"{mean:.4f} ± {std:.4f}",
            "-" if s["valid_rate"] is None else f"{s['valid_rate']:.1%}",
            "-" if qd is None else f"{qd:.2f}",
            f"{s['tokens']:,}" if s["tokens"] else "-",
        )
    out.print(table)
    out.print(f"report: {report_md}")


def bench(
    config: Path = typer.Option(..., "--config", help="bench.toml: task, strategies, seeds, ..."),
    out_dir: Path | None = typer.Option(
        None, "--out", help="folder for the runs and the report (default: the config's out)"
    ),
) -> None:
    """Benchmark strategies under equal budgets: a grid of runs, a final evaluation of each
    incumbent on the test split (once), and a report with statistics and plots."""
    from llmnas.bench import BenchError, run_bench

    try:
        report = run_bench(config, console=err, out=out_dir)
    except BenchError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        again = f"llmnas bench --config {config}" + (f" --out {out_dir}" if out_dir else "")
        err.print(f"interrupted; run `{again}` again to resume")
        raise typer.Exit(130) from None
    if report is None:
        raise typer.Exit(130)
    _summary(report)
