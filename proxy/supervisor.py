"""``serve --workers N``: N ingesting worker processes, each listening on its own SO_REUSEPORT socket.

uvicorn's multi-worker mode shares one listening socket among the workers: whichever wakes first drains
the whole accept backlog, so a burst of new keep-alive connections (a load balancer's pool, a load test)
lands on one worker while the others idle. With one socket per worker, bound with SO_REUSEPORT, the
kernel spreads new connections across the workers evenly.

The supervisor binds every socket before it starts a worker (a port in use fails at once), restarts a
worker that dies, gives up when workers keep dying right after they start, and on SIGTERM or SIGINT asks
every worker to finish its requests in flight and seal its spool segment (uvicorn's graceful shutdown).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

log = logging.getLogger("beaconproxy")

BACKLOG = 2048
RESTART_DELAY_SECONDS = 1.0
QUICK_EXIT_SECONDS = 10.0  # a worker that exits sooner than this after its start "failed to start"
MAX_QUICK_EXITS = 3
POLL_SECONDS = 0.2


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port) that other SO_REUSEPORT sockets may share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def serve_worker(sock: socket.socket, options: dict[str, Any]) -> None:
    """The body of a worker process (spawned): the ingesting app, on its own socket."""
    import uvicorn

    config = uvicorn.Config("proxy.worker:create_from_environment", factory=True, **options)
    uvicorn.Server(config).run(sockets=[sock])


Target = Callable[[socket.socket, dict[str, Any]], None]


class Supervisor:
    def __init__(
        self,
        count: int,
        host: str,
        port: int,
        options: dict[str, Any],
        grace_seconds: float,
        target: Target = serve_worker,
    ) -> None:
        self.count = count
        self.host = host
        self.port = port
        self.options = options
        self.grace_seconds = grace_seconds
        self.target = target  # a module-level function: it is pickled into a spawned interpreter
        self._stop = False
        self._context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked store state

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True

    def _start(self, sock: socket.socket) -> tuple[BaseProcess, float]:
        process = self._context.Process(target=self.target, args=(sock, self.options), daemon=False)
        process.start()
        log.info("worker process %s started", process.pid)
        return process, time.monotonic()

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; 0, or 1 when the workers cannot start."""
        sockets = [reuseport_socket(self.host, self.port) for _ in range(self.count)]
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        workers = [self._start(sock) for sock in sockets]
        quick_exits = 0
        status = 0
        try:
            while not self._stop:
                time.sleep(POLL_SECONDS)
                for i, (process, started) in enumerate(workers):
                    if process.is_alive() or self._stop:
                        continue
                    log.warning("worker process %s exited with %s", process.pid, process.exitcode)
                    if time.monotonic() - started < QUICK_EXIT_SECONDS:
                        quick_exits += 1
                        if quick_exits >= MAX_QUICK_EXITS:
                            log.error("workers keep exiting right after they start; stopping")
                            self._stop, status = True, 1
                            break
                    time.sleep(RESTART_DELAY_SECONDS)
                    workers[i] = self._start(sockets[i])
        finally:
            self._shutdown([process for process, _ in workers])
            for sock in sockets:
                sock.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _shutdown(self, processes: list[BaseProcess]) -> None:
        """SIGTERM every worker (graceful: requests in flight finish, spool segments are sealed), then
        wait; a worker still running after the grace period is killed."""
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM
        deadline = time.monotonic() + self.grace_seconds
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker process %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
