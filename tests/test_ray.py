"""The Ray executor on a real local Ray (one head, ``num_cpus=2``): real actors, real sandbox
workers, real SIGKILLs of actor processes and of the driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")

from llmnas.config import ExecutorSettings, RunConfig  # noqa: E402
from llmnas.executors.ray_pool import RayExecutor  # noqa: E402
from llmnas.records import FailureKind  # noqa: E402
from llmnas.runner import start_run  # noqa: E402
from llmnas.store import RunStore  # noqa: E402

pytestmark = pytest.mark.ray

LLMNAS = [sys.executable, "-m", "llmnas"]
TWO_ACTORS = ExecutorSettings(kind="ray", actors=2, workers_per_node=1)

SPIN = """
import torch


class Model(torch.nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        while True:
            pass
"""


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _job(task, source: str, *, epochs: int = 1, timeout: float = 60.0) -> dict:
    return {
        "source": source, "input_shape": list(task.input_shape), "num_classes": task.num_classes,
        "recipe": asdict(task.recipe), "epochs": epochs, "proxies": [], "predict": ["val"],
        "timeout": timeout, "memory_mb": 2048,
    }  # fmt: skip


def _wait(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _busy(executor: RayExecutor) -> list[int]:
    return [a["pid"] for a in executor.actors() if a["busy"]]


def test_actors_return_logits_and_the_driver_keeps_the_labels(local_ray, synthetic) -> None:
    data = synthetic.load()
    arrays = {"train_x": data.train.x, "train_y": data.train.y, "val_x": data.val.x}
    with pytest.raises(ValueError, match="labels other than train_y"):
        RayExecutor(data={**arrays, "val_y": data.val.y}, settings=TWO_ACTORS, workers=1)
    source = next(iter(synthetic.seed_programs().values()))
    with RayExecutor(data=arrays, settings=TWO_ACTORS, workers=1) as ex:
        assert ex.size == 2 and ex.mode in ("bwrap", "rlimits")
        pids = {a["pid"] for a in ex.actors()}
        assert len(pids) == 2 and os.getpid() not in pids
        assert all(a["worker_gpus"] == [""] for a in ex.actors())  # CPU actors: no device
        report = ex.run(_job(synthetic, source), expect={"val": len(data.val.y)},
                        num_classes=synthetic.num_classes)  # fmt: skip
    assert report.failure is None and report.logits["val"].shape == (len(data.val.y), 4)
    assert report.metrics["params"] > 0 and "val_accuracy" not in report.metrics


def test_a_job_whose_actor_dies_runs_once_more_elsewhere_then_is_a_crash(
    local_ray, synthetic
) -> None:
    data = synthetic.load()
    arrays = {"train_x": data.train.x, "train_y": data.train.y, "val_x": data.val.x}
    expect = {"val": len(data.val.y)}
    with RayExecutor(data=arrays, settings=TWO_ACTORS, workers=1) as ex:
        result = {}
        thread = threading.Thread(target=lambda: result.update(report=ex.run(
            _job(synthetic, SPIN, timeout=120), expect=expect, num_classes=4)))  # fmt: skip
        thread.start()
        _wait(lambda: _busy(ex))
        first = _busy(ex)[0]
        os.kill(first, signal.SIGKILL)  # mid-candidate: the job spins until its timeout
        _wait(lambda: ex.requeued == 1 and [p for p in _busy(ex) if p != first])
        second = [p for p in _busy(ex) if p != first][0]
        os.kill(second, signal.SIGKILL)
        thread.join(timeout=120)
        report = result["report"]
        kind, message, stage = report.failure
        assert kind == FailureKind.CRASH and stage == "run"
        assert message.startswith("the sandbox actor running it died twice")
        assert f"pid {first}" in message and f"pid {second}" in message
        assert ex.requeued == 1 and len(ex.deaths) == 2
        # the executor goes on with replacement actors, which remove the dead ones' scratch
        _wait(lambda: len(ex.actors()) == 2)
        assert not {first, second} & {a["pid"] for a in ex.actors()}
        for pid in (first, second):
            assert not list(Path(tempfile.gettempdir()).glob(f"llmnas-actor-{pid}-*"))
        source = next(iter(synthetic.seed_programs().values()))
        assert ex.run(_job(synthetic, source), expect=expect, num_classes=4).failure is None


def _check_store(run_dir: Path, budget: int) -> list[dict]:
    with RunStore.open(run_dir) as store:
        assert store.integrity_check() == "ok"
        assert store.pending() == []
        cands = store.candidates()
    assert [c.id for c in cands] == list(range(1, budget + 1))  # every candidate once
    trained = [c.hash for c in cands if c.status.value != "rejected"]
    assert len(trained) == len(set(trained))  # no program trained twice
    res = subprocess.run([*LLMNAS, "archive", "list", str(run_dir), "--json"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert sorted(r["id"] for r in rows) == list(range(1, budget + 1))
    return rows


def test_an_ast_search_survives_an_actor_killed_mid_run(local_ray, tmp_path: Path) -> None:
    config = RunConfig(task="synthetic", strategy="ast", budget=20, epochs=1, seed=0,
                       out=str(tmp_path / "run"), executor=TWO_ACTORS)  # fmt: skip
    seen: dict = {}

    def ready(run, why: str) -> None:
        seen["executor"] = run.evaluator.executor

    def progress(stats) -> None:
        ex = seen["executor"]
        if stats.committed >= 4 and "killed" not in seen:
            pids = _busy(ex) or [a["pid"] for a in ex.actors()]
            seen["killed"] = pids[0]
            os.kill(pids[0], signal.SIGKILL)

    stats = start_run(config, ready, progress)
    assert stats.stopped.startswith("budget") and stats.committed == 20
    ex = seen["executor"]
    assert len(ex.deaths) >= 1 and f"pid {seen['killed']}" in ex.deaths[0]
    assert ex.requeued >= 1  # the dead actor's job (or the next one sent to it) ran elsewhere
    rows = _check_store(tmp_path / "run", 20)
    assert sum(r["status"] == "ok" for r in rows) >= 10


@pytest.mark.slow
def test_resume_after_the_driver_of_a_ray_run_is_killed(tmp_path: Path) -> None:
    run_dir, conf = tmp_path / "run", tmp_path / "run.toml"
    conf.write_text('[executor]\nkind = "ray"\nactors = 2\nworkers_per_node = 1\n'
                    "[repeats]\ntop_k = 0\n")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "RAY_ADDRESS"))}
    argv = [*LLMNAS, "run", "--task", "synthetic", "--strategy", "ast", "--budget", "10",
            "--epochs", "30", "--seed", "1", "--config", str(conf), "--out", str(run_dir)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)  # fmt: skip
    try:
        committed = 0
        deadline = time.monotonic() + 240
        while committed < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            try:
                with RunStore.open(run_dir, read_only=True) as store:
                    committed = store.count()
            except Exception:  # noqa: BLE001 - the driver may still be creating it
                pass
        os.kill(proc.pid, signal.SIGKILL)  # the driver only; its Ray must not outlive it
        proc.wait()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    assert 4 <= committed < 10, "the run did not get going, or finished before the kill"
    with RunStore.open(run_dir, read_only=True) as store:
        before = {c.id: (c.hash, c.result.metrics.get("val_accuracy")) for c in store.candidates()}
    res = subprocess.run([*LLMNAS, "resume", str(run_dir)], capture_output=True, text=True,
                         timeout=300, env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "executor ray" in res.stderr
    _check_store(run_dir, 10)
    with RunStore.open(run_dir, read_only=True) as store:
        after = {c.id: (c.hash, c.result.metrics.get("val_accuracy")) for c in store.candidates()}
    assert all(after[i] == before[i] for i in before)  # nothing committed was lost or changed
