"""Random search and regularized evolution: protocol, determinism, aging, resume."""

from __future__ import annotations

import random

import pytest

from llmnas.records import Candidate, EvalResult, FailureKind, Proposal, Status
from llmnas.spaces import CellSpace, ChainSpace, space_of
from llmnas.strategies.base import Strategy
from llmnas.strategies.random_search import RandomSearch
from llmnas.strategies.regevo import RegularizedEvolution
from llmnas.tasks import get_task

TASK = get_task("nb201-cifar10")


def commit(proposal: Proposal, cid: int, result: EvalResult) -> Candidate:
    return Candidate(
        id=cid,
        source=proposal.source,
        operator=proposal.operator,
        parent_ids=proposal.parent_ids,
        result=result,
        meta=proposal.meta,
    )


def ok(accuracy: float) -> EvalResult:
    return EvalResult(status=Status.OK, metrics={"val_accuracy": accuracy})


def drive(strategy: Strategy, budget: int, start: int = 0) -> list[Candidate]:
    """A tiny sequential loop against the tabular task."""
    out = []
    for cid in range(start, start + budget):
        (proposal,) = strategy.ask(1)
        candidate = commit(proposal, cid, TASK.evaluate_source(proposal.source, gate=False))
        strategy.tell([candidate])
        out.append(candidate)
    return out


def summary(candidates: list[Candidate]) -> list[tuple]:
    return [(c.meta["genotype"], tuple(c.parent_ids), c.val_accuracy) for c in candidates]


def make(kind: str, seed: int) -> Strategy:
    space = space_of(TASK)
    if kind == "random":
        return RandomSearch(space=space, seed=seed)
    return RegularizedEvolution(space=space, seed=seed, population_size=10, sample_size=3)


@pytest.mark.parametrize("kind", ["random", "regevo"])
def test_protocol_and_determinism(kind: str) -> None:
    strategy = make(kind, 0)
    assert isinstance(strategy, Strategy) and strategy.name == kind
    first = drive(strategy, 50)
    assert summary(first) == summary(drive(make(kind, 0), 50))
    assert summary(first) != summary(drive(make(kind, 1), 50))
    assert all(c.operator == kind and c.result.ok for c in first)
    assert all(isinstance(c.meta["genotype"], str) and c.meta["space"] == "cell" for c in first)
    if kind == "random":
        assert len({c.meta["genotype"] for c in first}) == 50  # no repeats by default
        assert all(c.parent_ids == [] for c in first)


@pytest.mark.parametrize("kind", ["random", "regevo"])
def test_resume_by_telling_continues_the_run(kind: str) -> None:
    uninterrupted = drive(make(kind, 7), 60)
    resumed = make(kind, 7)
    head = drive(make(kind, 7), 40)
    resumed.tell(head)
    assert summary(head + drive(resumed, 20, start=40)) == summary(uninterrupted)


def test_regevo_random_phase_then_tournaments() -> None:
    space = space_of(TASK)
    evo = RegularizedEvolution(space=space, seed=3, population_size=5, sample_size=2)
    first = evo.ask(7)  # nothing told yet: all random
    assert all(p.parent_ids == [] and p.meta["origin"] == "random" for p in first)
    evo.tell([commit(p, i, ok(0.1 * i)) for i, p in enumerate(first[:4])])
    assert all(p.meta["origin"] == "random" for p in evo.ask(3))  # 4 < P members told
    evo.tell([commit(first[4], 4, ok(0.5))])
    children = evo.ask(20)
    ids = {m.id for m in evo.population}
    for child in children:
        assert child.meta["origin"] == "mutation" and len(child.parent_ids) == 1
        assert child.parent_ids[0] in ids
        parent = next(m for m in evo.population if m.id == child.parent_ids[0])
        assert space.decode(child.meta["genotype"]) != parent.genotype


def test_regevo_removes_the_oldest_member() -> None:
    space = space_of(TASK)
    evo = RegularizedEvolution(space=space, seed=0, population_size=3, sample_size=2)
    proposals = evo.ask(3)
    fitness = [0.9, 0.2, 0.3]  # the oldest is the fittest: aging removes it anyway
    evo.tell([commit(p, i, ok(f)) for i, (p, f) in enumerate(zip(proposals, fitness, strict=True))])
    assert [m.id for m in evo.population] == [0, 1, 2]
    (child,) = evo.ask(1)
    evo.tell([commit(child, 3, ok(0.1))])
    assert [m.id for m in evo.population] == [1, 2, 3]
    (child,) = evo.ask(1)
    evo.tell([commit(child, 4, ok(0.05))])
    assert [m.id for m in evo.population] == [2, 3, 4]
    assert [m.fitness for m in evo.population] == [0.3, 0.1, 0.05]


def test_regevo_drops_failures() -> None:
    space = space_of(TASK)
    evo = RegularizedEvolution(space=space, seed=0, population_size=2, sample_size=2)
    a, b, c = evo.ask(3)
    crash = EvalResult.failed(FailureKind.CRASH, "boom")
    evo.tell(
        [commit(a, 0, ok(0.5)), commit(b, 1, crash), commit(c, 2, EvalResult(status=Status.OK))]
    )
    assert [m.id for m in evo.population] == [0] and evo.dropped == 2
    assert evo.ask(1)[0].meta["origin"] == "random"  # still short of P members


def test_regevo_tournament_picks_the_fittest_sampled() -> None:
    space = space_of(TASK)
    evo = RegularizedEvolution(space=space, seed=0, population_size=5, sample_size=60)
    first = evo.ask(5)
    evo.tell(
        [
            commit(p, i, ok(f))
            for i, (p, f) in enumerate(zip(first, [0.2, 0.9, 0.1, 0.3, 0.4], strict=True))
        ]
    )
    assert {tuple(p.parent_ids) for p in evo.ask(10)} == {(1,)}


def test_other_operators_join_via_source() -> None:
    space = space_of(TASK)
    evo = RegularizedEvolution(space=space, seed=0, population_size=1, sample_size=1)
    genotype = space.sample(random.Random(0))
    foreign = Candidate(id=9, source=space.render(genotype), operator="mutate", result=ok(0.7))
    evo.tell([foreign])
    assert evo.population[0].genotype == genotype
    (child,) = evo.ask(1)
    assert child.parent_ids == [9]


def test_strategies_on_the_chain_space() -> None:
    space = ChainSpace((1, 40), 10, max_depth=6)

    def score(proposal: Proposal) -> EvalResult:
        genotype = space.decode(proposal.meta["genotype"])
        return ok(min(1.0, sum(layer.width for layer in genotype.layers) / 400))

    for strategy in (
        RandomSearch(space=space, seed=1),
        RegularizedEvolution(space=space, seed=1, population_size=8, sample_size=3),
    ):
        best = 0.0
        for cid in range(120):
            (proposal,) = strategy.ask(1)
            candidate = commit(proposal, cid, score(proposal))
            strategy.tell([candidate])
            best = max(best, candidate.val_accuracy or 0.0)
        assert best > 0.5
    tiny = RegularizedEvolution(space=CellSpace("tiny", (1, 8), 4), seed=0).ask(1)[0]
    assert "preset tiny" in tiny.source
