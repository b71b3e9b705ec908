"""Runs and a live `llmnas ui` server for the explorer's tests (HTTP and browser).

The runs are real: a synthetic-task LLM run replayed from a cassette whose replies, code and
failure messages carry script tags, and an NB201 random-search run. The server is the real CLI
in a subprocess on a free loopback port.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llmnas.config import RunConfig
from llmnas.runner import start_run

LLMNAS = [sys.executable, "-m", "llmnas"]

ATTACK = "</script><script>window.__pwned = 1; alert('x')</script><img src=x onerror=\"alert(2)\">"

PROGRAM = '''
"""A {width}-unit MLP. {attack}"""
import torch
from torch import nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1], {width}), nn.ReLU(), nn.Linear({width}, num_classes))

    def forward(self, x):
        {body}
        return self.net(x)
'''


def program(width: int, *, body: str = "pass") -> str:
    return PROGRAM.format(width=width, attack=ATTACK, body=body)


def make_runs(root: Path) -> dict[str, Path]:
    """An LLM run with hostile text in it and a tabular run, under ``root``."""
    cassette = root.parent / "ui-cassette.jsonl"
    replies = [
        f"{ATTACK}\nHere is a wider network:\n```python\n{program(32)}```",
        f"```python\n{program(24, body=f'raise RuntimeError({ATTACK!r})')}```",
        f"Narrower.\n```python\n{program(8)}```",
        f"```python\n{program(48)}```",
        f"```python\n{program(12)}```",
    ]
    cassette.write_text("".join(json.dumps({"response": r}) + "\n" for r in replies))
    # in-process (the CLI path of `llmnas run` is tested in test_loop.py): no interpreter start
    llm = root / "llm-run"
    stats = start_run(RunConfig(task="synthetic", strategy="llm", budget=20, epochs=2, out=str(llm),
                                llm={"spec": f"replay:{cassette}"}))  # fmt: skip
    assert stats.stopped.startswith("strategy exhausted"), stats.stopped
    tabular = root / "nb201" / "random"
    stats = start_run(RunConfig(task="nb201-cifar10", strategy="random", budget=30,
                                out=str(tabular)))  # fmt: skip
    assert stats.committed == 30
    return {"llm": llm, "tabular": tabular}


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """``llmnas ui FOLDER --port 0`` in a subprocess; yields its base URL."""
    proc = subprocess.Popen(
        [*LLMNAS, "ui", str(folder), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("http://127.0.0.1:"), (
            line,
            proc.stderr.read() if proc.poll() else "",
        )
        base = line.rstrip("/")
        deadline = time.monotonic() + 30
        import urllib.request

        while True:
            try:
                urllib.request.urlopen(base + "/api/runs", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
