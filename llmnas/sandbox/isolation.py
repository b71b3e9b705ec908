"""How a sandbox worker process is started: bubblewrap namespaces, or plain rlimits + hooks.

With bubblewrap (``bwrap``) on Linux the warm worker runs in new network, pid, mount, ipc
and uts namespaces with all capabilities dropped. Its file system is built from read-only
binds of what Python and torch need (``/usr``, the interpreter prefix, the virtualenv, the
``llmnas`` package), a private ``/tmp``, the pool's data folder read-only and one writable
scratch folder. The packages and folders that could reveal evaluation labels (``mnist1d``,
scikit-learn's bundled data sets, the user's data cache, run archives) are not visible.

Without bubblewrap the worker is an ordinary child process in its own session; the child
that runs a candidate then relies on rlimits and Python audit hooks (see ``guard.py``). The
degraded mode is announced once per process.

The environment of a worker is built from an allowlist and then scrubbed of every name that
contains KEY, TOKEN, SECRET, PASSWORD, PASSWD, CREDENTIAL or AUTH, so no secret the host
holds reaches candidate code.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from functools import cache
from pathlib import Path

__all__ = [
    "SECRET_MARKERS",
    "bwrap_path",
    "clean_env",
    "hidden_paths",
    "isolation_mode",
    "worker_command",
]

SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")

_ENV_ALLOW = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "LD_LIBRARY_PATH",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)

_ANNOUNCED = False


@cache
def bwrap_path() -> str | None:
    """The bubblewrap executable if it is installed and works here, else ``None``."""
    if sys.platform != "linux" or os.environ.get("LLMNAS_NO_BWRAP"):
        return None
    path = shutil.which("bwrap")
    if path is None:
        return None
    import subprocess

    probe = [path, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"]
    try:
        ok = subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return path if ok else None


def isolation_mode() -> str:
    """``"bwrap"`` or ``"rlimits"``; announces the degraded mode once per process."""
    global _ANNOUNCED
    if bwrap_path():
        return "bwrap"
    if not _ANNOUNCED:
        _ANNOUNCED = True
        warnings.warn(
            "llmnas sandbox: bubblewrap is not available, falling back to rlimits and audit "
            "hooks (no network, pid or mount namespaces; see llmnas/sandbox/__init__.py)",
            RuntimeWarning,
            stacklevel=2,
        )
    return "rlimits"


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """An allowlisted environment with secret-looking names removed."""
    env = {k: os.environ[k] for k in _ENV_ALLOW if k in os.environ}
    env.update(extra or {})
    return {k: v for k, v in env.items() if not any(m in k.upper() for m in SECRET_MARKERS)}


def _python_roots() -> list[Path]:
    import llmnas

    roots = {Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parent}
    package = Path(llmnas.__file__).resolve().parent
    roots.add(package)
    for entry in sys.path:
        p = Path(entry) if entry else None
        if p and p.is_dir() and "site-packages" in p.parts:
            roots.add(p.resolve())
    # drop roots nested inside other roots
    out = sorted(roots, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for p in out:
        if not any(p == k or k in p.parents for k in kept):
            kept.append(p)
    return kept


def hidden_paths(extra: list[Path] | None = None) -> list[Path]:
    """Folders that must not be readable from the sandbox: label sources plus ``extra``."""
    hidden: list[Path] = list(extra or [])
    for entry in sys.path:
        site = Path(entry) if entry else None
        if not site or "site-packages" not in site.parts or not site.is_dir():
            continue
        for rel in ("mnist1d", "sklearn/datasets", "torchvision/datasets"):
            if (site / rel).is_dir():
                hidden.append(site / rel)
    return list(dict.fromkeys(hidden))


def worker_command(
    python: str,
    scratch: Path,
    data_dir: Path,
    hidden: list[Path] | None = None,
    *,
    use_bwrap: bool = True,
) -> list[str]:
    """The argv that starts one warm worker, wrapped in bubblewrap when asked and available."""
    argv = [python, "-I", "-m", "llmnas.sandbox.worker"]  # -I: the scratch cwd is not on sys.path
    bwrap = bwrap_path() if use_bwrap else None
    if bwrap is None:
        return argv
    cmd = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    # mounts apply in order: the private /tmp first, so binds below it (a checkout or a
    # virtualenv under /tmp, the pool's scratch) stay visible
    cmd += ["--tmpfs", "/tmp", "--dev", "/dev", "--proc", "/proc"]
    cmd += ["--ro-bind", "/usr", "/usr"]
    for link in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(link):
            cmd += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            cmd += ["--ro-bind", link, link]
    for etc in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        cmd += ["--ro-bind-try", etc, etc]
    for root in _python_roots():
        if not str(root).startswith("/usr/"):
            cmd += ["--ro-bind", str(root), str(root)]
    for path in hidden_paths(hidden):
        cmd += ["--tmpfs", str(path)]
    for dev in sorted(Path("/dev").glob("nvidia*")):
        cmd += ["--dev-bind", str(dev), str(dev)]
    cmd += ["--ro-bind", str(data_dir), str(data_dir)]
    cmd += ["--bind", str(scratch), str(scratch), "--chdir", str(scratch)]
    return cmd + ["--", *argv]
