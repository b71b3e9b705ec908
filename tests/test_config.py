from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmnas.config import ConfigError, RunConfig, load_config

DOC = Path(__file__).resolve().parent.parent / "docs" / "CONFIG.md"


def test_documented_example_is_a_valid_config(tmp_path):
    example = re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S).group(1)
    path = tmp_path / "run.toml"
    path.write_text(example)
    config = load_config(path)
    defaults = RunConfig()
    assert config.model_dump(exclude={"out"}) == defaults.model_dump(exclude={"out"})


def test_overrides_and_errors(tmp_path):
    config = RunConfig().with_overrides(
        task="digits", budget=7, llm_spec="replay:x.jsonl", epochs=None
    )
    assert (config.task, config.budget, config.llm.spec, config.epochs) == (
        "digits",
        7,
        "replay:x.jsonl",
        None,
    )
    with pytest.raises(ConfigError, match="budget"):
        RunConfig().with_overrides(budget=0)
    bad = tmp_path / "bad.toml"
    bad.write_text("[archive]\ndescriptors = ['colour']\n")
    with pytest.raises(ConfigError, match="descriptors"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_keys_moved_from_llm_to_evolution_still_load() -> None:
    from llmnas.config import RunConfig

    old = RunConfig.model_validate({"llm": {"crossover_rate": 0.5, "fix_rate": 0.0, "parents": 3}})
    assert (old.evolution.crossover_rate, old.evolution.fix_rate, old.evolution.parents) == (
        0.5, 0.0, 3,
    )  # fmt: skip
    new = RunConfig.model_validate({"evolution": {"parents": 4}, "llm": {"parents": 3}})
    assert new.evolution.parents == 4  # the [evolution] value wins
    assert "parents" not in RunConfig().llm.model_dump()
