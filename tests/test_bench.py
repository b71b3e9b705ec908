"""``llmnas bench``: config parsing, the grid, resume, the final protocol and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from llmnas.bench import BenchError, load_bench, run_bench
from llmnas.cli_bench import bench
from llmnas.report import mann_whitney, pareto_front
from llmnas.spaces import space_of
from llmnas.store import RunStore

NB201 = """
task = "nb201-cifar10"
strategies = ["random", "regevo", {{name = "llm-none", strategy = "llm"}}]
seeds = 3
budget = 15
out = "{out}"
"""


def write(tmp: Path, text: str, name: str = "bench.toml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def snapshot(out: Path) -> dict[str, object]:
    """Everything a re-run must leave alone: candidate counts, cell and final records."""
    state: dict[str, object] = {}
    for cell in sorted(p for p in out.iterdir() if (p / "run.sqlite").exists()):
        with RunStore.open(cell, read_only=True) as store:
            state[cell.name] = store.count()
        for name in ("cell.json", "final.json"):
            state[f"{cell.name}/{name}"] = (cell / name).read_text()
    return state


@pytest.fixture()
def no_llm_env(monkeypatch):
    for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.slow
def test_nb201_grid_report_and_resume(tmp_path: Path, no_llm_env) -> None:
    out = tmp_path / "out"
    path = write(tmp_path, NB201.format(out=out))
    report = run_bench(path)
    assert report == out / "report.md"
    for name in ("report.md", "report.json", "anytime_evals.png", "anytime_time.png",
                 "pareto.png", "final.png"):  # fmt: skip
        assert (out / name).is_file(), name
    data = json.loads((out / "report.json").read_text())
    by = {s["strategy"]: s for s in data["strategies"]}
    assert by["random"]["finished"] == by["regevo"]["finished"] == 3
    assert by["random"]["evaluations"] == 45 and 0 < by["random"]["valid_rate"] <= 1
    assert all(0.0 < v <= 1.0 for v in by["regevo"]["final"])
    assert by["llm-none"]["finished"] == 0 and "--llm" in by["llm-none"]["unavailable"][0]
    (test,) = [t for t in data["tests"] if {t["a"], t["b"]} == {"random", "regevo"}]
    assert 0.0 < test["p"] <= 1.0 and test["min_p"] == pytest.approx(0.1)
    checklist = data["checklist"]
    assert "search seeds [0, 1, 2]" in checklist["Seeds"]
    assert "tabular" in checklist["Test split used only once"]
    assert "torch" in checklist["Library versions"] and "cpu_count" in checklist["Hardware"]
    final = json.loads((out / "random-0" / "final.json").read_text())
    assert final["mode"] == "tabular" and final["final"] == final["val_accuracy"]
    md = report.read_text()
    assert "Mann-Whitney" in md and f"{test['p']:.4f}" in md and "Caveat" in md
    assert "Lindauer & Hutter" in md and "unavailable" in md
    assert "no separate test split" in md

    before, report_json = snapshot(out), (out / "report.json").read_text()
    run_bench(path)  # finished cells are not run again: nothing in them changes
    assert snapshot(out) == before
    assert (out / "report.json").read_text() == report_json


@pytest.mark.slow
def test_partial_cell_is_resumed(tmp_path: Path, no_llm_env) -> None:
    from llmnas.runner import start_run

    out = tmp_path / "out"
    path = write(
        tmp_path, NB201.format(out=out).replace(', {name = "llm-none", strategy = "llm"}', "")
    )
    config = load_bench(path)
    holder = {}

    def stop_early(stats) -> None:
        if stats.committed >= 5:
            holder["run"].loop.stop()

    stats = start_run(
        config.cell_config(config.strategies[0], 0),
        on_ready=lambda run, why: holder.setdefault("run", run),
        on_progress=stop_early,
    )
    assert stats.stopped == "interrupted" and 5 <= stats.committed < 15
    run_bench(path)
    with RunStore.open(out / "random-0", read_only=True) as store:
        assert store.count() == 15
    assert json.loads((out / "random-0" / "cell.json").read_text())["committed"] == 15


SYNTHETIC = """
task = "synthetic"
strategies = ["ast", {{strategy = "random", run = {{strategy_options = {{space_options = {{preset = "tiny"}}}}}}}}]
seeds = 1
budget = 3
epochs = 1
final_seeds = 1
final_epochs = 2
out = "{out}"
[run]
timeout_s = 60
"""


@pytest.mark.slow
def test_synthetic_trains_incumbents_on_test_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_bench(write(tmp_path, SYNTHETIC.format(out=out)))
    data = json.loads((out / "report.json").read_text())
    assert data["final_protocol"] == {"metric": "test accuracy", "epochs": 2, "seeds": 1}
    assert data["test_split_in_search"] is False
    for cell in ("ast-0", "random-0"):
        final = json.loads((out / cell / "final.json").read_text())
        assert final["mode"] == "trained" and final["epochs"] == 2 and len(final["runs"]) == 1
        assert final["runs"][0]["status"] == "ok" and 0.0 <= final["final"] <= 1.0
        with RunStore.open(out / cell, read_only=True) as store:
            assert not any("test_accuracy" in c.result.metrics for c in store.candidates())
    assert (
        "yes: no search candidate has a test metric"
        in data["checklist"]["Test split used only once"]
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'strategies = ["random"]\nseeds = 2\nbudget = 3\nout = "x"',
            "missing required key 'task'",
        ),
        (
            'task = "synthetic"\nstrategies = ["random"]\nseeds = 2\nbudget = 3\nout = "x"\nbugdet = 4',
            "unknown key 'bugdet'",
        ),
        (
            'task = "synthetic"\nstrategies = ["sgd"]\nseeds = 2\nbudget = 3\nout = "x"',
            "strategies",
        ),
        ('task = "synthetic"\nstrategies = ["random"]\nseeds = 0\nbudget = 3\nout = "x"', "seeds"),
        (
            'task = "synthetic"\nstrategies = ["random", "random"]\nseeds = 1\nbudget = 3\nout = "x"',
            "distinct",
        ),
        (
            'task = "synthetic"\nstrategies = ["random"]\nseeds = 1\nbudget = 3\nout = "x"\n[run]\nbudget = 5',
            "top level",
        ),
        (
            'task = "synthetic"\nstrategies = ["random"]\nseeds = 1\nbudget = 3\nout = "x"\n[run]\nworkerz = 5',
            "[run]",
        ),
        (
            'task = "synthetic"\nstrategies = [{strategy = "ast", llm = "openai:x"}]\nseeds = 1\nbudget = 3\nout = "x"',
            "strategy = 'llm'",
        ),
        ("task = ", "not valid TOML"),
    ],
)
def test_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(BenchError, match=None) as info:
        load_bench(write(tmp_path, text))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_seed_forms_and_entries(tmp_path: Path) -> None:
    text = 'task = "synthetic"\nstrategies = ["ast", {name = "g", strategy = "llm", llm = "replay:r.jsonl"}]\nseeds = [3, 7]\nbudget = 3\nout = "o"'
    config = load_bench(write(tmp_path, text))
    assert config.seed_list == [3, 7] and [e.label for e in config.strategies] == ["ast", "g"]
    cell = config.cell_config(config.strategies[1], 7)
    assert cell.strategy == "llm" and cell.llm.spec == "replay:r.jsonl" and cell.seed == 7
    assert cell.out == str(Path("o") / "g-7")


def test_cli_exit_codes(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(bench)
    runner = CliRunner()
    result = runner.invoke(app, ["--config", str(write(tmp_path, 'task = "synthetic"\nfoo = 1'))])
    assert result.exit_code == 2 and "unknown key 'foo'" in result.output
    result = runner.invoke(app, ["--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "not found" in result.output


def test_statistics_helpers() -> None:
    assert mann_whitney([0.1, 0.2, 0.3], [0.4, 0.5, 0.6])["p"] == pytest.approx(0.1)
    tied = mann_whitney([0.5, 0.5], [0.7, 0.7])
    assert tied["p"] >= tied["min_p"] == pytest.approx(1 / 3)
    assert mann_whitney([0.5], [])["p"] is None
    assert pareto_front([10, 5, 20, 5], [0.5, 0.4, 0.9, 0.45]) == [(5, 0.45), (10, 0.5), (20, 0.9)]


def test_llm_cell_reports_tokens_and_model(tmp_path: Path) -> None:
    """An ``llm`` entry with its own backend (a replay cassette of NB201 programs): its tokens
    and model reach the report, and a cassette that runs dry ends the cell cleanly."""
    import random

    from llmnas.tasks import get_task

    space, rng = space_of(get_task("nb201-cifar10")), random.Random(0)
    cassette = tmp_path / "replay.jsonl"
    with cassette.open("w") as f:
        for _ in range(4):
            reply = f"```python\n{space.render(space.sample(rng))}\n```"
            f.write(
                json.dumps({"response": reply, "prompt_tokens": 100, "completion_tokens": 50})
                + "\n"
            )
    out = tmp_path / "out"
    text = f'task = "nb201-cifar10"\nstrategies = [{{name = "llm-replay", strategy = "llm", llm = "replay:{cassette}"}}]\nseeds = 1\nbudget = 8\nout = "{out}"'
    run_bench(write(tmp_path, text))
    data = json.loads((out / "report.json").read_text())
    (llm,) = data["strategies"]
    assert llm["finished"] == 1 and llm["tokens"] == 4 * 150 and llm["models"]
    assert "exhausted" in json.loads((out / "llm-replay-0" / "cell.json").read_text())["stopped"]
    assert "600 tokens" in data["checklist"]["LLM models and tokens"]
