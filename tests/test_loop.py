"""End-to-end runs on the synthetic task through the real CLI, store and sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmnas.store import RunStore

LLMNAS = [sys.executable, "-m", "llmnas"]

PROGRAM = """
import torch
from torch import nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1], {width}), nn.ReLU(), nn.Linear({width}, num_classes))

    def forward(self, x):
        return self.net(x)
"""


def cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    return subprocess.run(
        [*LLMNAS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **(env or {})},
    )


def wait_for_commits(run_dir: Path, n: int, timeout: float = 240) -> int:
    """Poll a live run (read-only) until it has ``n`` committed candidates; the count seen."""
    deadline, committed = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and committed < n:
        time.sleep(0.3)
        try:
            with RunStore.open(run_dir, read_only=True) as store:
                committed = store.count()
        except Exception:  # noqa: BLE001 - the writer may still be creating it
            committed = 0
    return committed


def rows(run_dir: Path) -> list[dict]:
    res = cli("archive", "list", str(run_dir), "--json")
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


@pytest.mark.slow
def test_ast_run_end_to_end(tmp_path):
    run_dir = tmp_path / "ast"
    res = cli(
        "run",
        "--task",
        "synthetic",
        "--strategy",
        "auto",
        "--budget",
        "8",
        "--seed",
        "1",
        "--out",
        str(run_dir),
    )
    assert res.returncode == 0, res.stderr
    assert "using the AST operator" in res.stderr
    listed = rows(run_dir)
    assert [r["id"] for r in listed] == list(range(1, 9))
    assert {
        "id",
        "parent_ids",
        "operator",
        "status",
        "failure_kind",
        "hash",
        "val_accuracy",
        "params",
    } <= set(listed[0])
    assert [r["operator"] for r in listed[:2]] == ["seed", "seed"]
    assert all(r["operator"] == "ast" and r["parent_ids"] for r in listed[2:])
    ok_hashes = [r["hash"] for r in listed if r["status"] == "ok"]
    assert len(ok_hashes) == len(set(ok_hashes)), "a duplicate was trained twice"
    best = json.loads(cli("archive", "best", str(run_dir), "--json").stdout)
    assert best["metrics"]["val_accuracy"] == max(r["val_accuracy"] or 0 for r in listed)
    assert 0.0 <= best["metrics"]["val_accuracy"] <= 1.0
    show = json.loads(cli("archive", "show", str(run_dir), "--json").stdout)
    assert show["candidates"] == 8 and Path(show["heatmap"]).is_file()


@pytest.mark.slow
def test_replay_run_records_failures_duplicates_and_stops_cleanly(tmp_path):
    cassette = tmp_path / "cassette.jsonl"
    replies = [
        "Here is a wider network:\n```python\n" + PROGRAM.format(width=32) + "```",
        "I cannot help with that.",
        "```python\n" + PROGRAM.format(width=32) + "```",  # the same program again
        "```python\n" + PROGRAM.format(width=16)[:-40] + "```",  # truncated
    ]
    cassette.write_text("".join(json.dumps({"response": r}) + "\n" for r in replies))
    run_dir = tmp_path / "replay"
    res = cli(
        "run",
        "--task",
        "synthetic",
        "--llm",
        f"replay:{cassette}",
        "--budget",
        "20",
        "--out",
        str(run_dir),
    )
    assert res.returncode == 0, res.stderr
    assert "exhausted" in res.stderr
    listed = rows(run_dir)
    by_op = [r for r in listed if r["operator"] != "seed"]
    assert len(by_op) == 4
    kinds = sorted((r["status"], r["failure_kind"]) for r in by_op)
    assert kinds == [
        ("failed", "syntax"),
        ("failed", "syntax"),
        ("ok", None),
        ("rejected", "rejected"),
    ]
    with RunStore.open(run_dir, read_only=True) as store:
        calls = store.llm_calls()
        assert sum(c["error"] is None for c in calls) == 4
        assert [c for c in calls if c["error"]] and all(
            "exhausted" in c["error"].lower() or "cassette" in c["error"].lower()
            for c in calls
            if c["error"]
        )
        mutated = [
            c for c in store.candidates() if c.status.value == "ok" and c.operator != "seed"
        ][0]
        assert "wider" in mutated.meta["reply"] and mutated.meta["prompt"][0]["role"] == "system"


@pytest.mark.slow
def test_kill_minus_nine_then_resume_loses_nothing(tmp_path):
    run_dir = tmp_path / "killed"
    base = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    proc = subprocess.Popen(
        [
            *LLMNAS,
            "run",
            "--task",
            "synthetic",
            "--strategy",
            "ast",
            "--budget",
            "10",
            "--epochs",
            "30",
            "--seed",
            "3",
            "--out",
            str(run_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=base,
        start_new_session=True,
    )
    committed = wait_for_commits(run_dir, 4)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert committed >= 4, "the run did not get going"
    with RunStore.open(run_dir, read_only=True) as store:
        before = {c.id: (c.hash, c.result.metrics.get("val_accuracy")) for c in store.candidates()}
    res = cli("resume", str(run_dir))
    assert res.returncode == 0, res.stderr
    with RunStore.open(run_dir) as store:
        after = store.candidates()
        assert store.pending() == []
        assert store.integrity_check() == "ok"
    assert len(after) == 10
    assert [c.id for c in after] == list(range(1, 11))
    for c in after:
        if c.id in before:
            assert (c.hash, c.result.metrics.get("val_accuracy")) == before[c.id]
    trained = [c.hash for c in after if c.status.value == "ok"]
    assert len(trained) == len(set(trained)), "something was trained twice"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--task", "imagenet", "--out", "x"], "unknown task"),
        (["run", "--task", "synthetic", "--strategy", "magic", "--out", "x"], "--strategy"),
        (["resume", "/nonexistent/run"], "no such run"),
        (["archive", "list", "/nonexistent/run"], "no such run"),
        (["evaluate", "/nonexistent.py", "--task", "synthetic"], "not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path):
    args = [str(tmp_path / a) if a == "x" else a for a in args]
    res = cli(*args)
    assert res.returncode == 2
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists(), "a failed start must not leave a run folder"


def test_malformed_config_is_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("task = 'synthetic'\nbudgett = 3\n")
    res = cli("run", "--config", str(bad), "--out", str(tmp_path / "r"))
    assert res.returncode == 2 and "budgett" in res.stderr


@pytest.mark.slow
def test_any_run_replays_from_its_exported_cassette(tmp_path):
    cassette = tmp_path / "c.jsonl"
    cassette.write_text(
        "".join(
            json.dumps({"response": "```python\n" + PROGRAM.format(width=w) + "```"}) + "\n"
            for w in (8, 24)
        )
    )
    first, second = tmp_path / "first", tmp_path / "second"
    assert (
        cli(
            "run",
            "--task",
            "synthetic",
            "--llm",
            f"replay:{cassette}",
            "--budget",
            "6",
            "--out",
            str(first),
        ).returncode
        == 0
    )
    exported = tmp_path / "exported.jsonl"
    assert cli("archive", "cassette", str(first), "--to", str(exported)).returncode == 0
    assert len(exported.read_text().splitlines()) == 2
    assert (
        cli(
            "run",
            "--task",
            "synthetic",
            "--llm",
            f"replay:{exported}",
            "--budget",
            "6",
            "--out",
            str(second),
        ).returncode
        == 0
    )
    assert [r["hash"] for r in rows(first)] == [r["hash"] for r in rows(second)]


@pytest.mark.slow
def test_sequential_runs_are_reproducible(tmp_path):
    config = tmp_path / "seq.toml"
    config.write_text(
        'task = "nb201-cifar10"\nstrategy = "regevo"\nbudget = 40\nseed = 4\nsequential = true\n'
    )
    hashes = []
    for name in ("a", "b"):
        assert cli("run", "--config", str(config), "--out", str(tmp_path / name)).returncode == 0
        hashes.append([r["hash"] for r in rows(tmp_path / name)])
    assert hashes[0] == hashes[1] and len(set(hashes[0])) > 20


@pytest.mark.slow
def test_export_gives_a_standalone_program_and_weights_loadable_with_plain_torch(tmp_path):
    run_dir, out = tmp_path / "run", tmp_path / "export"
    assert (
        cli(
            "run",
            "--task",
            "synthetic",
            "--strategy",
            "ast",
            "--budget",
            "3",
            "--out",
            str(run_dir),
        ).returncode
        == 0
    )
    res = cli("archive", "export", str(run_dir), "--to", str(out))
    assert res.returncode == 0, res.stderr
    best = json.loads(cli("archive", "best", str(run_dir), "--json").stdout)
    program = out / f"candidate_{best['id']}.py"
    weights = out / f"candidate_{best['id']}.safetensors"
    check = (
        "import runpy, sys, torch, safetensors.torch as st\n"
        f"ns = runpy.run_path({str(program)!r})\n"
        "m = ns['Model']((1, 8), 4)\n"
        f"m.load_state_dict(st.load_file({str(weights)!r}))\n"
        "print(sum(p.numel() for p in m.parameters()))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=120
    )
    assert loaded.returncode == 0, loaded.stderr
    assert int(loaded.stdout.strip()) == best["metrics"]["params"]


@pytest.mark.slow
def test_ctrl_c_stops_gracefully_and_leaves_a_resumable_run(tmp_path):
    run_dir = tmp_path / "interrupted"
    base = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    proc = subprocess.Popen(
        [
            *LLMNAS,
            "run",
            "--task",
            "synthetic",
            "--strategy",
            "ast",
            "--budget",
            "40",
            "--epochs",
            "30",
            "--out",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=base,
    )
    wait_for_commits(run_dir, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "interrupted" in err and f"llmnas resume {run_dir}" in err
    with RunStore.open(run_dir) as store:
        assert 2 <= store.count() < 40
        assert store.integrity_check() == "ok"
