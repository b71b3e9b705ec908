"""DARTS strategy: search smoke test, alpha history, determinism, anti-collapse, second order,
the search's train-only split, proposals/exhaustion, config and resume."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmnas import gate
from llmnas.config import RunConfig
from llmnas.nb201_cell import OPS, PRESETS, CellGenotype
from llmnas.records import Candidate, EvalResult, Proposal, Status
from llmnas.spaces import CellSpace, space_of
from llmnas.strategies.base import Exhausted, Strategy
from llmnas.strategies.darts import (
    DARTS,
    discretise,
    make_darts,
    ranked_genotypes,
    search_split,
    skip_guard_fires,
)
from llmnas.strategies.darts_supernet import Supernet, unrolled_alpha_grad
from llmnas.tasks import Split, TaskData, get_task
from llmnas.tasks.synthetic import Synthetic

SKIP = OPS.index("skip_connect")


def make(task=None, **kwargs) -> DARTS:
    task = task or get_task("synthetic")
    space = CellSpace("tiny", task.input_shape, task.num_classes)
    options = {"seed": 0, "epochs": 1, "threads": 1, "time_budget_s": None, **kwargs}
    return DARTS(task=task, space=space, **options)


@pytest.fixture(scope="module")
def searched() -> tuple[DARTS, Proposal]:
    strategy = make(epochs=2, max_proposals=2)
    (proposal,) = strategy.ask(1)
    return strategy, proposal


@pytest.mark.slow
def test_smoke_search_renders_a_gated_candidate(searched) -> None:
    strategy, proposal = searched
    assert isinstance(strategy, Strategy) and strategy.name == "darts"
    assert proposal.operator == "darts"
    genotype = CellGenotype.from_arch_str(proposal.meta["genotype"])
    assert "none" not in genotype.ops
    assert genotype == discretise(np.array(proposal.meta["alpha"]))
    assert proposal.source == strategy.space.render(genotype)
    assert gate.check(proposal.source).ok
    assert proposal.meta["search_seconds"] > 0
    assert proposal.meta["guard_fired"] is False


def test_alpha_history_per_epoch(searched) -> None:
    _, proposal = searched
    history = np.array(proposal.meta["alpha_history"])
    assert history.shape == (2, 6, 5)
    assert proposal.meta["epochs_completed"] == 2
    np.testing.assert_allclose(history.sum(-1), 1.0, atol=1e-4)
    assert not np.allclose(history[0], history[1])  # alpha moved between epochs


def test_next_best_proposal_then_exhausted(searched) -> None:
    strategy, first = searched
    (second,) = strategy.ask(3)  # max_proposals=2: only one left
    a = CellGenotype.from_arch_str(first.meta["genotype"]).ops
    b = CellGenotype.from_arch_str(second.meta["genotype"]).ops
    assert sum(x != y for x, y in zip(a, b, strict=True)) == 1 and second.meta["rank"] == 1
    with pytest.raises(Exhausted, match="DARTS proposed its architecture"):
        strategy.ask(1)


def test_deterministic_under_seed(searched) -> None:
    _, proposal = searched
    again = make(epochs=2, max_proposals=2).ask(1)[0]
    assert again.meta["genotype"] == proposal.meta["genotype"]
    assert again.meta["alpha"] == proposal.meta["alpha"]
    assert again.meta["alpha_history"] == proposal.meta["alpha_history"]
    state = torch.get_rng_state()
    make(seed=1).ask(1)
    assert torch.equal(state, torch.get_rng_state())


def test_skip_guard_rule_on_constructed_alpha() -> None:
    alpha = np.zeros((6, 5))
    alpha[:, OPS.index("nor_conv_3x3")] = 1.0
    alpha[[0, 3], SKIP] = 2.0
    assert not skip_guard_fires(alpha, skip_limit=3)
    alpha[5, SKIP] = 2.0
    assert skip_guard_fires(alpha, skip_limit=3)
    alpha[:, OPS.index("none")] = 10.0  # none never counts, never chosen
    assert skip_guard_fires(alpha, skip_limit=3)
    capped = ranked_genotypes(alpha, 3, skip_limit=3)
    assert all(g.ops.count("skip_connect") < 3 for g in capped)
    assert all("none" not in g.ops for g in capped)


def test_skip_guard_fires_during_search() -> None:
    alpha = np.zeros((6, 5))
    alpha[:, SKIP] = 5.0  # skip dominates every edge from the start
    proposal = make(epochs=3, alpha_init=alpha).ask(1)[0]
    assert proposal.meta["guard_fired"] is True
    assert proposal.meta["epochs_completed"] == 1 and "skip guard" in proposal.meta["stopped"]
    assert CellGenotype.from_arch_str(proposal.meta["genotype"]).ops.count("skip_connect") < 3
    plain = make(epochs=1, alpha_init=alpha, anti_collapse="none").ask(1)[0]
    assert plain.meta["guard_fired"] is False
    assert plain.meta["genotype"] == "|skip_connect~0|+|skip_connect~0|skip_connect~1|+" + (
        "|skip_connect~0|skip_connect~1|skip_connect~2|"
    )


def test_aux_skip_search_runs() -> None:
    proposal = make(anti_collapse="aux_skip").ask(1)[0]
    assert gate.check(proposal.source).ok and proposal.meta["anti_collapse"] == "aux_skip"


@pytest.mark.slow
def test_second_order_gradient_and_search() -> None:
    torch.manual_seed(0)
    net = Supernet(PRESETS["tiny"], (1, 8), 4, 1e-3 * torch.randn(6, 5))
    batch = (torch.randn(16, 1, 8), torch.randint(0, 4, (16,)))
    val = (torch.randn(16, 1, 8), torch.randint(0, 4, (16,)))
    before = [w.detach().clone() for w in net.weights()]
    grad = unrolled_alpha_grad(
        net,
        F.cross_entropy,
        batch,
        val,
        lr=0.025,
        momentum=0.9,
        weight_decay=3e-4,
        momentum_buffers=[None] * len(before),
    )
    assert grad.shape == (6, 5) and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert all(torch.equal(a, b) for a, b in zip(before, net.weights(), strict=True))
    proposal = make(order="second").ask(1)[0]
    assert proposal.meta["order"] == "second" and gate.check(proposal.source).ok


@dataclass(frozen=True)
class PoisonedLabels(Synthetic):
    """Synthetic data whose validation and test labels are out of range: using them fails."""

    name: str = "synthetic-poisoned"

    def _load(self) -> TaskData:
        data = super()._load()
        bad = [Split(s.x, np.full_like(s.y, 99)) for s in (data.val, data.test)]
        return TaskData(train=data.train, val=bad[0], test=bad[1])


def test_split_uses_training_data_only() -> None:
    first, second = search_split(256, seed=3)
    assert len(first) == len(second) == 128
    assert set(first).isdisjoint(second) and set(first) | set(second) == set(range(256))
    again = search_split(256, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(again, (first, second), strict=True))
    assert not np.array_equal(search_split(256, seed=4)[0], first)
    strategy = make(task=PoisonedLabels())
    strategy.ask(1)  # would fail on a label of 99 if val/test data were used
    n_train = len(PoisonedLabels().load().train.x)
    assert strategy.split is not None
    assert all(idx.max() < n_train for idx in strategy.split)
    assert sum(len(idx) for idx in strategy.split) == n_train


def test_tabular_task_is_refused() -> None:
    task = get_task("nb201-cifar10")
    with pytest.raises(ValueError, match="DARTS needs a trainable task"):
        DARTS(task=task, seed=0, space=space_of(task))
    config = RunConfig(task="nb201-cifar10", strategy="darts")
    with pytest.raises(ValueError, match="DARTS needs a trainable task"):
        make_darts(config, task, 0)


def test_make_darts_reads_strategy_options() -> None:
    config = RunConfig(
        task="synthetic",
        strategy="darts",
        strategy_options={"epochs": 2, "order": "second", "preset": "tiny", "max_proposals": 3},
    )
    strategy = make_darts(config, get_task("synthetic"), seed=5)
    assert (strategy.epochs, strategy.order, strategy.max_proposals) == (2, "second", 3)
    assert strategy.space.preset.name == "tiny" and strategy.seed == 5
    bad = RunConfig(task="synthetic", strategy="darts", strategy_options={"epoch": 2})
    with pytest.raises(ValueError, match="unknown DARTS strategy_options"):
        make_darts(bad, get_task("synthetic"), seed=0)


def test_tell_records_and_resume_skips_search(searched) -> None:
    _, proposal = searched
    candidate = Candidate(
        id=0,
        source=proposal.source,
        operator="darts",
        result=EvalResult(status=Status.OK, metrics={"val_accuracy": 0.75}),
        meta=proposal.meta,
    )
    resumed = make(epochs=2, max_proposals=2)
    resumed.tell([candidate])
    assert resumed.results == [(proposal.meta["genotype"], 0.75)]
    assert resumed.outcome is not None  # adopted from the stored meta: no new search
    (nxt,) = resumed.ask(1)
    assert nxt.meta["genotype"] != proposal.meta["genotype"] and resumed.split is None
    with pytest.raises(Exhausted):
        resumed.ask(1)
