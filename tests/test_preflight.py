"""Bad settings get one line naming the key, exit code 2 and no run folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmnas.cli import app
from llmnas.config import RunConfig
from llmnas.preflight import PreflightError, preflight
from llmnas.tasks import get_task

CASES = {
    "cascade typo": ("regevo", "[cascade]\nkeep_topp = 0.5\n",
                     "config cascade.keep_topp: unknown key; expected some of: "),
    "regevo unknown option": ("regevo", "[strategy_options]\npopulation = 5\n",
                              "strategy_options.population: unknown key for strategy regevo"),
    "regevo bad value": ("regevo", "[strategy_options]\npopulation_size = 0\n",
                         "strategy_options.population_size: Input should be greater than or "
                         "equal to 1 (given 0)"),
    "random unknown option": ("random", "[strategy_options]\nsample_size = 3\n",
                              "unknown key for strategy random"),
    "ast takes no options": ("ast", "[strategy_options]\nunique = true\n",
                             "unknown key for strategy ast; expected some of: none"),
    "space options": ("random", '[strategy_options]\nspace = "chain"\n'
                      "space_options = {max_depth = 0}\n", "need 1 <= min_depth <= max_depth"),
    "archive bins": ("regevo", "[archive]\nbins = [10]\n",
                     "config archive: bins must be one positive int or 2 of them, got [10]"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_setting_is_one_line_exit_2_and_no_folder(tmp_path: Path, case: str) -> None:
    """Through the CLI in-process (the subprocess path of exit 2 is tested in test_loop.py)."""
    strategy, toml, expected = CASES[case]
    config = tmp_path / "run.toml"
    config.write_text(toml)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--task", "synthetic", "--strategy", strategy,
                                      "--budget", "2", "--config", str(config), "--out", str(out)])  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not out.exists()


def test_good_settings_pass() -> None:
    config = RunConfig.model_validate({
        "cascade": {"keep_top": 0.5, "prefilter": "synflow"},
        "strategy_options": {"space": "chain", "space_options": {"max_depth": 3},
                             "population_size": 4},
    })  # fmt: skip
    preflight(config, "regevo", get_task("synthetic"))
    preflight(RunConfig(), "llm", get_task("nb201-cifar10"))
    with pytest.raises(PreflightError, match="for strategy random"):
        preflight(config, "random", get_task("synthetic"))


def test_a_task_whose_data_cannot_load_is_one_line_exit_2(tmp_path: Path, monkeypatch) -> None:
    """CIFAR-10 with no torchvision, or no data and no network here: one line, no folder."""
    monkeypatch.setenv("LLMNAS_DATA", str(tmp_path / "data"))
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["run", "--task", "cifar10", "--budget", "1", "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "task cifar10" in lines[0], result.stderr
    assert not out.exists()
