"""The driver side of the Ray executor: actors with sandbox pools, job dispatch, and faults.

:class:`RayExecutor` connects to a cluster (``address = "auto"`` or ``"ray://…"``) or starts
a local Ray, puts the training arrays into the object store once, and starts ``actors``
:class:`~llmnas.executors.ray_actor.PoolActor` actors (default: one per alive node, spread
over the nodes), each holding ``workers_per_node`` warm sandbox workers. ``run`` is called
by the evaluation threads of the run loop, up to :attr:`size` at once; each call takes a
free worker slot of a live actor and waits for the actor's report.

Faults: when the actor running a job dies (its process is killed, its node goes away), the
actor is dropped, a replacement is started in the background, and the job runs once more on
another actor; if that actor dies as well the job comes back as a ``crash`` whose message
names both deaths. The run goes on. A job is never run twice after it finished: only a job
whose actor died before answering is sent again. An exception raised *inside* an actor (a
framework fault, not a candidate's) is raised here, as the local pool would raise it.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmnas.config import ExecutorSettings
from llmnas.executors.base import ExecutorError
from llmnas.executors.ray_actor import PoolActor
from llmnas.records import FailureKind
from llmnas.sandbox import ChildReport

__all__ = ["RayExecutor"]

START_TIMEOUT_S = 300.0
"""How long the actors may take to be placed and to start their warm workers."""


@dataclass
class _Actor:
    handle: Any
    info: dict[str, Any] = field(default_factory=dict)
    busy: int = 0
    dead: str | None = None  # why it was dropped


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a ``host:port`` nobody answers (Ray itself retries for minutes)."""
    hostport = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ExecutorError(
            f"cannot reach the Ray cluster at {address!r}: {exc.strerror or exc} (expected "
            '"auto", "ray://HOST:10001" or "HOST:6379" of a running cluster, or no address)'
        ) from None


def _connect(ray: Any, address: str | None) -> bool:
    """Join or start Ray; ``True`` when this process started (and so must stop) it."""
    if ray.is_initialized():
        return False
    if address is not None:
        _check_reachable(address)
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address is None:
            ray.init(address="local", include_dashboard=False, **quiet)
        elif address.startswith("ray://"):
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = "a local Ray" if address is None else f"the Ray cluster at {address!r}"
        raise ExecutorError(f"cannot start or reach {where}: {_first_line(exc)}") from None
    return True


class RayExecutor:
    """Sandbox pools in Ray actors behind the :class:`~llmnas.executors.Executor` interface."""

    def __init__(
        self,
        *,
        data: dict[str, np.ndarray],
        settings: ExecutorSettings,
        workers: int,
        device: str = "cpu",
        hidden: list[Path] | None = None,
        start_timeout: float = START_TIMEOUT_S,
    ):
        forbidden = {k for k in data if k.endswith("_y") and k != "train_y"}
        if forbidden:
            raise ValueError(f"labels other than train_y must not enter the sandbox: {forbidden}")
        import ray

        self._ray = ray
        self.settings = settings
        self.start_timeout = start_timeout
        self._started = _connect(ray, settings.address)
        self._lock = threading.Lock()
        self._slots: queue.Queue[_Actor] = queue.Queue()
        self._actors: list[_Actor] = []
        self._starting = 0
        self._replacing: list[threading.Thread] = []
        self._closed = False
        self.deaths: list[str] = []
        """Why each dropped actor was dropped, in order."""
        self.requeued = 0
        """Jobs sent to a second actor after their first one died."""
        per_actor = settings.workers_per_node or max(1, workers)
        gpus = settings.num_gpus_per_worker
        self.workers_per_actor = per_actor
        self._kwargs = {
            "workers": per_actor,
            "device": "cuda" if gpus > 0 else "cpu",
            "threads": settings.threads_per_worker,
            "hidden": [str(h) for h in hidden or []],
        }
        self._needs = (float(per_actor * settings.threads_per_worker), float(per_actor * gpus))
        self._actor_class = ray.remote(PoolActor).options(
            num_cpus=self._needs[0],
            num_gpus=self._needs[1],
            max_concurrency=per_actor + 2,
            max_restarts=0,
            max_task_retries=0,
            scheduling_strategy="SPREAD",
        )
        try:
            self._data = ray.put(data)  # once; each node fetches it once
            count = settings.actors or sum(1 for n in ray.nodes() if n.get("Alive"))
            started = self._start(max(1, count))
        except BaseException:
            self.close()
            raise
        self._size = count * per_actor
        for actor in started:
            self._add(actor)

    # ------------------------------------------------------------------ actors

    def _start(self, count: int) -> list[_Actor]:
        """Start ``count`` actors and wait until each has its warm workers."""
        ray = self._ray
        make = self._actor_class.remote
        actors = [_Actor(make(self._data, **self._kwargs)) for _ in range(count)]
        refs = [a.handle.info.remote() for a in actors]
        deadline = time.monotonic() + self.start_timeout
        ready: list[Any] = []
        while len(ready) < len(refs) and time.monotonic() < deadline and not self._closed:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=1.0)
        if len(ready) < len(refs):
            for a in actors:
                ray.kill(a.handle, no_restart=True)
            if self._closed:
                raise ExecutorError("the Ray executor was closed while its actors started")
            cpus, gpus = self._needs
            raise ExecutorError(
                f"Ray placed {len(ready)} of {count} sandbox actors within "
                f"{self.start_timeout:g} s (each needs {cpus:g} CPUs and {gpus:g} GPUs; "
                f"the cluster has {ray.cluster_resources()})"
            )
        try:
            infos = ray.get(refs)
        except ray.exceptions.RayError as exc:
            raise ExecutorError(f"a Ray sandbox actor did not start: {_first_line(exc)}") from None
        for actor, info in zip(actors, infos, strict=True):
            actor.info = info
        return actors

    def _add(self, actor: _Actor) -> None:
        with self._lock:
            self._actors.append(actor)
        for _ in range(actor.info.get("size", self.workers_per_actor)):
            self._slots.put(actor)

    def _lost(self, actor: _Actor, exc: BaseException) -> str:
        """Drop a dead actor (once), start its replacement, and say what happened."""
        with self._lock:
            if actor.dead is not None:
                return actor.dead
            info = actor.info
            actor.dead = (
                f"Ray actor pid {info.get('pid')} on {info.get('host')} died "
                f"({type(exc).__name__}: {_first_line(exc)})"
            )
            self.deaths.append(actor.dead)
            replace = not self._closed
            if replace:
                self._starting += 1
        try:
            self._ray.kill(actor.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - it is gone already
            pass
        if replace:
            thread = threading.Thread(target=self._replace, name="llmnas-ray-replace", daemon=True)
            self._replacing.append(thread)
            thread.start()
        return actor.dead

    def _replace(self) -> None:
        try:
            (actor,) = self._start(1)
        except (ExecutorError, self._ray.exceptions.RayError) as exc:
            with self._lock:
                self.deaths.append(f"no replacement actor: {_first_line(exc)}")
        else:
            with self._lock:
                closed = self._closed
            if closed:
                self._ray.kill(actor.handle, no_restart=True)
            else:
                self._add(actor)
        finally:
            with self._lock:
                self._starting -= 1

    def _take(self) -> _Actor:
        """A free worker slot of a live actor (blocks while all are busy)."""
        while True:
            with self._lock:
                if self._closed:
                    raise ExecutorError("the Ray executor is closed")
                if self._starting == 0 and all(a.dead for a in self._actors):
                    raise ExecutorError(
                        "every Ray sandbox actor died and none could be replaced: "
                        + "; ".join(self.deaths[-3:])
                    )
            try:
                actor = self._slots.get(timeout=0.5)
            except queue.Empty:
                continue
            if actor.dead is None:
                return actor

    # ------------------------------------------------------------------ the interface

    @property
    def size(self) -> int:
        return self._size

    @property
    def mode(self) -> str:
        with self._lock:
            modes = sorted({a.info.get("mode", "?") for a in self._actors if a.dead is None})
        return "+".join(modes) or "none"

    def actors(self) -> list[dict[str, Any]]:
        """The live actors: their ``info`` plus how many jobs each runs now."""
        with self._lock:
            return [{**a.info, "busy": a.busy} for a in self._actors if a.dead is None]

    def run(self, job: dict[str, Any], *, expect: dict[str, int], num_classes: int) -> ChildReport:
        """Run one job on a free actor slot; once more elsewhere if that actor dies."""
        ray = self._ray
        reasons: list[str] = []
        for attempt in range(2):
            actor = self._take()
            with self._lock:
                actor.busy += 1
            try:
                return ray.get(actor.handle.run.remote(job, expect, num_classes))
            except ray.exceptions.RayActorError as exc:
                reasons.append(self._lost(actor, exc))
                if attempt == 0:
                    with self._lock:
                        self.requeued += 1
            finally:
                with self._lock:
                    actor.busy -= 1
                if actor.dead is None:
                    self._slots.put(actor)
        message = "the sandbox actor running it died twice: " + "; then ".join(reasons)
        return ChildReport(failure=(FailureKind.CRASH, message[:500], "run"))

    def close(self) -> None:
        """Stop every actor's workers, then the actors, then a Ray this executor started."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for thread in self._replacing:  # a replacement notices the close within a second
            thread.join(timeout=30)
        with self._lock:
            live = [a for a in self._actors if a.dead is None]
        ray = self._ray
        if ray.is_initialized() and live:
            try:
                ray.wait([a.handle.close.remote() for a in live], num_returns=len(live), timeout=30)
            except ray.exceptions.RayError:
                pass
            for a in live:
                try:
                    ray.kill(a.handle, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        if self._started and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
