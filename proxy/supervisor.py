"""``serve --workers N``: N ingesting worker processes, each listening on its own SO_REUSEPORT socket.

uvicorn's multi-worker mode shares one listening socket among the workers: whichever wakes first drains
the whole accept backlog, so a burst of new keep-alive connections (a load balancer's pool, a load test)
lands on one worker while the others idle. With one socket per worker, bound with SO_REUSEPORT, the
kernel spreads new connections across the workers evenly.

The supervisor binds every socket before it starts a worker (a port in use fails at once), restarts a
worker that dies, gives up when workers keep dying right after they start, and on SIGTERM or SIGINT asks
every worker to finish its requests in flight and seal its spool segment (uvicorn's graceful shutdown).
The primary process (the store's owner) is watched too: when it dies it is started again, while the
workers go on accepting into their spool segments.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger("beaconproxy")

BACKLOG = 2048
RESTART_DELAY_SECONDS = 1.0
QUICK_EXIT_SECONDS = 10.0  # a worker that exits sooner than this after its start "failed to start"
MAX_QUICK_EXITS = 3
POLL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


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


@dataclass(frozen=True)
class WorkerContext:
    """What a spawned worker gets besides its socket: its parent's pid, to exit with it, and the data
    directory's lock (an inherited descriptor it keeps open until it exits; see proxy.datalock)."""

    parent_pid: int
    lock: object | None = None


def exit_with_parent(parent_pid: int) -> None:
    """Have the kernel send this process SIGTERM (a graceful stop) when its parent dies, so a worker of
    a supervisor killed with ``kill -9`` never keeps serving unsupervised. Linux only; elsewhere the
    parent's own shutdown is the only stop."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        log.warning("cannot ask to be stopped with the parent process on this system")
    if os.getppid() != parent_pid:  # it died before we asked
        raise SystemExit(0)


def serve_worker(sock: socket.socket, options: dict[str, Any], context: WorkerContext) -> None:
    """The body of a worker process (spawned): the ingesting app, on its own socket."""
    import uvicorn

    exit_with_parent(context.parent_pid)
    from proxy.connlimits import DrainingServer

    config = uvicorn.Config("proxy.worker:create_from_environment", factory=True, **options)
    DrainingServer(config).run(sockets=[sock])


Target = Callable[[socket.socket, dict[str, Any], WorkerContext], None]


class Supervisor:
    def __init__(
        self,
        count: int,
        host: str,
        port: int,
        options: dict[str, Any],
        grace_seconds: float,
        target: Target = serve_worker,
        lock: object | None = None,
    ) -> None:
        self.count = count
        self.host = host
        self.port = port
        self.options = options
        self.grace_seconds = grace_seconds
        self.target = target  # a module-level function: it is pickled into a spawned interpreter
        self.lock = lock  # the data directory's lock, handed to every worker
        self._stop = False
        self._context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked store state

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True

    def _start(self, sock: socket.socket) -> tuple[BaseProcess, float]:
        context = WorkerContext(os.getpid(), self.lock)
        process = self._context.Process(target=self.target, args=(sock, self.options, context), daemon=False)
        process.start()
        log.info("worker process %s started", process.pid)
        return process, time.monotonic()

    def run(self, watch: Callable[[], None] | None = None) -> int:
        """Serve until SIGTERM/SIGINT; 0, or 1 when the workers cannot start. ``watch`` is called at
        every poll (the primary's keep-alive)."""
        sockets = [reuseport_socket(self.host, self.port) for _ in range(self.count)]
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        workers = [self._start(sock) for sock in sockets]
        quick_exits = 0
        status = 0
        try:
            while not self._stop:
                time.sleep(POLL_SECONDS)
                if watch is not None and not self._stop:
                    watch()
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
            # Our copies of the listening sockets first: while one is open the kernel keeps completing
            # connections into its queue, which nobody would accept once the worker stops (they would
            # be reset after the client sent its request). Closed here, each socket closes for good
            # when its worker closes its own copy at the start of its graceful stop.
            for sock in sockets:
                sock.close()
            self._shutdown([process for process, _ in workers])
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


class PrimaryProcess:
    """The primary of ``serve --workers N``: started, watched (and started again when it dies), stopped
    last, after the workers sealed their segments, with time to ship them."""

    def __init__(
        self, cmd: Sequence[str], socket_path: Path, stop_seconds: float, pass_fds: Sequence[int] = ()
    ) -> None:
        self.cmd = list(cmd)
        self.pass_fds = tuple(pass_fds)  # the data directory's lock, kept open by the primary
        self.socket_path = socket_path
        self.stop_seconds = stop_seconds
        self.process: subprocess.Popen[bytes] | None = None
        self._next_try = 0.0

    def start(self, timeout: float = 120.0) -> bool:
        """Start it and wait until it answers /healthz on its socket; False if it exits or times out."""
        import httpx

        self.socket_path.unlink(missing_ok=True)
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self.cmd,
            start_new_session=True,  # stopped by us, after the workers: see proxy.worker.create_primary_app
            pass_fds=self.pass_fds,
        )
        deadline = time.monotonic() + timeout
        transport = httpx.HTTPTransport(uds=str(self.socket_path))
        with httpx.Client(transport=transport, timeout=2) as client:
            while True:
                if self.process.poll() is not None:
                    log.error("the primary process exited with %s", self.process.returncode)
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("http://primary/healthz").status_code == 200:
                        return True
                if time.monotonic() > deadline:
                    log.error("the primary process did not start")
                    return False
                time.sleep(0.1)

    def keep_alive(self) -> None:
        """Start it again if it died (workers keep spooling meanwhile; shipping resumes when it is back)."""
        if self.process is not None and self.process.poll() is None:
            return
        if time.monotonic() < self._next_try:
            return
        code = self.process.returncode if self.process is not None else None
        log.warning("the primary process is gone (exit %s); starting it again", code)
        if not self.start():
            self._next_try = time.monotonic() + RESTART_DELAY_SECONDS * 5

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.stop_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
