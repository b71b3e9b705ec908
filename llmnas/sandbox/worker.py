"""The warm worker: a long-lived interpreter (inside the sandbox) that forks one child per job.

Started as ``python -I -m llmnas.sandbox.worker DATA_DIR``. It imports torch once, loads the
pool's data arrays once (they are shared with every child copy-on-write), never runs a torch
operation itself (so no thread pool exists at fork time) and never initialises CUDA.

Protocol on stdin/stdout, one JSON object per line:
  worker -> host  ``{"ready": true, "pid": int, "base_vm_bytes": int}`` once after start;
  host -> worker  ``{"job": folder}``;
  worker -> host  ``{"job": folder, "exit": int|null, "signal": int|null, "timed_out": bool,
                    "memory_killed": bool, "wall_seconds": float}``.
The job's own details are in ``folder/job.json``; the child writes its results into the folder.

The worker is a child subreaper: when a job ends it kills the child's process group and then
every process still re-parented to it, so a candidate leaves nothing behind.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch._dynamo  # noqa: F401  (the optimisers import it lazily on their first step)
import torch.utils.flop_counter  # noqa: F401

import llmnas.proxies as proxies
import llmnas.sandbox.child as child


def _warm_up() -> None:
    """Run the common layers once, single-threaded, so each forked child finds torch's lazy
    initialisation done. With one thread no OpenMP team is ever created, so forking stays safe.
    """
    nn = torch.nn
    torch.set_num_threads(1)
    cases = [
        (
            nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.MaxPool1d(2)),
            (2, 1, 16),
        ),
        (
            nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.GELU(), nn.AvgPool2d(2)),
            (2, 1, 8, 8),
        ),
        (nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Dropout(0.1), nn.Tanh()), (4, 8)),
        (nn.GRU(1, 4, batch_first=True, bidirectional=True), (2, 5, 1)),
        (nn.LSTM(1, 4, batch_first=True), (2, 5, 1)),
    ]
    for module, shape in cases:
        x = torch.randn(*shape)
        out = module(x)
        out = out[0] if isinstance(out, tuple) else out
        torch.nn.functional.cross_entropy(
            out.flatten(1), torch.zeros(shape[0], dtype=torch.long)
        ).backward()
        for opt in (torch.optim.Adam, torch.optim.SGD):
            opt(module.parameters(), lr=1e-3).step()
        with torch.no_grad(), torch.utils.flop_counter.FlopCounterMode(display=False):
            module(x)
    attn = nn.MultiheadAttention(8, 2, batch_first=True)
    q = torch.randn(2, 5, 8)
    attn(q, q, q)[0].sum().backward()
    proxies.warm_up()


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_LIBC = ctypes.CDLL(None, use_errno=True)


def _vm_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children() -> list[int]:
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == me:
            out.append(int(entry))
    return out


def _sweep(pgid: int) -> None:
    """Kill the job's process group, then anything re-parented to us; reap everything."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
    for _ in range(50):
        left = _children()
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.005)


def _run(folder: Path, data: dict[str, np.ndarray], hidden: list[str]) -> dict:
    job = json.loads((folder / "job.json").read_text())
    timeout = float(job["timeout"])
    rss_cap = int(job["memory_mb"]) * 2**20 if job.get("memory_mb") else None
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with its worker
            if os.getppid() == 1:
                os._exit(5)
            out_fd = os.open(folder / "output.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            null_fd = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null_fd, 0)  # the job protocol stays out of the candidate's reach
            os.dup2(out_fd, 1)
            os.dup2(out_fd, 2)
            child.run_job(folder, data, hidden)
        finally:
            os._exit(4)
    pidfd = os.pidfd_open(pid)
    timed_out = memory_killed = False
    status = None
    while status is None:
        remaining = timeout - (time.monotonic() - start)
        if remaining <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([pidfd], [], [], min(remaining, 0.05))
        if ready:
            _, status = os.waitpid(pid, 0)
            break
        if rss_cap and job["device"].startswith("cuda") and _rss_bytes(pid) > rss_cap:
            memory_killed = True
            break
    if status is None:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    os.close(pidfd)
    _sweep(pid)
    return {
        "job": str(folder),
        "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "timed_out": timed_out,
        "memory_killed": memory_killed,
        "wall_seconds": time.monotonic() - start,
    }


def main() -> None:
    data_dir = Path(sys.argv[1])
    hidden = json.loads(sys.argv[2]) if len(sys.argv) > 2 else []
    _LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    data = {p.stem: np.load(p, allow_pickle=False) for p in sorted(data_dir.glob("*.npy"))}
    _warm_up()
    out = sys.stdout
    out.write(json.dumps({"ready": True, "pid": os.getpid(), "base_vm_bytes": _vm_bytes()}) + "\n")
    out.flush()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        request = json.loads(line)
        reply = _run(Path(request["job"]), data, hidden)
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
