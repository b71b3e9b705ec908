"""Tests for the SQLite run store: round trip, errors, pending, LLM calls, kill -9 durability."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from llmnas.records import EvalResult, FailureKind, Proposal, Status
from llmnas.store import SCHEMA_VERSION, RunStore, StoreError

SOURCE = "import torch\n\nclass Model(torch.nn.Module):\n    pass\n"


def _ok(acc: float = 0.75, params: int = 410) -> EvalResult:
    return EvalResult(
        status=Status.OK,
        metrics={"val_accuracy": acc, "params": params, "flops": 1234, "train_seconds": 1.5},
        proxies={"synflow": 3.25, "naswot": None},
        proxy_notes={"naswot": "non-finite"},
        timings={"build": 0.01, "train": 1.5},
    )


def _fill(store: RunStore) -> list:
    first = store.add_candidate(
        source=SOURCE,
        operator="seed",
        result=_ok(),
        hash="aaa",
        descriptors={"log10_params": 2.61, "log10_flops": 3.09},
        meta={"note": {"nested": [1, 2, 3]}, "seed_file": "mlp.py"},
        device="cpu",
    )
    second = store.add_candidate(
        **Proposal(source=SOURCE + "# 2\n", operator="mutate", parent_ids=[first.id]).model_dump(),
        result=EvalResult.failed(FailureKind.SHAPE, "  expected (2, 10)  ", stage="shape"),
        hash="bbb",
        generation=1,
    )
    third = store.add_candidate(
        source="x = (",
        operator="crossover",
        parent_ids=[first.id, second.id],
        result=EvalResult.failed(FailureKind.REJECTED, "duplicate"),
        hash="ccc",
        generation=2,
    )
    return [first, second, third]


def test_round_trip_all_fields(tmp_path: Path) -> None:
    run = tmp_path / "run"
    store = RunStore.create(run, config={"task": "mnist1d", "budget": 10}, seeds={"run": 7})
    written = _fill(store)
    assert [c.id for c in written] == [1, 2, 3]
    assert written[0].meta["device"] == "cpu"
    store.close()

    store = RunStore.open(run)
    assert store.candidates() == written
    assert store.get(2) == written[1]
    assert store.find_hash("ccc") == written[2]
    assert store.find_hash("zzz") is None
    assert store.count() == 3 and store.count(Status.FAILED) == 1
    assert [c.id for c in store.candidates(status="rejected")] == [3]
    assert store.config() == {"task": "mnist1d", "budget": 10}
    env = store.environment()
    assert env["seeds"] == {"run": 7} and "python" in env["versions"] and env["hardware"]
    summaries = store.summaries()
    assert [s.id for s in summaries] == [1, 2, 3]
    assert summaries[0].metrics == written[0].result.metrics
    assert summaries[0].descriptors == written[0].descriptors
    assert summaries[1].failure_kind is FailureKind.SHAPE and summaries[2].parent_ids == [1, 2]
    assert store.integrity_check() == "ok"
    with pytest.raises(StoreError, match="no candidate with id 99"):
        store.get(99)
    store.close()


def test_state_and_pending(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run", config={})
    rng_state = {"bit_generator": "PCG64", "state": {"state": 2**100 + 3, "inc": 5}}
    store.set_state("rng", rng_state)
    store.set_state("rng", {**rng_state, "has_uint32": 0})
    assert store.get_state("missing", default=1) == 1
    proposals = [Proposal(source=f"# {i}", operator="mutate", parent_ids=[i]) for i in range(3)]
    ids = [store.add_pending(p) for p in proposals]
    store.add_candidate(**proposals[0].model_dump(), result=_ok(), pending_id=ids[0])
    store.add_candidate(**proposals[1].model_dump(), result=_ok(), pending_id=ids[1])
    store.close()

    store = RunStore.open(tmp_path / "run")
    assert store.get_state("rng") == {**rng_state, "has_uint32": 0}
    assert store.pending() == [(ids[2], proposals[2])]
    store.close()


class _Call(BaseModel):
    messages: list[dict[str, str]]
    replies: list[str]
    model: str
    params: dict[str, float]
    usage: dict[str, int]
    latency_s: float
    error: str | None = None
    prompt_sha256: str
    backend: str = "replay"


def test_llm_calls_recorded_and_linked(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run", config={})
    call = _Call(
        messages=[{"role": "user", "content": "mutate this"}],
        replies=["class Model: ..."],
        model="gpt-x",
        params={"temperature": 0.8},
        usage={"prompt_tokens": 12, "completion_tokens": 30},
        latency_s=0.25,
        prompt_sha256="f" * 64,
    )
    first = store.record(call)
    second = store.record({"messages": [], "replies": [], "model": "m", "error": "timeout"})
    cand = store.add_candidate(
        source=SOURCE, operator="mutate", result=_ok(), meta={"llm_call_ids": [first]}
    )
    calls = store.llm_calls()
    assert [c["id"] for c in calls] == [first, second]
    assert calls[0]["messages"] == call.messages and calls[0]["usage"]["completion_tokens"] == 30
    assert calls[0]["candidate_id"] == cand.id and calls[0]["extra"] == {"backend": "replay"}
    assert calls[1]["error"] == "timeout" and calls[1]["candidate_id"] is None
    assert [c["id"] for c in store.llm_calls(candidate_id=cand.id)] == [first]
    store.close()


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such run directory") as info:
        RunStore.open(tmp_path / "nope")
    assert "\n" not in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="no run.sqlite"):
        RunStore.open(tmp_path / "empty")
    RunStore.create(tmp_path / "run", config={}).close()
    with pytest.raises(StoreError, match="already exists"):
        RunStore.create(tmp_path / "run", config={})
    conn = sqlite3.connect(tmp_path / "run" / "run.sqlite")
    conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this llmnas supports"):
        RunStore.open(tmp_path / "run")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "run.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="cannot read run store"):
        RunStore.open(tmp_path / "junk")


def test_reader_sees_commits_of_live_writer(tmp_path: Path) -> None:
    writer = RunStore.create(tmp_path / "run", config={})
    reader = RunStore.open(tmp_path / "run", read_only=True)
    writer.add_candidate(source=SOURCE, operator="seed", result=_ok())
    assert reader.count() == 1
    reader.close()
    writer.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from llmnas.records import EvalResult
    from llmnas.store import RunStore
    store = RunStore.create(sys.argv[1], config={"kill": 9})
    source = "# candidate\\n" * 150
    i = 0
    while True:
        i += 1
        result = EvalResult(status="ok", metrics={"val_accuracy": 0.5, "params": i})
        cand = store.add_candidate(source=source, operator="seed", result=result, hash=str(i))
        print(cand.id, flush=True)
    """
)


def test_kill_9_keeps_every_committed_candidate(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(run)], stdout=subprocess.PIPE, text=True, env=env
    )
    reported: list[int] = []
    deadline = time.monotonic() + 30
    try:
        while len(reported) < 200 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            reported.append(int(line))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=10)
    reported += [int(x) for x in rest.split()]
    assert proc.returncode == -signal.SIGKILL
    assert len(reported) >= 200, "writer did not report enough commits"

    store = RunStore.open(run)
    stored = [c.id for c in store.summaries()]
    assert set(reported) <= set(stored)
    assert stored == list(range(1, len(stored) + 1))
    assert store.integrity_check() == "ok"
    assert store.get(reported[-1]).result.metrics["params"] == reported[-1]
    store.close()
