"""serve --workers N: one SO_REUSEPORT socket per worker, restarts, giving up, graceful stop."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from proxy import supervisor
from proxy.supervisor import Supervisor, WorkerContext, reuseport_socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_every_worker_gets_its_own_socket_on_the_same_port() -> None:
    port = free_port()
    a, b = reuseport_socket("127.0.0.1", port), reuseport_socket("127.0.0.1", port)
    try:
        assert a.getsockname() == b.getsockname() == ("127.0.0.1", port)
        assert a.fileno() != b.fileno()
    finally:
        a.close()
        b.close()


def test_a_port_in_use_without_reuseport_fails_before_any_worker_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            Supervisor(2, "127.0.0.1", port, {"marker": ""}, 5.0, target=record_and_wait).run()


# Targets run in spawned interpreters: module-level, and they talk back through files.


def exit_at_once(sock: socket.socket, options: dict[str, Any], context: WorkerContext) -> None:
    Path(options["marker"]).joinpath(f"{os.getpid()}").touch()


def record_and_wait(sock: socket.socket, options: dict[str, Any], context: WorkerContext) -> None:
    marker = Path(options["marker"])
    marker.joinpath(f"{os.getpid()}-{sock.getsockname()[1]}").touch()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait(30)
    marker.joinpath(f"{os.getpid()}-stopped").touch()


def _stop_once(marker: Path, started: int) -> threading.Thread:
    """SIGTERM this process (the supervisor's handler catches it) once ``started`` workers are up."""

    def stop() -> None:
        deadline = time.monotonic() + 60
        while len(list(marker.iterdir())) < started and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=stop, daemon=True)
    thread.start()
    return thread


def test_workers_that_keep_exiting_right_away_stop_the_supervisor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "RESTART_DELAY_SECONDS", 0.05)
    status = Supervisor(
        1, "127.0.0.1", free_port(), {"marker": str(tmp_path)}, 5.0, target=exit_at_once
    ).run()
    assert status == 1
    assert len(list(tmp_path.iterdir())) == supervisor.MAX_QUICK_EXITS  # the first start and two restarts


def test_sigterm_stops_every_worker_gracefully(tmp_path: Path) -> None:
    port = free_port()
    _stop_once(tmp_path, 2)
    status = Supervisor(2, "127.0.0.1", port, {"marker": str(tmp_path)}, 10.0, target=record_and_wait).run()
    assert status == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    started = [n for n in names if n.endswith(f"-{port}")]
    stopped = [n for n in names if n.endswith("-stopped")]
    assert len(started) == 2  # two workers, both on the one port
    assert {n.split("-")[0] for n in stopped} == {n.split("-")[0] for n in started}  # each saw SIGTERM
