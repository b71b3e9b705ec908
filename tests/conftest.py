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


@pytest.fixture(scope="session")
def pool(evaluator):
    """The evaluator's pool: runs sources without the static gate (for adversarial tests)."""
    return evaluator._pool


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
