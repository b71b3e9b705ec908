"""The evolution loop: ask -> gate -> (cascade) -> evaluate -> store -> archive -> tell.

Threads, and who owns what:

- the **main thread** owns the run store: it gates proposals, deduplicates them, commits
  every candidate (one transaction each) and records every LLM call;
- one **proposer thread** owns the strategy and the archive: it adds committed candidates to
  the archive, tells the strategy, and asks it for more — so a slow LLM prepares the next
  candidates while the sandbox workers train the current ones;
- ``workers`` **evaluation threads** each drive one sandbox worker.

A proposal is written to the store's ``pending`` table before it is evaluated and removed in
the same transaction that commits its candidate, so ``kill -9`` at any moment loses nothing
committed and ``llmnas resume`` re-queues exactly the proposals that were in flight. A
normalised-AST hash already in the store (or in flight) is recorded as a ``rejected``
duplicate and never trained twice. The budget counts recorded candidates, whatever their fate.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from llmnas import gate
from llmnas.archive import QDArchive
from llmnas.descriptors import compute_descriptors
from llmnas.islands import IslandArchive
from llmnas.llm.base import LLMUnavailable, prompt_sha256
from llmnas.pipeline import CandidatePipeline
from llmnas.records import Candidate, Proposal, Status
from llmnas.store import RunStore
from llmnas.strategies.base import Exhausted, Strategy

__all__ = ["CallQueue", "LoopStats", "RunLoop"]


class CallQueue:
    """A thread-safe recorder: LLM calls are queued here and committed by the main thread."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.tokens = 0
        self.cost = 0.0

    def record(self, call: Any) -> None:
        usage = getattr(call, "usage", None)
        if usage is not None:
            self.tokens += int(
                getattr(usage, "prompt_tokens", 0) + getattr(usage, "completion_tokens", 0)
            )
            self.cost += float(getattr(usage, "cost_usd", 0.0) or 0.0)
        self._q.put(call)

    def drain(self) -> list[Any]:
        out = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out


@dataclass
class LoopStats:
    committed: int = 0
    evaluated: int = 0
    best_id: int | None = None
    best_val: float | None = None
    coverage: float = 0.0
    qd_score: float = 0.0
    failures: Counter = field(default_factory=Counter)
    stopped: str = ""
    busy_seconds: float = 0.0
    wall_seconds: float = 0.0
    tokens: int = 0
    cost: float = 0.0
    outages: int = 0  # times the LLM was unavailable after its own retries
    outage_seconds: float = 0.0
    llm_down: bool = False  # stopped because the LLM stayed away past the patience


OUTAGE_BACKOFF_S = (2.0, 60.0)
"""First and longest wait before asking again after the LLM was unavailable."""


class RunLoop:
    """One run. ``evaluate`` is called on evaluation threads; everything else as documented."""

    def __init__(
        self,
        *,
        strategy: Strategy,
        store: RunStore,
        archive: QDArchive | IslandArchive,
        pipeline: CandidatePipeline,
        budget: int,
        workers: int,
        calls: CallQueue | None = None,
        wall_time_s: float | None = None,
        queue_per_worker: int = 2,
        sequential: bool = False,
        llm_patience_s: float = 600.0,
        on_progress: Callable[[LoopStats], None] | None = None,
    ):
        self.strategy, self.store, self.archive = strategy, store, archive
        self.pipeline = pipeline
        self.budget, self.workers = budget, workers
        self.calls = calls or CallQueue()
        self.wall_time_s = wall_time_s
        self.ahead = workers * queue_per_worker
        self.sequential = sequential
        self.llm_patience_s = llm_patience_s
        self.on_progress = on_progress
        self._down_since: float | None = None
        self._last_reason = ""
        self._retry_at = 0.0
        self._backoff = OUTAGE_BACKOFF_S[0]
        self.stats = LoopStats()
        self._stop = threading.Event()
        self._generation: dict[int, int] = {}

    def stop(self) -> None:
        """Ask the loop to stop after the current step (used by the Ctrl-C handler)."""
        self._stop.set()
        cancel = getattr(self.strategy, "cancel", None)
        if cancel is not None:  # e.g. a DARTS search in progress
            cancel()

    # ------------------------------------------------------------------ setup

    def restore(self) -> list[tuple[int, Proposal]]:
        """Rebuild archive and strategy from the store; returns the pending proposals."""
        done = self.store.candidates()
        self.stats.committed = len(done)
        for cand in done:
            self._note(cand)
            self.archive.add(cand)
            if cand.result.failure is not None:
                self.stats.failures[cand.result.failure.kind.value] += 1
            self.pipeline.observe(cand.result)  # same history, same decisions
        if done:
            self.strategy.tell(done)
        return self.store.pending()

    # ------------------------------------------------------------------ main loop

    def run(self) -> LoopStats:
        start = time.monotonic()
        pending = self.restore()
        ready: list[tuple[int, Proposal, str, str]] = []  # pending id, proposal, source, hash
        committed_at_ask = -1
        inflight_hashes = set()
        for pid, prop in pending:
            checked = gate.check(prop.source)
            ready.append((pid, prop, checked.source, checked.hash))
            inflight_hashes.add(checked.hash)
        running: dict[Future, tuple[int, Proposal, str, str, float]] = {}
        asking: Future | None = None
        exhausted = False
        starved = False  # the strategy had nothing to offer: wait for the next commit
        with (
            ThreadPoolExecutor(1, thread_name_prefix="llmnas-proposer") as proposer,
            ThreadPoolExecutor(self.workers, thread_name_prefix="llmnas-eval") as evals,
        ):
            while True:
                self._flush_calls()
                total = self.stats.committed + len(running) + len(ready)
                if self._stop.is_set():
                    self.stats.stopped = self.stats.stopped or "interrupted"
                    break
                if self.wall_time_s and time.monotonic() - start > self.wall_time_s:
                    self.stats.stopped = f"wall-time budget of {self.wall_time_s:g} s reached"
                    break
                if self.stats.committed >= self.budget:
                    self.stats.stopped = f"budget of {self.budget} candidates reached"
                    break
                if self.stats.llm_down:
                    break
                if self.stats.committed != committed_at_ask:
                    starved = False
                busy = self.sequential and bool(running or ready)
                if (
                    asking is None
                    and not exhausted
                    and not starved
                    and not busy
                    and total < self.budget
                    and time.monotonic() >= self._retry_at
                ):
                    if len(ready) < self.ahead:
                        n = min(self.ahead - len(ready), self.budget - total)
                        asking = proposer.submit(self.strategy.ask, n)
                        committed_at_ask = self.stats.committed
                while ready and len(running) < self.workers:
                    pid, prop, source, digest = ready.pop(0)
                    fut = evals.submit(self.pipeline.evaluate, source)
                    running[fut] = (pid, prop, source, digest, time.monotonic())
                if asking is None and not running and not ready:
                    if exhausted:
                        break
                    if total >= self.budget:
                        continue
                waitables = set(running) | ({asking} if asking else set())
                if not waitables:
                    time.sleep(min(0.2, max(0.01, self._retry_at - time.monotonic())))
                    continue
                done, _ = wait(waitables, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    if fut is asking:
                        asking = None
                        try:
                            proposals = fut.result()
                        except Exhausted as exc:
                            exhausted = True
                            self.stats.stopped = f"strategy exhausted: {exc}"
                            continue
                        except LLMUnavailable as exc:
                            self._llm_unavailable(exc)
                            continue
                        self._llm_back()
                        if not proposals:
                            # empty only counts when the strategy had been told everything
                            starved = committed_at_ask == self.stats.committed
                            if starved and not running and not ready:
                                exhausted = True
                                self.stats.stopped = (
                                    self.stats.stopped or "strategy has nothing to propose"
                                )
                        for prop in proposals:
                            item = self._admit(prop, inflight_hashes, proposer)
                            if item is not None:
                                ready.append(item)
                                inflight_hashes.add(item[3])
                    else:
                        pid, prop, source, digest, t0 = running.pop(fut)
                        self.stats.busy_seconds += time.monotonic() - t0
                        result = fut.result()
                        self.stats.evaluated += 1
                        self._commit(prop, source, digest, result, pid, proposer)
                        inflight_hashes.discard(digest)
            if self._stop.is_set():
                # in-flight proposals stay pending in the store; stopping the workers now
                # makes their threads return at once (their results are not committed)
                self.pipeline.close()
                running.clear()
            else:
                for fut in list(running):  # budget or wall time: finish what is running
                    pid, prop, source, digest, t0 = running.pop(fut)
                    result = fut.result()
                    self.stats.busy_seconds += time.monotonic() - t0
                    self._commit(prop, source, digest, result, pid, proposer)
            if asking is not None:
                asking.cancel()  # proposals not yet admitted are simply asked for again
            proposer.submit(lambda: None).result()
        self._flush_calls()
        self.stats.wall_seconds = time.monotonic() - start
        self._refresh()
        return self.stats

    # ------------------------------------------------------------------ LLM outages

    def _llm_unavailable(self, exc: LLMUnavailable) -> None:
        """The model stayed away through its own retries: wait with backoff, evaluating what is
        ready, until ``llm_patience_s`` has passed since the outage began; then stop."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since, self._backoff = now, OUTAGE_BACKOFF_S[0]
            self.stats.outages += 1
        else:
            self._backoff = min(self._backoff * 2, OUTAGE_BACKOFF_S[1])
        down = now - self._down_since
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        if down >= self.llm_patience_s:
            self._record_outage(down, reason)
            self.stats.llm_down = True
            self.stats.stopped = (
                f"the LLM was unavailable for {down:.0f} s (patience {self.llm_patience_s:g} s): "
                f"{reason}"
            )
            return
        self._retry_at = now + min(self._backoff, self.llm_patience_s - down)
        self._last_reason = reason

    def _llm_back(self) -> None:
        if self._down_since is not None:
            self._record_outage(time.monotonic() - self._down_since, self._last_reason)
            self._down_since = None

    def _record_outage(self, seconds: float, reason: str) -> None:
        self.stats.outage_seconds += seconds
        outages = self.store.get_state("llm_outages", [])
        outages.append({"ended": time.time(), "seconds": round(seconds, 1), "error": reason})
        self.store.set_state("llm_outages", outages)

    # ------------------------------------------------------------------ steps

    def _admit(self, prop: Proposal, inflight: set[str], proposer) -> tuple | None:
        """Through the pipeline's gate; record it at once if it cannot be evaluated."""
        admitted = self.pipeline.admit(prop, inflight)
        if admitted.result is not None:
            self._commit(prop, admitted.source, admitted.hash, admitted.result, None, proposer)
            return None
        pid = self.store.add_pending(prop)
        return (pid, prop, admitted.source, admitted.hash)

    def _commit(self, prop: Proposal, source, digest, result, pending_id, proposer) -> None:
        if self.stats.committed >= self.budget:
            return  # over budget: leave it pending (resume will not lose it)
        generation = 1 + max((self._generation.get(p, 0) for p in prop.parent_ids), default=-1)
        descriptors = compute_descriptors(result.metrics) if result.ok else {}
        cand = self.store.add_candidate(
            source=source,
            operator=prop.operator,
            result=result,
            hash=digest,
            parent_ids=prop.parent_ids,
            meta=prop.meta,
            descriptors=descriptors,
            generation=generation,
            device=self.pipeline.device,
            pending_id=pending_id,
        )
        if "prompt" in prop.meta:  # the LLM call behind it (recorded by now, or just below)
            self._flush_calls()
            self.store.link_calls(prompt_sha256(prop.meta["prompt"]), cand.id)
        self._note(cand)
        self.stats.committed += 1
        if result.failure is not None:
            self.stats.failures[result.failure.kind.value] += 1
        self.pipeline.observe(result)
        proposer.submit(self._tell, cand)
        if self.on_progress:
            self.on_progress(self.stats)

    def _tell(self, cand: Candidate) -> None:
        """Runs on the proposer thread: store -> archive -> strategy."""
        self.archive.add(cand)
        self.strategy.tell([cand])
        self._refresh()

    def _note(self, cand: Candidate) -> None:
        self._generation[cand.id] = cand.generation
        acc = cand.val_accuracy
        if cand.status is Status.OK and acc is not None:
            if self.stats.best_val is None or acc > self.stats.best_val:
                self.stats.best_val, self.stats.best_id = acc, cand.id

    def _refresh(self) -> None:
        self.stats.coverage = float(self.archive.coverage)
        self.stats.qd_score = float(self.archive.qd_score)

    def _flush_calls(self) -> None:
        for call in self.calls.drain():
            self.store.record(call)
        self.stats.tokens, self.stats.cost = self.calls.tokens, self.calls.cost
