"""Tests for descriptors, the QD archive, its rebuild from the store, and parent selection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from llmnas.archive import ArchiveConfig, ArchiveError, QDArchive
from llmnas.descriptors import compute_descriptors, descriptor_vector, seed_ranges
from llmnas.heatmap import save_heatmap
from llmnas.islands import IslandArchive
from llmnas.records import Candidate, EvalResult, FailureKind, Status
from llmnas.store import RunStore


def _cand(cid: int, acc: float | None, params: int = 1000, parents: list[int] | None = None,
          flops: int | None = None) -> Candidate:  # fmt: skip
    if acc is None:
        result = EvalResult.failed(FailureKind.CRASH, "boom")
    else:
        metrics = {"val_accuracy": acc, "params": params, "flops": flops or params * 10}
        result = EvalResult(status=Status.OK, metrics=metrics)
    return Candidate(id=cid, source="", operator="mutate", parent_ids=parents or [], result=result)


def _population(n: int = 300, seed: int = 0) -> list[Candidate]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(1, n + 1):
        parents = [int(rng.integers(1, i))] if i > 5 else []
        if rng.random() < 0.2:
            out.append(_cand(i, None, parents=parents))
            continue
        params = int(10 ** rng.uniform(2.6, 6.0))
        flops = params * int(rng.integers(1, 200))
        acc = round(float(rng.uniform(0.1, 0.99)), 3)
        out.append(_cand(i, acc, params, parents, flops))
    return out


def test_descriptors() -> None:
    d = compute_descriptors({"params": 410, "flops": 10_000, "depth": 4, "latency_ms": 1.5})
    assert d["log10_params"] == pytest.approx(math.log10(410))
    assert d["log10_flops"] == pytest.approx(4.0)
    assert d["log10_flops_per_param"] == pytest.approx(math.log10(10_000 / 410))
    assert d["depth"] == 4.0 and d["latency_ms"] == 1.5
    assert d["width_depth_ratio"] == pytest.approx(math.log10(math.sqrt(410 / 4) / 4))
    with_width = compute_descriptors({"params": 410, "depth": 2, "width": 64})
    assert with_width["width_depth_ratio"] == pytest.approx(math.log10(32))
    assert compute_descriptors({"params": 0, "flops": float("nan")}) == {}
    names = ["log10_params", "depth"]
    assert descriptor_vector(names, {}, {"params": 100}) is None
    assert descriptor_vector(names, {"log10_params": 1.0, "depth": 3.0}, {}) == [1.0, 3.0]


def test_default_descriptors_spread_mnist1d_sizes() -> None:
    archive = QDArchive()
    assert archive.config.descriptors == ["log10_params", "log10_flops_per_param"]
    cells = {
        int(archive.ribs.index_of_single([math.log10(p), math.log10(20)]))
        for p in (410, 2_000, 10_000, 50_000, 200_000, 1_000_000)
    }
    assert len(cells) == 6
    # the same size with more reuse per weight (a convolution at full resolution) is apart
    per_param = {int(archive.ribs.index_of_single([3.7, math.log10(r)])) for r in (2, 20, 200)}
    assert len(per_param) == 3


def test_seed_ranges_widen_by_the_factor_and_respect_the_floor() -> None:
    seeds = [{"params": 410, "flops": 800}, {"params": 5_210, "flops": 63_500}]
    ranges = seed_ranges(["log10_params", "log10_flops_per_param", "depth"], seeds)
    assert ranges["log10_params"] == pytest.approx((math.log10(41), math.log10(52_100)), abs=1e-4)
    low, high = ranges["log10_flops_per_param"]
    assert low == 0.0  # 800/410 is under 10 FLOPs per parameter: clipped at one
    assert high == pytest.approx(math.log10(63_500 / 5_210) + 1, abs=1e-4)
    assert "depth" not in ranges  # not logarithmic: the default range stays
    assert seed_ranges(["log10_params"], [{"params": 100}], factor=1) == {"log10_params": (2, 2)}
    with pytest.raises(ValueError, match="factor"):
        seed_ranges(["log10_params"], seeds, factor=0.5)


def test_add_keeps_the_better_candidate_per_cell() -> None:
    archive = QDArchive()
    assert archive.add(_cand(1, 0.5)) is True
    assert archive.add(_cand(2, 0.5)) is False  # a tie does not replace
    assert archive.add(_cand(3, 0.6)) is True
    assert archive.add(_cand(4, None)) is False
    assert archive.add(_cand(5, 0.4, params=100_000)) is True
    assert archive.add(_cand(3, 0.9)) is False  # an id is only counted once
    assert archive.elite_ids() == [3, 5] and 3 in archive and 1 not in archive
    assert archive.best() == 3 and archive.best_accuracy == 0.6
    assert archive.coverage == pytest.approx(2 / 100)
    assert archive.qd_score == pytest.approx(1.0)
    assert len(archive.ribs) == 2 and archive.ribs.stats.qd_score == pytest.approx(1.0)


def test_params_x_error_objective_and_gate() -> None:
    archive = QDArchive({"objective": "params_x_error", "error_gate": 0.3})
    assert archive.add(_cand(1, 0.6)) is False  # error 0.4 is above the gate
    assert archive.add(_cand(2, 0.9, params=1000)) is True
    assert archive.elites()[0].objective == pytest.approx(-math.log10(1000 * 0.1))
    assert archive.qd_score == pytest.approx(-2.0 + 10.0)
    assert archive.best() == 2  # best() is by validation accuracy, whatever the objective


@pytest.mark.parametrize("objective", ["val_accuracy", "params_x_error"])
def test_rebuild_from_store_equals_live(tmp_path: Path, objective: str) -> None:
    config = ArchiveConfig(objective=objective, selection="curiosity")
    live = QDArchive(config)
    store = RunStore.create(tmp_path / "run", config={"archive": config.model_dump()})
    for c in _population():
        stored = store.add_candidate(
            source="# x", operator="mutate", parent_ids=c.parent_ids, result=c.result,
            descriptors=compute_descriptors(c.result.metrics),
        )  # fmt: skip
        live.add(stored)
    store.close()

    store = RunStore.open(tmp_path / "run", read_only=True)
    for rows in (store.summaries(), store.candidates()):
        rebuilt = QDArchive.from_candidates(rows, store.config()["archive"])
        assert rebuilt.elites() == live.elites()
        assert rebuilt.best() == live.best()
        assert rebuilt.coverage == live.coverage and rebuilt.qd_score == live.qd_score
        assert all(rebuilt.curiosity(i) == live.curiosity(i) for i in range(1, 301))
        ribs_ids = sorted(int(i) for i in rebuilt.ribs.data("solution"))
        assert ribs_ids == sorted(int(i) for i in live.ribs.data("solution"))
        assert ribs_ids == live.elite_ids()
        for method in ("uniform", "tournament", "curiosity"):
            got = rebuilt.select_parents(8, np.random.default_rng(3), method)
            assert got == live.select_parents(8, np.random.default_rng(3), method)
    store.close()


@pytest.mark.parametrize("method", ["uniform", "tournament", "curiosity"])
def test_selection_is_seeded(method: str) -> None:
    archive = QDArchive.from_candidates(_population(), {"tournament_size": 4})
    first = archive.select_parents(20, np.random.default_rng(11), method)
    assert first == archive.select_parents(20, np.random.default_rng(11), method)
    assert first != archive.select_parents(20, np.random.default_rng(12), method)
    assert set(first) <= set(archive.elite_ids())
    assert QDArchive().select_parents(3, np.random.default_rng(0), method) == []


def test_tournament_of_everyone_picks_the_best() -> None:
    archive = QDArchive({"tournament_size": 3})
    for c in (_cand(1, 0.2, 500), _cand(2, 0.8, 50_000), _cand(3, 0.5, 500_000)):
        archive.add(c)
    assert archive.select_parents(5, np.random.default_rng(0), "tournament") == [2] * 5
    with pytest.raises(ArchiveError, match="selection must be uniform"):
        archive.select_parents(1, np.random.default_rng(0), "roulette")


def test_curiosity_update_rule() -> None:
    archive = QDArchive({"selection": "curiosity", "curiosity_temperature": 0.01})
    archive.add(_cand(1, 0.5, 500))
    archive.add(_cand(2, 0.5, 500_000))
    assert archive.curiosity(1) == 0.0
    archive.add(_cand(3, 0.9, 500, parents=[1]))  # replaces 1 in its cell: +1
    assert archive.curiosity(1) == 1.0
    archive.add(_cand(4, 0.1, 500, parents=[1, 1]))  # evaluated, not kept: -0.5 (once)
    assert archive.curiosity(1) == 0.5
    archive.add(_cand(5, None, parents=[1, 2]))  # failed: -1 for each parent
    assert archive.curiosity(1) == -0.5 and archive.curiosity(2) == -1.0
    archive.add(_cand(6, 0.2, 50_000, parents=[3]))  # new cell: +1
    assert archive.curiosity(3) == 1.0
    picks = archive.select_parents(10, np.random.default_rng(0))
    assert picks == [3] * 10  # low temperature: the most curious elite


def test_islands_keep_lineages_and_migrate() -> None:
    islands = IslandArchive(n_islands=2, migration_interval=4)
    islands.add(_cand(2, 0.9, 500))  # island 0
    islands.add(_cand(3, 0.3, 500))  # island 1
    islands.add(_cand(4, 0.4, 50_000, parents=[3]))  # follows its parent to island 1
    assert islands.islands[1].elite_ids() == [3, 4] and islands.islands[0].elite_ids() == [2]
    islands.add(_cand(5, 0.1, 500_000, parents=[2]))  # 4th add: migration
    assert islands.islands[1].elite_ids() == [2, 4]  # 2 beat 3 in their shared cell
    assert 4 in islands.islands[0].elite_ids()
    assert islands.select_parents(2, np.random.default_rng(0), island=1)
    assert islands.elite_ids() == [2, 4, 5]
    by_island = [set(isl.elite_ids()) for isl in islands.islands]
    rng = np.random.default_rng(1)
    for _ in range(20):  # crossover pairs never mix islands
        pair = islands.crossover_pair(rng)
        assert pair is not None and any(set(pair) <= ids for ids in by_island)


def test_crossover_pair_of_a_plain_archive() -> None:
    archive = QDArchive.from_candidates(_population(60))
    ids = archive.elite_ids()
    pair = archive.crossover_pair(np.random.default_rng(0))
    a, b = np.random.default_rng(0).choice(len(ids), size=2, replace=False)
    assert pair == [ids[int(a)], ids[int(b)]] and pair[0] != pair[1]
    assert QDArchive().crossover_pair(np.random.default_rng(0)) is None


def test_heatmap_and_config_errors(tmp_path: Path) -> None:
    archive = QDArchive.from_candidates(_population(100))
    path = save_heatmap(archive, tmp_path / "map.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    three = QDArchive({"descriptors": ["log10_params", "log10_flops", "depth"], "bins": 4})
    with pytest.raises(ArchiveError, match="exactly 2 descriptors"):
        save_heatmap(three, tmp_path / "x.png")
    with pytest.raises(ValidationError, match="descriptors must be some of"):
        ArchiveConfig(descriptors=["colour"])
    with pytest.raises(ValidationError, match="unknown descriptors"):
        ArchiveConfig(ranges={"log_params": (1.0, 2.0)})
    with pytest.raises(ArchiveError, match="bins must be"):
        QDArchive({"bins": [4, 4, 4]})


def test_cvt_archive_rebuilds_equal_to_live():
    from llmnas.archive import QDArchive
    from llmnas.records import Candidate, EvalResult, Status

    config = {"kind": "cvt", "cells": 16, "seed": 3}
    cands = [
        Candidate(
            id=i,
            source="",
            operator="seed",
            result=EvalResult(
                status=Status.OK,
                metrics={
                    "params": 10 ** (2.5 + i / 5),
                    "flops": 10 ** (3 + i / 4),
                    "val_accuracy": 0.5 + i / 100,
                },
            ),
        )
        for i in range(1, 20)
    ]
    live = QDArchive(config)
    added = [live.add(c) for c in cands]
    rebuilt = QDArchive.from_candidates(cands, config)
    assert any(added)
    assert sorted(live.elite_ids()) == sorted(rebuilt.elite_ids())
    assert live.coverage == rebuilt.coverage and 0 < live.coverage <= 1


def test_islands_from_config_rebuild_equal_to_live(tmp_path):
    from llmnas.islands import IslandArchive, make_archive, rebuild_archive
    from llmnas.records import Candidate, EvalResult, Status

    config = {"islands": 3, "migration_interval": 4}
    cands = [
        Candidate(
            id=i,
            source="",
            operator="seed" if i <= 3 else "ast",
            parent_ids=[] if i <= 3 else [1 + i % 3],
            result=EvalResult(
                status=Status.OK,
                metrics={
                    "params": 10 ** (2.5 + i / 6),
                    "flops": 10 ** (3 + i / 5),
                    "val_accuracy": 0.4 + i / 50,
                },
            ),
        )
        for i in range(1, 25)
    ]
    live = make_archive(config)
    assert isinstance(live, IslandArchive)
    for c in cands:
        live.add(c)
    rebuilt = rebuild_archive(cands, config)
    assert live.elite_ids() == rebuilt.elite_ids() and len(live) > 3
    assert live.coverage == rebuilt.coverage and live.qd_score == rebuilt.qd_score
    import numpy as np

    picks = live.select_parents(2, np.random.default_rng(0))
    assert len(picks) == 2 and all(p in live.elite_ids() for p in picks)
    with pytest.raises(ArchiveError):
        save_heatmap(live, tmp_path / "islands.png")


def test_mixed_selection_draws_recent_improvements_and_elites() -> None:
    archive = QDArchive.from_candidates(_population(), {"recent_window": 4})
    recent = archive.recent()
    assert len(recent) == 4 and recent == sorted(recent)  # the last four admitted, in order
    drawn = archive.select_parents(
        50, np.random.default_rng(0), "mixed"
    )  # default rates: a draw is recent, tournament or curiosity
    assert set(drawn) - set(recent) and set(drawn) & set(recent)
    cfg = {"recent_window": 4, "recent_rate": 1.0, "best_rate": 0.0}
    all_recent = QDArchive.from_candidates(_population(), cfg)
    assert set(all_recent.select_parents(30, np.random.default_rng(1))) <= set(recent)
    cfg = {"recent_rate": 0.0, "best_rate": 1.0, "tournament_size": 1000}
    best_only = QDArchive.from_candidates(_population(), cfg)
    top = max(best_only.elites(), key=lambda e: (e.objective, -e.id)).id
    assert set(best_only.select_parents(10, np.random.default_rng(2))) == {top}


def test_niche_near_is_an_empty_neighbour_cell() -> None:
    archive = QDArchive({"ranges": {"log10_params": (2.0, 6.0), "log10_flops_per_param": (0, 2)}})
    archive.add(_cand(1, 0.8, params=10_000, flops=10_000 * 10))  # cell (5, 5)
    niche = archive.niche_near([4.0, 1.0], np.random.default_rng(0))
    (p_lo, p_hi), (f_lo, f_hi) = niche["log10_params"], niche["log10_flops_per_param"]
    assert p_hi - p_lo == pytest.approx(0.4) and f_hi - f_lo == pytest.approx(0.2)
    assert max(abs(p_lo - 4.0), abs(p_hi - 4.0)) <= 0.8 + 1e-9  # next to the point
    assert not (p_lo <= 4.0 < p_hi and f_lo <= 1.0 < f_hi)  # not the parent's own cell
    cell = int(archive.ribs.index_of_single([(p_lo + p_hi) / 2, (f_lo + f_hi) / 2]))
    assert cell not in {e.cell for e in archive.elites()}
    assert (
        QDArchive({"kind": "cvt", "cells": 8}).niche_near([4, 1], np.random.default_rng(0)) is None
    )
