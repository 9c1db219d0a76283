"""One serving instance per data directory: an exclusive ``flock`` on the data directory itself.

``beaconproxy serve`` takes it before anything else and holds it for as long as it runs. With
``--workers N`` the supervisor takes it and its workers and primary inherit the locked descriptor, so the
data directory stays locked until the last of them has exited: a supervisor killed with ``kill -9`` does
not free it while its workers still drain. A second ``serve`` on the same directory refuses to start.
CLI commands that open the embedded store themselves take it too (so no proxy starts under them); when
it is held they go through the running proxy's admin listener instead.

The lock is on the directory, not on a file in it, so taking it writes nothing: it works on a full disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from multiprocessing import reduction
from pathlib import Path
from typing import Any

PID_FILE = "run/serve.pid"  # a hint for the error message only; the lock is what counts


class DataDirLocked(RuntimeError):
    """Another process holds the data directory."""


class DataDirLock:
    def __init__(self, data_dir: Path, fd: int | None = None) -> None:
        self.data_dir = data_dir
        self.fd = fd  # an inherited, already locked descriptor (see __reduce__)

    def acquire(self) -> None:
        """Lock the data directory (created private if missing) or raise DataDirLocked."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.data_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read_pid(self.data_dir)
            raise DataDirLocked(
                f"another beaconproxy process{f' (pid {holder})' if holder else ''} holds {self.data_dir}; "
                "stop it first (or give this one its own data_dir)"
            ) from None
        self.fd = fd

    def write_pid(self, pid: int) -> None:
        """Best effort: a full disk must not stop the proxy from starting (and answering 503)."""
        path = self.data_dir / PID_FILE
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(f"{pid}\n")

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # the lock goes with the last descriptor of this open file description
            self.fd = None

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled into a spawned worker: the child gets a duplicate of the locked descriptor (the same
        open file description, so the same lock), passed by multiprocessing like a socket."""
        if self.fd is None:
            raise ValueError("only a held lock can be handed to a child process")
        return (_rebuild, (self.data_dir, reduction.DupFd(self.fd)))


def _rebuild(data_dir: Path, dup: Any) -> DataDirLock:
    return DataDirLock(data_dir, dup.detach())


def is_locked(data_dir: Path) -> bool:
    """Whether some process holds ``data_dir`` (false if it does not exist)."""
    try:
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock this probe may have taken
    return False


def _read_pid(data_dir: Path) -> int | None:
    try:
        text = (data_dir / PID_FILE).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
