"""Shared fixtures: one warm sandbox pool and evaluator on the synthetic task per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OPENAI_API_KEY", "sk-llmnas-test-secret-do-not-leak")


@pytest.fixture(scope="session")
def synthetic():
    from llmnas.tasks import get_task

    return get_task("synthetic")


@pytest.fixture(scope="session")
def evaluator(synthetic):
    from llmnas.evaluator import EvalSettings, Evaluator

    with Evaluator(synthetic, workers=1, settings=EvalSettings(timeout_s=60)) as ev:
        yield ev


def _modes() -> list[str]:
    from llmnas.sandbox.isolation import bwrap_path

    return ["bwrap", "rlimits"] if bwrap_path() else ["rlimits"]


@pytest.fixture(scope="session", params=_modes())
def pool(request, synthetic):
    """A pool per isolation mode: runs sources without the static gate (adversarial tests).

    Every test that uses it runs under bubblewrap (when it works here) and in the degraded
    rlimits + audit-hooks mode."""
    from llmnas.sandbox import SandboxPool

    data = synthetic.load()
    arrays = {"train_x": data.train.x, "train_y": data.train.y, "val_x": data.val.x}
    with SandboxPool(data=arrays, isolation=request.param) as p:
        yield p


@pytest.fixture()
def run_raw(pool, synthetic):
    """Run a source in the sandbox *without* the gate; returns the ChildReport."""
    from dataclasses import asdict

    def run(source: str, *, epochs: int = 0, timeout: float = 30.0, memory_mb: int = 2048):
        job = {
            "source": source,
            "input_shape": list(synthetic.input_shape),
            "num_classes": synthetic.num_classes,
            "recipe": asdict(synthetic.recipe),
            "epochs": epochs,
            "proxies": [],
            "predict": ["val"],
            "timeout": timeout,
            "memory_mb": memory_mb,
        }
        n_val = len(synthetic.load().val.y)
        return pool.run(job, expect={"val": n_val}, num_classes=synthetic.num_classes)

    return run


@pytest.fixture(scope="session")
def ui_runs(tmp_path_factory):
    """Real runs for the explorer's tests (see tests/ui_support.py)."""
    try:
        from tests.ui_support import make_runs
    except ImportError:  # tests/ is not a package: pytest put it on sys.path
        from ui_support import make_runs
    root = tmp_path_factory.mktemp("ui") / "runs"
    root.mkdir()
    return root, make_runs(root)


@pytest.fixture(scope="session")
def ui_server(ui_runs):
    """``llmnas ui`` over ``ui_runs`` on a free loopback port; yields its base URL."""
    try:
        from tests.ui_support import serve
    except ImportError:
        from ui_support import serve
    with serve(ui_runs[0]) as base:
        yield base
