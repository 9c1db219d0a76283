"""The admin listener: ``/admin/*`` (and, if configured, ``/metrics``) are served only here, never on the
public ingestion port.

``server.admin_listen`` is a unix socket path (default ``<data_dir>/run/admin.sock``, mode 0600 in a
0700 directory: only the proxy's own user can connect) or a loopback ``host:port``. Anything else fails
at start-up. The listener runs in the same process and event loop as the app it belongs to (the single
process, or the primary of ``serve --workers N``), as a second uvicorn server that never touches signals:
the public server's shutdown stops it.

How a request arrived is what the audit log records as its actor: ``admin-socket:uid=N`` (the peer's
user id, from the kernel's SO_PEERCRED) or ``admin-http`` for the loopback TCP listener. No header can
change it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import stat
import struct
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


class AdminListenError(ValueError):
    """``server.admin_listen`` is not a usable unix socket path or loopback address."""


@dataclass(frozen=True)
class AdminAddress:
    path: Path | None = None  # a unix socket
    host: str = ""  # or a loopback TCP address
    port: int = 0

    @property
    def kind(self) -> str:
        return "admin-socket" if self.path is not None else "admin-http"

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_admin_listen(value: str, data_dir: Path) -> AdminAddress:
    """``""`` -> the default socket in the data dir; ``unix:PATH`` or a path with a "/" -> that socket;
    ``HOST:PORT`` or ``[V6]:PORT`` with a loopback host -> TCP on loopback."""
    text = value.strip()
    if not text:
        return AdminAddress(path=data_dir / "run" / "admin.sock")
    if text.startswith("unix:") or "/" in text:
        path = Path(text.removeprefix("unix:")).expanduser()
        return AdminAddress(path=path if path.is_absolute() else data_dir / path)
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise AdminListenError(
            f"server.admin_listen {value!r} must be a unix socket path or a loopback HOST:PORT"
        )
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise AdminListenError(
            f"server.admin_listen {value!r} is not a loopback address: admin is never served on a network "
            "interface (reach it remotely through SSH or a reverse proxy with its own authentication)"
        )
    return AdminAddress(host="127.0.0.1" if host == "localhost" else host, port=int(port))


def bind(address: AdminAddress) -> socket.socket:
    """A listening socket for ``address``: a unix socket private to this user (a stale socket file left
    by a crash is replaced; a live one means another proxy listens there), or loopback TCP."""
    if address.path is None:
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address.host, address.port))
            sock.listen(64)
        except BaseException:
            sock.close()
            raise
        return sock
    return bind_private_unix_socket(address.path)


def bind_private_unix_socket(path: Path) -> socket.socket:
    """A listening unix socket at ``path``, mode 0600, in a directory made 0700 (created if missing):
    only this user can reach it."""
    if len(str(path).encode()) > MAX_SOCKET_PATH:
        raise AdminListenError(
            f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
            "set server.admin_listen to a shorter path"
        )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            if _answers(path):
                raise AdminListenError(f"another process is listening on {path}")
            path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


class PeerCredentialsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the connecting process's uid as the ASGI ``client`` on a unix
    socket (where there is no address): ``("uid=N", pid)``, from the kernel, not from the request."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family == socket.AF_UNIX:
            try:
                pid, uid, _ = _PEERCRED.unpack(
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
                )
            except OSError:
                return
            self.client = (f"uid={uid}", pid)


class AdminServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: it runs beside the public one, which owns them, and
    is stopped by the app's shutdown (``should_exit``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def admin_server(app: object, *, log_level: str, timeout_graceful_shutdown: float) -> AdminServer:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        http=PeerCredentialsProtocol,
        lifespan="off",  # the public app's lifespan owns the runtime
        access_log=False,
        server_header=False,
        proxy_headers=False,
        log_config=None,
        log_level=log_level,
        timeout_graceful_shutdown=int(timeout_graceful_shutdown),
    )
    return AdminServer(config)


def actor(client: tuple[str, int] | None, address_kind: str) -> str:
    """The audit log's actor for a request on the admin listener."""
    if address_kind == "admin-socket" and client is not None and client[0].startswith("uid="):
        return f"admin-socket:{client[0]}"
    return address_kind
