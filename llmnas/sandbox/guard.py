"""Limits and audit hooks installed in the forked child just before candidate code runs.

Installed in every mode (defence in depth; under bubblewrap the namespaces are the boundary):

- rlimits: address space (CPU runs), CPU seconds, size of files written, number of open
  files, no core dumps; a new session so the worker can kill the whole process group;
- audit hooks (PEP 578) that refuse: sockets, subprocesses, ``exec``/``spawn``/``fork``,
  signals to other processes, loading native libraries through ``ctypes``, importing label
  sources (``mnist1d``, ``sklearn``, ``llmnas`` outside the sandbox) or network clients,
  writing, renaming or removing files outside the job's scratch folder, and reading files
  under the hidden folders (data sets, caches, archives).

Audit hooks cannot be removed from Python code, but native code can step around them; that is
why the bubblewrap mode exists.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Iterable

__all__ = ["GuardViolation", "apply_limits", "install_hooks"]


class GuardViolation(PermissionError):
    """Raised inside the child when candidate code does something the sandbox refuses."""


_DENY_IMPORTS = (
    "mnist1d",
    "sklearn",
    "scipy.io",
    "llmnas.tasks",
    "llmnas.store",
    "llmnas.evaluator",
    "urllib.request",
    "http.client",
    "requests",
    "httpx",
    "openai",
    "torchvision.datasets",
)

_DENY_EVENTS = {
    "socket.connect",
    "socket.bind",
    "socket.getaddrinfo",
    "socket.sendto",
    "socket.sendmsg",
    "socket.__new__",
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.killpg",
    "signal.pthread_kill",
    "ctypes.dlopen",
    "ctypes.dlsym",
    "ctypes.cdata",
    "ctypes.string_at",
    "ctypes.wstring_at",
    "sys.setprofile",
    "sys.settrace",
    "sys.remote_exec",
}

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def apply_limits(*, memory_bytes: int | None, cpu_seconds: int, file_bytes: int) -> None:
    """rlimits for the child (``memory_bytes`` caps the address space; ``None`` on CUDA)."""
    os.setsid()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), min(hard, 256)))
    if memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def _inside(path: str, roots: Iterable[str]) -> bool:
    real = os.path.realpath(path)
    return any(real == r or real.startswith(r + os.sep) for r in roots)


def install_hooks(*, scratch: str, hidden: Iterable[str] = ()) -> None:
    """Install the audit hook. Call after every module the child needs is imported."""
    writable = (os.path.realpath(scratch), "/dev/null")
    hidden_roots = tuple(os.path.realpath(h) for h in hidden)

    def hook(event: str, args: tuple) -> None:
        if event in _DENY_EVENTS:
            raise GuardViolation(f"sandbox: {event} is not allowed")
        if event == "import":
            name = args[0] or ""
            if any(name == d or name.startswith(d + ".") for d in _DENY_IMPORTS):
                raise GuardViolation(f"sandbox: import of {name!r} is not allowed")
        elif event == "open":
            path, mode, flags = args
            if not isinstance(path, (str, bytes)) or isinstance(path, int):
                return
            path = os.fsdecode(path)
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writing and not _inside(path, writable):
                raise GuardViolation(f"sandbox: writing {path!r} is not allowed")
            if hidden_roots and _inside(path, hidden_roots):
                raise GuardViolation(f"sandbox: reading {path!r} is not allowed")
        elif event in {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown"}:
            path = args[0]
            if isinstance(path, (str, bytes)) and not _inside(os.fsdecode(path), writable):
                raise GuardViolation(f"sandbox: {event} on {path!r} is not allowed")
        elif event in {"os.listdir", "os.scandir"} and hidden_roots:
            path = args[0]
            if isinstance(path, (str, bytes)) and _inside(os.fsdecode(path), hidden_roots):
                raise GuardViolation(f"sandbox: listing {path!r} is not allowed")

    sys.addaudithook(hook)
