from __future__ import annotations

import numpy as np
import pytest

from llmnas.tasks import TaskError, get_task

PUBLISHED_PARAMS = {"logistic": 410, "mlp": 15_210, "cnn": 5_210, "gru": 5_134}


def test_mnist1d_split_sizes():
    data = get_task("mnist1d").load()
    assert data.train.x.shape == (3500, 1, 40)
    assert data.val.x.shape == (500, 1, 40)
    assert data.test.x.shape == (1000, 1, 40)
    assert data.train.x.dtype == np.float32 and data.train.y.dtype == np.int64
    assert set(np.unique(data.val.y)) == set(range(10))


@pytest.mark.slow
def test_mnist1d_is_deterministic():
    from llmnas.tasks.mnist1d import MNIST1D

    a, b = MNIST1D()._load(), MNIST1D()._load()
    assert np.array_equal(a.val.x, b.val.x) and np.array_equal(a.test.y, b.test.y)


def test_digits_and_synthetic_shapes():
    digits = get_task("digits").load()
    assert digits.train.x.shape[1:] == (1, 8, 8)
    assert len(digits.train.x) + len(digits.val.x) + len(digits.test.x) == 1797
    assert get_task("synthetic").load().train.x.shape[1:] == (1, 8)


def test_unknown_task_lists_known_ones():
    with pytest.raises(TaskError, match="mnist1d"):
        get_task("imagenet")


@pytest.mark.slow
def test_mnist1d_seeds_have_published_parameter_counts(evaluator):
    """Each seed is built in the sandbox (never imported here) with its published size."""
    from llmnas.evaluator import EvalSettings, Evaluator

    task = get_task("mnist1d")
    seeds = task.seed_programs()
    assert set(seeds) == set(PUBLISHED_PARAMS)
    with Evaluator(task, settings=EvalSettings(epochs=0)) as ev:
        results = ev.evaluate_many(list(seeds.values()))
    for name, result in zip(seeds, results, strict=True):
        assert result.ok, (name, result.failure)
        assert result.metrics["params"] == PUBLISHED_PARAMS[name], name
        assert result.metrics["flops"] > 0
