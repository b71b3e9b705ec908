"""The executor seam without a cluster: settings, bad input, and which GPU each worker sees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmnas.config import ExecutorSettings, RunConfig, load_config, validated
from llmnas.devices import child_gpu
from llmnas.executors import Executor, make_executor
from llmnas.preflight import PreflightError, preflight
from llmnas.sandbox import SandboxPool

LLMNAS = [sys.executable, "-m", "llmnas"]


def cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """The real CLI; ``code`` runs first in the same interpreter (to hide a package)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    argv = LLMNAS if code is None else [sys.executable, "-c", f"{code}; from llmnas.cli import app; app()"]  # fmt: skip
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120, env=env)


def test_configs_stored_before_the_executor_table_still_load() -> None:
    old = RunConfig().model_dump(mode="json")
    del old["executor"]
    config = validated(old)
    assert config.executor == ExecutorSettings() and config.executor.kind == "local"


def test_the_executor_table_loads_from_toml_and_the_cli_override_wins(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[executor]\nkind = "ray"\naddress = "auto"\nworkers_per_node = 4\n'
                    "num_gpus_per_worker = 0.5\n")  # fmt: skip
    config = load_config(path)
    assert config.executor.kind == "ray" and config.executor.address == "auto"
    assert config.executor.workers_per_node == 4 and config.executor.num_gpus_per_worker == 0.5
    assert config.with_overrides(executor_kind="local").executor.kind == "local"
    assert config.with_overrides(executor_kind="local").executor.workers_per_node == 4


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[executor]\nkind = "gpu"\n', "config executor.kind"),
        ("[executor]\nworkers = 2\n", "config executor.workers"),
        ("[executor]\nnum_gpus_per_worker = -1\n", "config executor.num_gpus_per_worker"),
    ],
)
def test_bad_executor_tables_name_the_key(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text(toml)
    from llmnas.config import ConfigError

    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_preflight_refuses_device_settings_that_cannot_work(synthetic) -> None:
    cases = [
        (RunConfig(executor={"num_gpus_per_worker": 1}), 'applies to kind = "ray" only'),
        (RunConfig(device="cuda:1", executor={"kind": "ray"}), "Ray chooses each worker's GPU"),
        (RunConfig(device="cuda", executor={"kind": "ray"}), "expected > 0 for device cuda"),
    ]
    for config, message in cases:
        with pytest.raises(PreflightError, match=message):
            preflight(config, "ast", synthetic)
    preflight(RunConfig(device="cuda", executor={"kind": "ray", "num_gpus_per_worker": 0.5}),
              "ast", synthetic)  # fmt: skip


def test_an_unknown_executor_is_one_line_and_exit_2(tmp_path: Path) -> None:
    res = cli("run", "--task", "synthetic", "--executor", "gpu", "--out", str(tmp_path / "r"))
    assert res.returncode == 2
    assert res.stderr.strip() == "error: --executor must be local or ray; got 'gpu'"
    assert not (tmp_path / "r").exists()


def test_ray_missing_is_one_line_and_exit_2_without_a_run_folder(tmp_path: Path) -> None:
    hide = "import sys; sys.modules['ray'] = None"  # `import ray` now raises ImportError
    res = cli("run", "--task", "synthetic", "--strategy", "ast", "--executor", "ray",
              "--out", str(tmp_path / "r"), code=hide)  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert (
        res.stderr.strip()
        == 'error: the ray executor needs the ray package: pip install -e ".[ray]"'
    )
    assert not (tmp_path / "r").exists()


def test_each_worker_sees_one_device_mapped_through_its_parents_devices() -> None:
    # a Ray actor given devices 3 and 5: its workers see 3 and 5, never 0 or 1
    assert [child_gpu("cuda", i, 2, visible="3,5") for i in range(4)] == ["3", "5", "3", "5"]
    # a fractional GPU: both workers of the actor share the one device Ray gave it
    assert [child_gpu("cuda", i, 1, visible="2") for i in range(2)] == ["2", "2"]
    assert child_gpu("cuda:1", 0, 2, visible="3,5") == "5"
    # no restriction from the parent: positions are device numbers
    assert (
        child_gpu("cuda", 1, 2, visible="") == "1" and child_gpu("cuda:4", 0, 8, visible="") == "4"
    )


def test_the_local_executor_is_the_sandbox_pool(synthetic) -> None:
    data = synthetic.load()
    arrays = {"train_x": data.train.x, "train_y": data.train.y, "val_x": data.val.x}
    with make_executor(None, data=arrays, workers=1, device="cpu") as pool:
        assert isinstance(pool, SandboxPool) and isinstance(pool, Executor)
        assert pool.size == 1 and pool.mode in ("bwrap", "rlimits")
    with pytest.raises(ValueError, match="labels other than train_y"):
        make_executor(ExecutorSettings(), data={**arrays, "val_y": data.val.y}, workers=1,
                      device="cpu")  # fmt: skip
