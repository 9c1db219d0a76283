"""The admin listener: /admin/* only there, a private unix socket or loopback only, the actor from how the
request arrived."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from proxy.admin_listener import (
    AdminAddress,
    AdminListenError,
    actor,
    admin_server,
    bind,
    bind_private_unix_socket,
    parse_admin_listen,
)
from tests.conftest import admin

DATA = Path("/srv/beacon")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", AdminAddress(path=DATA / "run" / "admin.sock")),
        ("unix:/run/beacon/admin.sock", AdminAddress(path=Path("/run/beacon/admin.sock"))),
        ("/run/beacon/admin.sock", AdminAddress(path=Path("/run/beacon/admin.sock"))),
        ("run/other.sock", AdminAddress(path=DATA / "run" / "other.sock")),
        ("127.0.0.1:8081", AdminAddress(host="127.0.0.1", port=8081)),
        ("127.8.9.10:8081", AdminAddress(host="127.8.9.10", port=8081)),
        ("localhost:9000", AdminAddress(host="127.0.0.1", port=9000)),
        ("[::1]:8081", AdminAddress(host="::1", port=8081)),
    ],
)
def test_admin_listen_values(value: str, expected: AdminAddress) -> None:
    assert parse_admin_listen(value, DATA) == expected


@pytest.mark.parametrize(
    "value",
    [
        "0.0.0.0:8081",
        "10.0.0.5:8081",
        "[::]:8081",
        "[2001:db8::1]:8081",
        "example.com:8081",
        "::ffff:10.0.0.1:80",
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:99999",
        "127.0.0.1:http",
        ":8081",
    ],
)
def test_anything_but_a_socket_or_loopback_fails(value: str) -> None:
    with pytest.raises(AdminListenError):
        parse_admin_listen(value, DATA)


def test_the_unix_socket_is_private_and_a_stale_one_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "run" / "admin.sock"
    sock = bind_private_unix_socket(path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        with pytest.raises(AdminListenError, match="another process is listening"):
            bind_private_unix_socket(path)
    finally:
        sock.close()
    assert path.exists()  # left behind, as after a crash
    bind_private_unix_socket(path).close()


def test_a_socket_path_too_long_for_the_kernel_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AdminListenError, match="shorter path"):
        bind_private_unix_socket(tmp_path / ("x" * 120) / "admin.sock")


def test_loopback_tcp_binds_only_loopback() -> None:
    sock = bind(AdminAddress(host="127.0.0.1", port=0))
    try:
        assert sock.family == socket.AF_INET
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()


def test_the_actor_comes_from_the_listener_not_the_request() -> None:
    assert actor(("uid=1000", 77), "admin-socket") == "admin-socket:uid=1000"
    assert actor(None, "admin-socket") == "admin-socket"
    assert actor(("127.0.0.1", 5555), "admin-http") == "admin-http"
    assert actor(("admin-cli", 1), "admin-http") == "admin-http"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/query"),
        ("GET", "/admin/stats"),
        ("GET", "/admin/inventory"),
        ("POST", "/admin/subjects/export"),
        ("POST", "/admin/subjects/delete"),
        ("GET", "/admin/analyst-keys"),
        ("POST", "/admin/analyst-keys"),
    ],
)
def test_admin_endpoints_are_not_on_the_public_listener(client: TestClient, method: str, path: str) -> None:
    token = (client.app.state.rt.settings.data_dir / "admin_token").read_text().strip()  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.request(method, path, headers=headers).status_code == 404
    assert admin(client).request(method, path, headers=headers).status_code != 404


def test_served_on_a_real_socket_with_the_peer_uid_as_the_client(tmp_path: Path) -> None:
    """AdminServer over a real unix socket: the ASGI client is the peer's uid and pid (SO_PEERCRED)."""
    seen: list[object] = []

    async def whoami(request: Request) -> PlainTextResponse:
        seen.append(request.scope["client"])
        return PlainTextResponse("ok")

    path = Path(f"/tmp/bp-admin-{os.getpid()}.sock")  # short: sun_path is 108 bytes
    sock = bind_private_unix_socket(path)
    server = admin_server(
        Starlette(routes=[Route("/whoami", whoami)]), log_level="warning", timeout_graceful_shutdown=1
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://a") as c:
            deadline = time.monotonic() + 10
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.02)
            assert c.get("/whoami").text == "ok"
        assert seen == [(f"uid={os.getuid()}", os.getpid())]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        path.unlink(missing_ok=True)
