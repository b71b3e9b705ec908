"""The run loop in-process: a fake strategy and a fake evaluator drive each of its states.

The store (SQLite), the archive and the candidate pipeline are real; the evaluator behind the
pipeline is a fake, so nothing is trained. Each test builds a :class:`~llmnas.loop.RunLoop`
directly and checks what it committed, what it left pending and why it stopped.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from llmnas.archive import ArchiveConfig, QDArchive
from llmnas.evaluator import EvalSettings
from llmnas.llm.base import LLMUnavailable
from llmnas.loop import RunLoop
from llmnas.pipeline import CandidatePipeline
from llmnas.records import EvalResult, Proposal, Status
from llmnas.store import RunStore
from llmnas.strategies.base import Exhausted

PROGRAM = """import torch
from torch import nn

WIDTH = {i}


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.head = nn.Linear(input_shape[-1], num_classes)

    def forward(self, x):
        return self.head(x.flatten(1))
"""


def program(i: int) -> str:
    return PROGRAM.format(i=i)


class FakeEvaluator:
    """Answers at once (or after ``delay``) with val_accuracy from the program's WIDTH."""

    device = "cpu"

    def __init__(self, delay: float = 0.0, fail_on: int | None = None):
        self.delay, self.fail_on = delay, fail_on
        self.calls = 0
        self.inflight = 0
        self.max_inflight = 0
        self.lock = threading.Lock()
        self.on_call = None

    def evaluate(self, source: str, settings: EvalSettings, gated: bool = False) -> EvalResult:
        with self.lock:
            self.calls += 1
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            n = self.calls
        try:
            if self.on_call is not None:
                self.on_call(n)
            if self.fail_on == n:
                raise RuntimeError("an evaluator bug")
            time.sleep(self.delay)
            width = int(source.split("WIDTH = ")[1].split()[0])
            metrics = {"val_accuracy": min(0.99, width / 100), "params": 10 + width, "flops": 50}
            return EvalResult(status=Status.OK, metrics=metrics)
        finally:
            with self.lock:
                self.inflight -= 1

    def close(self) -> None:
        pass


class FakeStrategy:
    """Proposes program(0), program(1), ... ``script`` can replace an ask's outcome."""

    name = "fake"

    def __init__(self, script=None, per_ask=None):
        self.next = 0
        self.asks = 0
        self.told = []
        self.script = script or {}
        self.per_ask = per_ask
        self.inflight_at_ask = []
        self.evaluator: FakeEvaluator | None = None

    def ask(self, n: int) -> list[Proposal]:
        self.asks += 1
        if self.evaluator is not None:
            self.inflight_at_ask.append(self.evaluator.inflight)
        action = self.script.get(self.asks)
        if isinstance(action, BaseException):
            raise action
        if action == "empty":
            return []
        out = []
        for _ in range(self.per_ask or n):
            out.append(Proposal(source=program(self.next), operator="fake"))
            self.next += 1
        return out

    def tell(self, candidates) -> None:
        self.told.extend(c.id for c in candidates)


def make_loop(tmp_path: Path, strategy, evaluator, **kw) -> RunLoop:
    store = RunStore.create(tmp_path / "run", config={"task": "synthetic"})
    archive = QDArchive(
        ArchiveConfig(
            descriptors=["log10_params", "log10_flops"],
            bins=4,
            ranges={"log10_params": (0, 4), "log10_flops": (0, 4)},
        )
    )
    pipeline = CandidatePipeline(evaluator=evaluator, settings=EvalSettings(epochs=0),
                                 find_hash=store.find_hash)  # fmt: skip
    return RunLoop(strategy=strategy, store=store, archive=archive, pipeline=pipeline,
                   budget=kw.pop("budget", 6), workers=kw.pop("workers", 2), **kw)  # fmt: skip


def test_sequential_asks_only_when_nothing_is_in_flight(tmp_path: Path) -> None:
    ev = FakeEvaluator(delay=0.05)
    strat = FakeStrategy()
    strat.evaluator = ev
    loop = make_loop(tmp_path, strat, ev, budget=8, sequential=True)
    stats = loop.run()
    assert stats.committed == 8 and stats.stopped == "budget of 8 candidates reached"
    assert set(strat.inflight_at_ask) == {0}
    assert loop.store.count() == 8 and loop.store.pending() == []


def test_concurrent_evaluation_keeps_the_workers_busy(tmp_path: Path) -> None:
    ev = FakeEvaluator(delay=0.05)
    both = threading.Barrier(2, timeout=30)  # the first two evaluations must overlap
    ev.on_call = lambda n: both.wait() if n <= 2 else None
    loop = make_loop(tmp_path, FakeStrategy(), ev, budget=10, workers=2)
    stats = loop.run()
    assert stats.committed == 10 and ev.max_inflight == 2
    assert stats.evaluated == ev.calls == 10
    assert 0 < stats.busy_seconds <= 2 * stats.wall_seconds + 0.1  # two workers at most


def test_a_strategy_that_offers_more_than_the_budget_records_exactly_the_budget(
    tmp_path: Path,
) -> None:
    strat = FakeStrategy(per_ask=5)
    loop = make_loop(tmp_path, strat, FakeEvaluator(), budget=7)
    stats = loop.run()
    assert stats.committed == 7 and loop.store.count() == 7


def test_starved_then_fed(tmp_path: Path) -> None:
    class WaitsForResults(FakeStrategy):  # nothing new until every proposal has been told
        empties = 0

        def ask(self, n):
            if len(self.told) < self.next:
                self.empties += 1
                return []
            self.next += 1
            return [Proposal(source=program(self.next - 1), operator="fake")]

    strat = WaitsForResults()
    loop = make_loop(tmp_path, strat, FakeEvaluator(delay=0.2), budget=4, workers=1)
    stats = loop.run()
    assert stats.committed == 4 and stats.stopped == "budget of 4 candidates reached"
    assert strat.empties >= 1  # it was asked while starved, and the loop waited for a commit


def test_exhausted_strategy_stops_cleanly(tmp_path: Path) -> None:
    strat = FakeStrategy(script={3: Exhausted("no more ideas")}, per_ask=1)
    loop = make_loop(tmp_path, strat, FakeEvaluator(), budget=10, workers=1, sequential=True)
    stats = loop.run()
    assert stats.stopped == "strategy exhausted: no more ideas" and stats.committed == 2


def test_duplicates_are_recorded_as_rejected_and_never_evaluated(tmp_path: Path) -> None:
    class Repeating(FakeStrategy):
        def ask(self, n):
            self.asks += 1
            return [Proposal(source=program(self.asks % 2), operator="fake")]

    ev = FakeEvaluator()
    loop = make_loop(tmp_path, Repeating(), ev, budget=5, workers=1, sequential=True)
    stats = loop.run()
    cands = loop.store.candidates()
    assert stats.committed == 5 and ev.calls == 2
    assert [c.status for c in cands].count(Status.REJECTED) == 3
    assert all(c.result.failure.stage == "dedup" for c in cands if c.status is Status.REJECTED)


@pytest.mark.slow
def test_an_llm_outage_waits_with_backoff_and_continues(tmp_path: Path) -> None:
    down = LLMUnavailable("server restarting")
    strat = FakeStrategy(script={2: down, 3: down}, per_ask=1)
    loop = make_loop(tmp_path, strat, FakeEvaluator(), budget=4, workers=1, sequential=True,
                     llm_patience_s=30)  # fmt: skip
    stats = loop.run()
    assert stats.committed == 4 and stats.outages == 1 and not stats.llm_down
    assert strat.asks == 6  # four fed (one proposal each) and the two refused in between
    (outage,) = loop.store.get_state("llm_outages")
    assert outage["error"] == "server restarting" and outage["seconds"] > 0


def test_an_llm_that_stays_away_stops_the_run_after_the_patience(tmp_path: Path) -> None:
    strat = FakeStrategy(script={k: LLMUnavailable("refused") for k in range(2, 99)}, per_ask=1)
    loop = make_loop(tmp_path, strat, FakeEvaluator(), budget=5, workers=1, sequential=True,
                     llm_patience_s=0.5)  # fmt: skip
    stats = loop.run()
    assert stats.llm_down and stats.committed == 1
    assert stats.stopped.startswith("the LLM was unavailable for") and "refused" in stats.stopped
    assert loop.store.get_state("llm_outages")[0]["error"] == "refused"


def test_stop_leaves_in_flight_proposals_pending_for_resume(tmp_path: Path) -> None:
    ev = FakeEvaluator(delay=0.3)
    loop = make_loop(tmp_path, FakeStrategy(), ev, budget=20, workers=2)
    ev.on_call = lambda n: loop.stop() if n == 4 else None
    stats = loop.run()
    assert stats.stopped == "interrupted"
    pending = loop.store.pending()
    assert pending and stats.committed + len(pending) >= 4
    assert not {p.source for _, p in pending} & {c.source for c in loop.store.candidates()}


def test_an_evaluator_bug_raises_and_keeps_the_proposal_pending(tmp_path: Path) -> None:
    loop = make_loop(tmp_path, FakeStrategy(), FakeEvaluator(fail_on=3), budget=6, workers=1,
                     sequential=True)  # fmt: skip
    with pytest.raises(RuntimeError, match="an evaluator bug"):
        loop.run()
    assert loop.store.count() == 2
    assert program(2) in {p.source for _, p in loop.store.pending()}  # the one that raised


@pytest.mark.slow
def test_the_cli_stops_on_an_llm_outage_with_exit_75_and_no_traceback(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "run.toml"
    config.write_text("[llm]\npatience_s = 2\nmax_retries = 0\ntimeout_s = 2\n")
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "llmnas", "run", "--task", "synthetic", "--strategy", "llm",
         "--llm", "openai:m", "--llm-url", f"http://127.0.0.1:{port}/v1", "--budget", "6",
         "--epochs", "1", "--config", str(config), "--out", str(run)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 75, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "stopped: the LLM was unavailable for" in proc.stderr
    assert "evaluated in" in proc.stderr and "the LLM was unavailable 1 time(s)" in proc.stderr
    assert f"resume with: llmnas resume {run}" in proc.stderr
    with RunStore.open(run, read_only=True) as store:
        assert store.count() >= 1 and store.get_state("llm_outages")


def test_the_pipeline_gates_each_candidate_once(tmp_path: Path, monkeypatch) -> None:
    from llmnas import gate, pipeline

    calls = []
    real = gate.check

    def counting(source):
        calls.append(source)
        return real(source)

    monkeypatch.setattr(pipeline.gate, "check", counting)
    ev = FakeEvaluator()
    loop = make_loop(tmp_path, FakeStrategy(), ev, budget=5, workers=1)
    assert loop.run().committed == 5
    assert len(calls) == ev.calls == 5  # one gate per candidate; the evaluator never re-gates
