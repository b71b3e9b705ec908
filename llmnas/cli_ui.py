"""``llmnas ui [FOLDER]``: serve the read-only web explorer of every run under FOLDER.

Registered on the main app in :mod:`llmnas.cli`. The socket is bound before the server starts,
so a busy port or a bad host is one line and exit code 2; ``--port 0`` takes a free port. The
first line on stdout is the address (scripts and tests read it).
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import typer
from rich.markup import escape

from llmnas.cli_common import err, fail

__all__ = ["ui"]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        fail(f"--host: cannot resolve {host!r} ({exc.strerror})")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror} (choose another --port)")
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def ui(
    folder: Path = typer.Argument(Path("archive"), help="folder searched for runs (run.sqlite)"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (loopback by default)"),
    port: int = typer.Option(8050, min=0, max=65535, help="port (0: any free port)"),
) -> None:
    """Serve a read-only web explorer of every run under FOLDER (default archive/)."""
    if not folder.is_dir():
        fail(f"FOLDER: expected a folder holding runs; {str(folder)!r} is not a folder")
    import uvicorn

    from llmnas.ui import RunIndex, create_app

    runs = len(RunIndex(folder).runs())
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"http://{shown}:{bound}/", flush=True)
    err.print(escape(f"llmnas ui: {runs} run(s) under {folder.resolve()}; read-only; Ctrl-C stops"))
    if not _loopback(host):
        err.print(f"llmnas ui: listening on {host}, not loopback: anyone who reaches this port "
                  "can read every run under the folder (there is no login)")  # fmt: skip
    import ribs.archives  # noqa: F401 - slow to import: paid before serving, not by a page

    config = uvicorn.Config(create_app(folder), log_level="warning", lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
