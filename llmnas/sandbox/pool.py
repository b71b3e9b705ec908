"""Host side of the sandbox: a pool of warm workers, job dispatch, and reading results safely.

The host writes each job into a fresh folder of a worker's scratch space, asks the worker to
run it, waits (with its own deadline on top of the worker's), and then reads the child's
``result.json`` and logits with strict checks: JSON only (never pickle), bounded sizes, known
keys, numeric values, logits of the exact expected shape. A worker that dies (for example
because a candidate killed it) is replaced; the candidate gets a ``crash`` failure.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmnas.devices import child_gpu
from llmnas.records import FailureKind
from llmnas.sandbox.isolation import clean_env, hidden_paths, isolation_mode, worker_command

__all__ = ["ChildReport", "SandboxError", "SandboxPool"]

CHILD_METRICS = ("params", "flops", "depth", "width", "train_seconds", "train_steps")
_RESULT_LIMIT = 1_000_000
_OUTPUT_TAIL = 400


class SandboxError(RuntimeError):
    """The sandbox itself cannot work (a worker does not start): a framework fault."""


@dataclass
class ChildReport:
    """What the host accepted from one child run."""

    failure: tuple[FailureKind, str, str] | None = None
    metrics: dict[str, float | int] = field(default_factory=dict)
    proxies: dict[str, float | None] = field(default_factory=dict)
    proxy_notes: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    logits: dict[str, np.ndarray] = field(default_factory=dict)
    weights: bytes | None = None


class _Worker:
    def __init__(self, index: int, pool: SandboxPool):
        self.index, self.pool = index, pool
        self.scratch = pool.root / f"w{index}"
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.base_vm_bytes = 0
        self._buffer = b""
        self._jobs = itertools.count()

    def spawn(self) -> None:
        """Start the worker process (it imports torch and maps the data meanwhile)."""
        cmd = worker_command(
            sys.executable,
            self.scratch,
            self.pool.data_dir,
            hidden=self.pool.hidden,
            use_bwrap=self.pool.mode == "bwrap",
        )
        cmd += [str(self.pool.data_dir), json.dumps([str(h) for h in self.pool.hidden])]
        env = clean_env(self.pool.worker_env(self.index))
        self.log = open(self.pool.root / f"w{self.index}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            cwd=self.scratch,
            start_new_session=True,
        )
        self._buffer = b""

    def wait_ready(self) -> None:
        """Wait for the worker's ready line; :class:`SandboxError` if it never comes."""
        ready = self._read_line(self.pool.start_timeout)
        if not ready or not ready.get("ready"):
            tail = (
                (self.pool.root / f"w{self.index}.log").read_bytes()[-800:].decode(errors="replace")
            )
            self.stop()
            raise SandboxError(f"sandbox worker did not start: {tail.strip() or 'no output'}")
        self.base_vm_bytes = int(ready.get("base_vm_bytes", 0))

    def _read_line(self, timeout: float) -> dict[str, Any] | None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
            for stream in filter(None, (self.proc.stdin, self.proc.stdout)):
                stream.close()
            self.proc = None
        if getattr(self, "log", None):
            self.log.close()

    def run(self, job: dict[str, Any]) -> tuple[Path, dict[str, Any] | None]:
        if not self.alive():
            self.spawn()
            self.wait_ready()
        folder = self.scratch / f"job-{next(self._jobs)}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        job = {**job, "base_vm_bytes": self.base_vm_bytes}
        (folder / "job.json").write_text(json.dumps(job))
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"job": str(folder)}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.stop()
            return folder, None
        reply = self._read_line(float(job["timeout"]) + 30.0)
        if reply is None or reply.get("job") != str(folder):
            try:  # end of output comes a moment before the process is reaped
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            died = not self.alive()
            self.stop()
            return folder, {"worker_died": died, "timed_out": not died}
        return folder, reply


class SandboxPool:
    """``workers`` warm sandbox workers sharing the read-only arrays in ``data``.

    ``isolation`` is ``"bwrap"``, ``"rlimits"`` (the degraded mode) or ``None`` (bubblewrap
    when it works here, else the degraded mode, announced once). ``data`` maps names to
    arrays: ``train_x``, ``train_y``, ``val_x``, optionally ``test_x``; never other labels.
    """

    def __init__(
        self,
        *,
        data: dict[str, np.ndarray],
        workers: int = 1,
        device: str = "cpu",
        threads: int | None = None,
        scratch: str | Path | None = None,
        hidden: list[Path] | None = None,
        start_timeout: float = 120.0,
        isolation: str | None = None,
    ):
        forbidden = {k for k in data if k.endswith("_y") and k != "train_y"}
        if forbidden:
            raise ValueError(f"labels other than train_y must not enter the sandbox: {forbidden}")
        if isolation not in (None, "bwrap", "rlimits"):
            raise ValueError(f"isolation must be bwrap, rlimits or None; got {isolation!r}")
        self.mode = isolation or isolation_mode()
        if self.mode == "bwrap" and isolation_mode() != "bwrap":
            raise SandboxError("bubblewrap isolation was asked for but bwrap does not work here")
        base = Path(scratch or os.environ.get("LLMNAS_SCRATCH") or tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="llmnas-pool-", dir=base)).resolve()
        self.data_dir = self.root / "data"
        self.data_dir.mkdir()
        for name, array in data.items():
            np.save(self.data_dir / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        self.device = device
        self.threads = threads or max(1, (os.cpu_count() or 1) // max(workers, 1))
        self.hidden = hidden_paths([Path(h) for h in (hidden or [])])
        self.start_timeout = start_timeout
        self._gpus = self._gpu_count() if device.startswith("cuda") else 0
        self._workers = [_Worker(i, self) for i in range(workers)]
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._booting, self._boot_lock = list(self._workers), threading.Lock()
        for w in self._workers:  # they boot side by side; the first job waits for them
            w.spawn()

    @staticmethod
    def _gpu_count() -> int:
        import torch

        return torch.cuda.device_count()

    @property
    def size(self) -> int:
        return len(self._workers)

    def worker_env(self, index: int) -> dict[str, str]:
        env = {
            "HOME": str(self.root / f"w{index}"),
            "TMPDIR": "/tmp" if self.mode == "bwrap" else str(self.root / f"w{index}"),
            "OMP_NUM_THREADS": str(self.threads),
            "MKL_NUM_THREADS": str(self.threads),
            "MALLOC_ARENA_MAX": "2",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
        }
        if self.device.startswith("cuda"):
            env["CUDA_VISIBLE_DEVICES"] = child_gpu(self.device, index, self._gpus)
        else:
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def job_device(self) -> str:
        return "cuda:0" if self.device.startswith("cuda") else "cpu"

    def run(self, job: dict[str, Any], *, expect: dict[str, int], num_classes: int) -> ChildReport:
        """Run one job on the next idle worker (blocks while all are busy)."""
        if self._closed:
            raise SandboxError("the sandbox pool is closed")
        job = {**job, "device": self.job_device(), "threads": self.threads}
        self.wait_ready()
        worker = self._idle.get()
        try:
            folder, reply = worker.run(job)
        finally:
            self._idle.put(worker)
        try:
            return _collect(folder, reply, job, expect, num_classes)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def wait_ready(self) -> None:
        """Wait until every worker has started; if one cannot, close the pool and raise."""
        with self._boot_lock:
            try:
                while self._booting:
                    self._booting[0].wait_ready()
                    self._idle.put(self._booting.pop(0))
            except SandboxError:
                self.close()
                raise

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for w in self._workers:
            w.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tail(folder: Path) -> str:
    try:
        with open(folder / "output.log", "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _OUTPUT_TAIL))
            text = fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f"; output ends: {text[-_OUTPUT_TAIL:]}" if text else ""


def _signal_failure(reply: dict[str, Any], job: dict[str, Any], folder: Path):
    if reply.get("timed_out"):
        return (FailureKind.TIMEOUT, f"exceeded the wall-time limit of {job['timeout']:g} s", "run")
    if reply.get("memory_killed"):
        return (FailureKind.MEMORY, f"exceeded the memory limit of {job['memory_mb']} MB", "run")
    if reply.get("worker_died"):
        return (FailureKind.CRASH, "the sandbox worker died during the run", "run")
    sig = reply.get("signal")
    if sig == signal.SIGXCPU:
        return (FailureKind.TIMEOUT, "exceeded the CPU-time limit", "run")
    if sig == signal.SIGXFSZ:
        return (FailureKind.CRASH, "wrote more than the 64 MiB output limit", "run")
    if sig == signal.SIGKILL:
        return (
            FailureKind.MEMORY,
            "killed (SIGKILL), most likely out of memory" + _tail(folder),
            "run",
        )
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return (FailureKind.CRASH, f"killed by signal {name}" + _tail(folder), "run")
    return (
        FailureKind.CRASH,
        f"exited with code {reply.get('exit')} without a result" + _tail(folder),
        "run",
    )


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _collect(folder, reply, job, expect, num_classes) -> ChildReport:
    report = ChildReport()
    if reply is None:
        reply = {"worker_died": True}
    result_path = folder / "result.json"
    result: dict[str, Any] | None = None
    if not reply.get("timed_out") and not reply.get("memory_killed") and result_path.is_file():
        if result_path.stat().st_size <= _RESULT_LIMIT:
            try:
                loaded = json.loads(result_path.read_text())
                result = loaded if isinstance(loaded, dict) else None
            except (ValueError, UnicodeDecodeError):
                result = None
    if result is None:
        report.failure = _signal_failure(reply, job, folder)
        return report
    metrics = result.get("metrics") if isinstance(result.get("metrics"), dict) else {}
    report.metrics = {k: v for k in CHILD_METRICS if (v := _number(metrics.get(k))) is not None}
    timings = result.get("timings") if isinstance(result.get("timings"), dict) else {}
    report.timings = {str(k)[:40]: float(v) for k, v in timings.items() if _number(v) is not None}
    report.timings["sandbox_wall_seconds"] = float(reply.get("wall_seconds", 0.0))
    proxies = result.get("proxies") if isinstance(result.get("proxies"), dict) else {}
    report.proxies = {str(k)[:40]: _number(v) for k, v in list(proxies.items())[:64]}
    notes = result.get("proxy_notes") if isinstance(result.get("proxy_notes"), dict) else {}
    report.proxy_notes = {str(k)[:40]: str(v)[:200] for k, v in list(notes.items())[:64]}
    failure = result.get("failure")
    if result.get("status") != "ok":
        kind = failure.get("kind") if isinstance(failure, dict) else None
        kind = kind if kind in FailureKind._value2member_map_ else "crash"
        message = str(failure.get("message", "")) if isinstance(failure, dict) else ""
        stage = str(failure.get("stage", "run"))[:20] if isinstance(failure, dict) else "run"
        report.failure = (FailureKind(kind), message[:500] or "failed", stage)
        return report
    if int(job["epochs"]) > 0:
        for split, rows in expect.items():
            path = folder / f"{split}_logits.npy"
            if not path.is_file() or path.stat().st_size > rows * num_classes * 8 + 4096:
                report.failure = (
                    FailureKind.CRASH,
                    f"no valid {split} logits were produced",
                    "predict",
                )
                return report
            try:
                logits = np.load(path, allow_pickle=False)
            except (ValueError, OSError) as exc:
                report.failure = (FailureKind.CRASH, f"unreadable {split} logits: {exc}", "predict")
                return report
            if logits.shape != (rows, num_classes) or logits.dtype.kind != "f":
                report.failure = (
                    FailureKind.SHAPE,
                    f"{split} logits have shape {logits.shape}",
                    "predict",
                )
                return report
            if not np.isfinite(logits).all():
                report.failure = (
                    FailureKind.NONFINITE,
                    f"{split} logits contain NaN or inf",
                    "predict",
                )
                return report
            report.logits[split] = logits.astype(np.float32)
        weights = folder / "weights.safetensors"
        if job.get("save_weights") and weights.is_file() and weights.stat().st_size < 2**31:
            report.weights = weights.read_bytes()
    return report
