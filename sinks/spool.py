"""A local, append-only spool of opaque records: what makes "a 2xx means the event is durable" true.

The caller serialises already-anonymised events into bytes; the spool never looks inside a record and
never logs one. Everything it logs is counts, byte sizes and file names.

Layout of ``<dir>``:

``w<writer>-<seq>.open``
    The segment a live writer appends to. The writer holds an exclusive ``flock`` on it for as long as
    it is open, which is how :meth:`SpoolReader.seal_orphans` tells a live writer from a dead one.
``w<writer>-<seq>.seg``
    A sealed segment: fsynced, atomically renamed from ``.open``, directory fsynced; never changed again.
    It is shipped as one batch whose deduplication token is ``<spool id>:<file stem>``.
``spool.id``
    A random id created once per spool directory, so two hosts (or a wiped and recreated directory)
    never produce the same token.
``spool.seq``
    The last segment sequence number handed out, shared by all writers under ``flock``. ``seq`` is
    unique across the whole directory and never reused, even after every segment has been shipped and
    deleted, because a reused token would make ClickHouse silently drop the new batch as a duplicate.

A record is ``[u32 length][u32 crc32][payload]``, little-endian, with ``0 < length <= 1 MiB``; the CRC
covers the length field and the payload (so a zero-filled region is never mistaken for records). The
first torn or corrupt record ends the readable part of a segment: the records before it are returned,
the rest is counted (``corrupt_records`` is an estimate of the records lost, at least 1; ``corrupt_bytes``
is exact) and reading never raises for bad data.

Durability (``fsync=``):

``"always"``
    A future resolves only after the group of writes it belongs to has been fsynced (group commit: one
    ``os.fsync`` for everything queued while the previous one ran). Survives power loss.
``"interval"``
    A future resolves after the ``write`` (page cache); the file is fsynced at most every
    ``fsync_interval`` seconds and on seal. A process crash loses nothing; a power loss or kernel crash
    can lose what was acknowledged during the last interval.
``"never"``
    No fsync at all, not even on seal. For benchmarks only.

Several writer processes may share a directory, each with its own ``writer`` id (a pid, "main", ...).
The reader is the shipper's side and runs in one process. Sealed segments are shipped in ``seq`` order,
which is the order segments were opened in, across all writers; per writer that is the append order.
The spool is meant for a local filesystem (``flock`` and rename semantics); not NFS. Start a writer after
forking worker processes, not before: a forked child would share the lock on the open segment.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import math
import os
import re
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from proxy.background import JobState, SupervisedThread

log = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "interval", "never"]

MAX_RECORD_BYTES: Final = 1 << 20
HEADER_BYTES: Final = 8
OPEN_SUFFIX: Final = ".open"
SEALED_SUFFIX: Final = ".seg"
ID_FILE: Final = "spool.id"
SEQ_FILE: Final = "spool.seq"

_HEADER = struct.Struct("<II")
_WRITER_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SEGMENT_RE = re.compile(r"w(?P<writer>[A-Za-z0-9_.-]{1,64})-(?P<seq>[0-9]{12,})\.(?P<kind>open|seg)")


class SpoolError(Exception):
    """The spool could not store or read something. Messages never carry record contents."""


class SpoolFull(SpoolError):
    """Accepting these records would exceed ``max_bytes``; answer 503 with Retry-After."""


class SpoolLowDisk(SpoolFull):
    """Accepting these records would leave less free disk than the reserve (``min_free_bytes``), which is
    kept for the shipper and the store to drain the spool; answer 503 with Retry-After."""


class SpoolClosed(SpoolError):
    """The writer is not running (not started, closed, or stopped after an internal failure)."""


@dataclass(frozen=True)
class SegmentBatch:
    name: str
    token: str
    records: list[bytes]
    corrupt_records: int
    corrupt_bytes: int


@dataclass(frozen=True)
class SpoolStats:
    segments: int  # sealed, waiting to be shipped
    bytes: int  # of the sealed segments
    oldest_age_seconds: float  # since the oldest sealed segment was last written (0 when none)
    corrupt_records: int  # counted by this reader since it was created
    purged_segments: int  # deleted by purge_older_than since this reader was created
    open_segments: int = 0  # being written (or orphaned, until seal_orphans)
    open_bytes: int = 0
    corrupt_bytes: int = 0
    purged_bytes: int = 0


# --- records ------------------------------------------------------------------------------------------


def encode_record(payload: bytes) -> bytes:
    """One framed record. Raises ValueError for an empty or oversized payload."""
    n = len(payload)
    if not 0 < n <= MAX_RECORD_BYTES:
        raise ValueError(f"a spool record must be 1..{MAX_RECORD_BYTES} bytes, got {n}")
    length = n.to_bytes(4, "little")
    return _HEADER.pack(n, zlib.crc32(payload, zlib.crc32(length))) + payload


@dataclass(frozen=True)
class ParsedSegment:
    records: list[bytes]
    good_bytes: int  # length of the readable prefix
    corrupt_records: int
    corrupt_bytes: int


def _frame_end(view: memoryview, offset: int) -> int:
    """End of the plausible frame at ``offset`` (header fits, sane length, inside the data), or -1."""
    if len(view) - offset < HEADER_BYTES:
        return -1
    n, _ = _HEADER.unpack_from(view, offset)
    end = offset + HEADER_BYTES + n
    return end if 0 < n <= MAX_RECORD_BYTES and end <= len(view) else -1


def parse_segment(data: bytes) -> ParsedSegment:
    view = memoryview(data)
    records: list[bytes] = []
    offset = 0
    while offset < len(view):
        end = _frame_end(view, offset)
        if end < 0:
            break
        _, crc = _HEADER.unpack_from(view, offset)
        payload = view[offset + HEADER_BYTES : end]
        if zlib.crc32(payload, zlib.crc32(view[offset : offset + 4])) != crc:
            break
        records.append(bytes(payload))
        offset = end
    good = offset
    # Estimate how many records the unreadable tail held by following its length fields.
    lost = 0
    while offset < len(view):
        lost += 1
        end = _frame_end(view, offset)
        if end < 0:
            break
        offset = end
    return ParsedSegment(records, good, lost, len(view) - good)


# --- files --------------------------------------------------------------------------------------------


def segment_name(writer: str, seq: int, suffix: str) -> str:
    return f"w{writer}-{seq:012d}{suffix}"


def _parse_name(name: str) -> tuple[str, int, str] | None:
    m = _SEGMENT_RE.fullmatch(name)
    if m is None:
        return None
    return m["writer"], int(m["seq"]), m["kind"]


def _reason(exc: Exception) -> str:
    """What went wrong, without file names or data."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_fd(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    parts: list[bytes] = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _dir_bytes(directory: Path) -> int:
    total = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return total


def _highest_seq(directory: Path) -> int:
    highest = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            parsed = _parse_name(entry.name)
            if parsed is not None:
                highest = max(highest, parsed[1])
    return highest


def _spool_id(directory: Path) -> str:
    """The directory's id, created on first use; several processes may race to create it."""
    path = directory / ID_FILE
    if not path.exists():
        tmp = directory / f".{ID_FILE}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, uuid.uuid4().hex.encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic: fails if another process got there first
            _fsync_dir(directory)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    text = path.read_text("ascii", errors="replace").strip()
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        raise SpoolError(f"{path} is damaged; it must hold the spool's 32-hex-digit id")
    return text


def _allocate_seq(directory: Path, *, durable: bool) -> int:
    """The next directory-wide segment number: above both the counter and every file present."""
    fd = os.open(directory / SEQ_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.pread(fd, 64, 0)
        try:
            last = int(raw.decode("ascii").strip() or "0")
        except (UnicodeDecodeError, ValueError):
            log.warning("spool: %s is unreadable, continuing from the highest segment present", SEQ_FILE)
            last = 0
        seq = max(last, _highest_seq(directory)) + 1
        text = f"{seq:020d}\n".encode("ascii")
        os.pwrite(fd, text, 0)
        os.ftruncate(fd, len(text))
        if durable:
            os.fsync(fd)
        return seq
    finally:
        os.close(fd)  # releases the lock


# --- writer -------------------------------------------------------------------------------------------


@dataclass
class _Pending:
    data: bytes
    future: Future[None]
    records: int = 1


class SpoolWriter:
    """Appends framed records to this writer's open segment, with group commit, from one thread.

    ``append`` is cheap and thread-safe: it frames the records, checks ``max_bytes`` and queues them.
    The writer thread takes everything queued at once, writes it with one ``write`` and, under
    ``fsync="always"``, one ``fsync``, then resolves every future of that group.
    """

    def __init__(
        self,
        directory: Path,
        *,
        writer: str,
        max_bytes: int,
        segment_max_bytes: int = 8 << 20,
        segment_max_records: int = 1 << 62,
        segment_max_age: float = 1.0,
        fsync: FsyncPolicy = "always",
        fsync_interval: float = 0.2,
        rescan_interval: float = 0.5,
        restart_backoff: float = 0.5,
        min_free_bytes: int = 0,
        error_hold_seconds: float = 5.0,
        job_name: str = "spool_writer",
    ) -> None:
        if not _WRITER_RE.fullmatch(writer):
            raise ValueError("writer must be 1-64 characters of A-Z a-z 0-9 _ . -")
        if fsync not in ("always", "interval", "never"):
            raise ValueError(f"unknown fsync policy {fsync!r}")
        if min(max_bytes, segment_max_bytes, segment_max_records, segment_max_age) <= 0 or fsync_interval < 0:
            raise ValueError("spool limits must be positive")
        self.directory = Path(directory)
        self.writer = writer
        self.max_bytes = max_bytes
        self.segment_max_bytes = segment_max_bytes
        # A segment is one insert: sealing it at a record count keeps inserts at most this many rows
        # (one append is never split, so a single larger append makes a larger segment).
        self.segment_max_records = segment_max_records
        self.segment_max_age = segment_max_age
        self.fsync: FsyncPolicy = fsync
        self.fsync_interval = fsync_interval
        self.rescan_interval = rescan_interval
        self.restart_backoff = restart_backoff  # first wait before a failed writer thread is restarted
        # Free disk kept in reserve: below it appends are refused, so that a full disk never stops the
        # shipper and the store (on the same disk, for the embedded one) from draining the spool.
        self.min_free_bytes = min_free_bytes
        # After a refused append (spool or disk full, a failed write), refusal() reports it this long
        # unless a write succeeded since: readiness follows append errors, and recovers without traffic.
        self.error_hold_seconds = error_hold_seconds
        self.job_name = job_name  # what /readyz and /metrics call the writer thread
        self._free_bytes = -1  # free disk at the last scan (-1: unknown)
        self._last_refusal = (-math.inf, "")  # (monotonic time, why): a full spool or disk, a failed write
        self._last_write_ok = -math.inf

        self._cond = threading.Condition()
        self._state: Literal["new", "running", "restarting", "closing", "closed"] = "new"
        self._stopping = threading.Event()  # set by close(): a failed writer thread is not restarted
        self._queue: list[_Pending] = []
        self._queued_bytes = 0
        self._written_total = 0  # bytes this writer has written since it started
        self._scan_total = 0  # bytes in the directory at the last scan
        self._scan_written = 0  # _written_total when that scan started
        self._scan_at = -math.inf
        self._seal_requested = 0
        self._seal_done = 0
        self._thread: SupervisedThread | None = None

        # Owned by the writer thread.
        self._inflight: list[_Pending] = []  # taken from the queue, futures not all resolved yet
        self._fd: int | None = None
        self._path = self.directory
        self._seg_size = 0
        self._seg_records = 0
        self._seg_first = 0.0  # monotonic time of the segment's first write
        self._dirty = False  # written but not fsynced ("interval")
        self._last_fsync = 0.0

    # -- caller side

    @property
    def state(self) -> str:
        """new, running, restarting (the writer thread failed unexpectedly and is started again after a
        backoff; appends are refused meanwhile), closing or closed."""
        return self._state

    def start(self) -> None:
        if self._state != "new":
            raise SpoolError("a spool writer can be started once")
        self.directory.mkdir(parents=True, exist_ok=True)
        _spool_id(self.directory)
        self._rescan(force=True)
        with self._cond:
            if self._state != "new":
                raise SpoolError("a spool writer can be started once")
            self._state = "running"
            self._thread = SupervisedThread(
                self.job_name,
                self._run,
                vital=True,
                stopping=self._stopping,
                on_failure=self._after_failure,
                backoff_initial=self.restart_backoff,
            )
            self._thread.start()

    @property
    def job(self) -> JobState | None:
        """The writer thread's supervision state (None before start)."""
        return self._thread.job if self._thread is not None else None

    def append(self, records: Sequence[bytes]) -> Future[None]:
        """Queue records; the future resolves once they are durable (per the fsync policy).

        Raises ValueError for an empty or oversized record, SpoolFull when the directory would grow past
        ``max_bytes`` and SpoolClosed when the writer is not running. The future fails with SpoolError
        if the write itself fails; the records are then not in the spool.
        """
        [future], _ = self.append_many([records])
        if future.done() and (exc := future.exception()) is not None:
            raise exc
        return future

    def append_many(
        self, batches: Sequence[Sequence[bytes]]
    ) -> tuple[list[Future[None]], Future[None] | None]:
        """Queue several appends at once (one lock, one wake-up): a future per batch, as ``append``'s,
        except that ValueError, SpoolFull and SpoolClosed fail that batch's future, not raised. Also
        returns the last queued batch's future: the queue is FIFO, so once it is done, all are."""
        futures: list[Future[None]] = [Future() for _ in batches]
        framed: list[bytes | None] = []
        for records, future in zip(batches, futures, strict=True):
            try:
                framed.append(b"".join([encode_record(r) for r in records]))
            except ValueError as exc:  # an empty or oversized record: only this batch is refused
                future.set_exception(exc)
                framed.append(None)
        last: Future[None] | None = None
        self._rescan()
        with self._cond:
            for data, records, future in zip(framed, batches, futures, strict=True):
                if data is None:
                    continue
                if not data:
                    future.set_result(None)
                elif self._state != "running":
                    future.set_exception(SpoolClosed(f"spool writer is {self._state}"))
                elif self._used_locked() + len(data) > self.max_bytes:
                    future.set_exception(SpoolFull("spool is full"))
                    self._last_refusal = (time.monotonic(), "spool is full")
                elif (free := self._free_locked()) is not None and free - len(data) < self.min_free_bytes:
                    future.set_exception(SpoolLowDisk("free disk is below the reserve"))
                    self._last_refusal = (time.monotonic(), "free disk is below the reserve")
                else:
                    self._queue.append(_Pending(data, future, len(records)))
                    self._queued_bytes += len(data)
                    last = future
            if last is not None:
                self._cond.notify()
        return futures, last

    def bytes_used(self) -> int:
        """The directory's size (all writers; others' writes seen within ``rescan_interval``) plus what is
        queued here."""
        self._rescan()
        with self._cond:
            return self._used_locked()

    def refusal(self) -> str | None:
        """Why an append would be refused now (None: it would be taken), from a fresh look at the spool's
        size and the free disk: the state readiness reports, which recovers without traffic."""
        self._rescan(force=True)
        with self._cond:
            if self._state != "running":
                return f"spool writer is {self._state}"
            if self._used_locked() >= self.max_bytes:
                return "spool is full"
            free = self._free_locked()
            if free is not None and free < self.min_free_bytes:
                return "free disk is below the reserve"
            when, why = self._last_refusal
            if self._last_write_ok < when > time.monotonic() - self.error_hold_seconds:
                return why
        return None

    def flush(self, timeout: float) -> bool:
        """Write everything queued and seal the open segment; True once done within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._state != "running":
                return self._state == "closed"
            self._seal_requested += 1
            target = self._seal_requested
            self._cond.notify_all()
            while self._seal_done < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float = 10) -> None:
        """Stop accepting, write what is queued, seal the open segment and stop the thread."""
        with self._cond:
            if self._state in ("new", "running", "restarting"):
                self._state = "closing" if self._thread is not None else "closed"
            self._stopping.set()
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            return
        thread.join(timeout)
        if thread.is_alive():
            log.error(
                "spool writer %s did not finish within %.1fs; its open segment stays open",
                self.writer,
                timeout,
            )
            return
        with self._cond:
            if self._state == "closing":
                self._state = "closed"
        self._fail_pending(SpoolClosed("spool writer closed"))  # left by a writer that failed while closing

    # -- accounting

    def _used_locked(self) -> int:
        return self._scan_total + (self._written_total - self._scan_written) + self._queued_bytes

    def _free_locked(self) -> int | None:
        """Free disk now: at the last scan, less what was written and queued here since (None: unknown)."""
        if self._free_bytes < 0:
            return None
        return self._free_bytes - (self._written_total - self._scan_written) - self._queued_bytes

    def _rescan(self, force: bool = False) -> None:
        with self._cond:
            now = time.monotonic()
            if not force and now - self._scan_at < self.rescan_interval:
                return
            self._scan_at = now  # claimed: concurrent callers keep using the cached value
            written = self._written_total
        try:
            total = _dir_bytes(self.directory)
            st = os.statvfs(self.directory)
        except OSError as exc:  # keep the last figures; the next call tries again
            log.warning("spool writer %s: cannot scan the spool: %s", self.writer, _reason(exc))
            return
        with self._cond:
            self._scan_total = total
            self._scan_written = written
            # What an unprivileged writer may still use; written since the scan is subtracted later.
            self._free_bytes = st.f_bavail * st.f_frsize

    # -- writer thread

    def _run(self) -> None:
        """The writer thread's work, supervised: an unexpected exception ends this run, _after_failure
        fails what was not written, and the run starts again after a backoff."""
        with self._cond:
            if self._state == "restarting":
                self._state = "running"
        while True:
            with self._cond:
                while not (self._queue or self._seal_requested > self._seal_done or self._state == "closing"):
                    deadline = self._next_deadline()
                    now = time.monotonic()
                    if deadline is not None and deadline <= now:
                        break
                    self._cond.wait(None if deadline is None else deadline - now)
                group, self._queue = self._queue, []
                seal_requested = self._seal_requested
                closing = self._state == "closing"
            self._inflight = group
            live = []
            for item in group:
                if item.future.set_running_or_notify_cancel():
                    live.append(item)
                else:  # cancelled before it was written: never acknowledged, so not stored
                    with self._cond:
                        self._queued_bytes -= len(item.data)
            self._write_group(live)
            self._inflight = []
            self._timers()
            if closing or seal_requested > self._seal_done:
                self._seal()
            with self._cond:
                self._seal_done = max(self._seal_done, seal_requested)
                self._cond.notify_all()
                if closing and not self._queue:
                    return

    def _after_failure(self, exc: BaseException) -> None:
        """The writer thread died: nothing it held was acknowledged. Close the open segment as it is
        (``seal_orphans`` recovers its records) and fail every pending append (503, never a 202)."""
        self._abandon()
        with self._cond:
            if self._state == "running":
                self._state = "restarting"
        self._fail_pending(SpoolClosed("spool writer stopped; it is being restarted"))

    def _fail_pending(self, error: SpoolError) -> None:
        with self._cond:
            left = self._inflight + self._queue
            self._queue, self._inflight = [], []
            self._queued_bytes = 0
            self._cond.notify_all()
        for item in left:
            if not item.future.done() and (
                item.future.running() or item.future.set_running_or_notify_cancel()
            ):
                item.future.set_exception(error)

    def _next_deadline(self) -> float | None:
        deadlines = []
        if self._fd is not None and self._seg_size:
            deadlines.append(self._seg_first + self.segment_max_age)
        if self._dirty:
            deadlines.append(self._last_fsync + self.fsync_interval)
        return min(deadlines) if deadlines else None

    def _write_group(self, items: list[_Pending]) -> None:
        """Write items in order, as few chunks as segment boundaries allow; seal full segments."""
        chunk: list[_Pending] = []
        size = records = 0
        for item in items:
            full = (
                self._seg_size + size + len(item.data) > self.segment_max_bytes
                or self._seg_records + records + item.records > self.segment_max_records
            )
            if self._seg_size + size > 0 and full:
                self._commit(chunk, seal=True)
                chunk, size, records = [], 0, 0
            chunk.append(item)
            size += len(item.data)
            records += item.records
        self._commit(
            chunk,
            seal=self._seg_size + size >= self.segment_max_bytes
            or self._seg_records + records >= self.segment_max_records,
        )

    def _commit(self, chunk: list[_Pending], *, seal: bool) -> None:
        if not chunk:
            if seal:
                self._seal()
            return
        data = b"".join(item.data for item in chunk)
        good = self._seg_size
        queued = True  # still counted in _queued_bytes
        try:
            if self._fd is None:
                self._open_segment()
            assert self._fd is not None
            if not self._seg_size:
                self._seg_first = time.monotonic()
            _write_all(self._fd, data)
            self._seg_size += len(data)
            self._seg_records += sum(item.records for item in chunk)
            with self._cond:
                self._queued_bytes -= len(data)
                self._written_total += len(data)
                self._last_write_ok = time.monotonic()
                queued = False
            if seal:
                self._seal(raise_errors=True)
            elif self.fsync == "always":
                os.fsync(self._fd)
            elif self.fsync == "interval":
                self._dirty = True
        except (OSError, SpoolError) as exc:
            reason = _reason(exc)
            log.error("spool writer %s: writing %d records failed: %s", self.writer, len(chunk), reason)
            if queued:
                with self._cond:
                    self._queued_bytes -= len(data)
            error = SpoolError(f"spool write failed: {reason}")
            with self._cond:
                self._last_refusal = (time.monotonic(), "the last spool write failed")
            for item in chunk:
                item.future.set_exception(error)
            self._recover(good)
            return
        for item in chunk:
            item.future.set_result(None)
        if self.fsync == "interval":
            self._timers()

    def _timers(self) -> None:
        """Seal by age; fsync an "interval" segment that has been dirty long enough."""
        if self._fd is None:
            return
        now = time.monotonic()
        if self._seg_size and now - self._seg_first >= self.segment_max_age:
            self._seal()
        elif self._dirty and now - self._last_fsync >= self.fsync_interval:
            try:
                os.fsync(self._fd)
                self._dirty = False
                self._last_fsync = now
            except OSError as exc:
                log.error("spool writer %s: fsync failed: %s", self.writer, _reason(exc))
                self._recover(self._seg_size)

    def _open_segment(self) -> None:
        durable = self.fsync != "never"
        for _ in range(10):
            seq = _allocate_seq(self.directory, durable=durable)
            path = self.directory / segment_name(self.writer, seq, OPEN_SUFFIX)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            except FileExistsError:
                continue
            try:
                # A reader sealing orphans may have taken the lock between create and flock and removed
                # the empty file; the lock is only ours if the name still points at our inode.
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    raise FileNotFoundError
                if durable:
                    _fsync_dir(self.directory)
            except FileNotFoundError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            self._fd, self._path, self._seg_size, self._seg_records = fd, path, 0, 0
            self._dirty, self._last_fsync = False, time.monotonic()
            return
        raise SpoolError("could not create a new spool segment")

    def _seal(self, *, raise_errors: bool = False) -> None:
        """fsync, rename ``.open`` to ``.seg``, fsync the directory, release the file."""
        if self._fd is None:
            return
        fd, path = self._fd, self._path
        try:
            if not self._seg_size:
                path.unlink()
            else:
                if self.fsync != "never":
                    os.fsync(fd)
                path.rename(path.with_suffix(SEALED_SUFFIX))
                if self.fsync != "never":
                    _fsync_dir(self.directory)
        except OSError as exc:
            if raise_errors:
                raise
            log.error("spool writer %s: sealing %s failed: %s", self.writer, path.name, _reason(exc))
        self._fd = None
        self._seg_size = self._seg_records = 0
        self._dirty = False
        os.close(fd)

    def _recover(self, good: int) -> None:
        """After a failed write: cut what may be half-written, then seal (or abandon) the segment."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, good)
            self._seg_size = good
            self._seal(raise_errors=True)
        except OSError as exc:
            log.error("spool writer %s: abandoning %s: %s", self.writer, self._path.name, _reason(exc))
            self._abandon()

    def _abandon(self) -> None:
        """Close the open segment as it is; ``seal_orphans`` recovers it once the lock is released."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._seg_size = self._seg_records = 0
            self._dirty = False
            os.close(fd)


# --- reader -------------------------------------------------------------------------------------------


class SpoolReader:
    """The shipper's side: list, read, acknowledge, recover orphans, purge. One process at a time."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.spool_id = _spool_id(self.directory)
        self._lock = threading.Lock()
        self._counted: set[str] = set()  # segments whose corruption is already in the totals
        self._corrupt_records = 0
        self._corrupt_bytes = 0
        self._purged_segments = 0
        self._purged_bytes = 0

    def _segments(self, kind: str) -> list[tuple[int, str, str]]:
        found = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                parsed = _parse_name(entry.name)
                if parsed is not None and parsed[2] == kind:
                    found.append((parsed[1], parsed[0], entry.name))
        found.sort()
        return found

    def sealed_segments(self) -> list[str]:
        """Sealed segment names in ship order: by ``seq``, i.e. the order the segments were opened."""
        return [name for _, _, name in self._segments("seg")]

    def _path(self, segment: str) -> Path:
        parsed = _parse_name(segment)
        if parsed is None or parsed[2] != "seg":
            raise ValueError("not a sealed segment name")
        return self.directory / segment

    def token(self, segment: str) -> str:
        """The deduplication token: stable across replays and restarts, unique across spools."""
        return f"{self.spool_id}:{self._path(segment).stem}"

    def read(self, segment: str) -> SegmentBatch:
        """All readable records of a sealed segment. Raises FileNotFoundError if it is gone."""
        parsed = parse_segment(self._path(segment).read_bytes())
        if parsed.corrupt_bytes:
            with self._lock:
                if segment not in self._counted:
                    self._counted.add(segment)
                    self._corrupt_records += parsed.corrupt_records
                    self._corrupt_bytes += parsed.corrupt_bytes
                    log.warning(
                        "spool: %s has an unreadable tail of %d bytes (~%d records), skipped",
                        segment,
                        parsed.corrupt_bytes,
                        parsed.corrupt_records,
                    )
        return SegmentBatch(
            segment, self.token(segment), parsed.records, parsed.corrupt_records, parsed.corrupt_bytes
        )

    def ack(self, segment: str) -> None:
        """Delete a segment the sink has confirmed. Acknowledging a segment that is gone is a no-op."""
        try:
            self._path(segment).unlink()
        except FileNotFoundError:
            return
        finally:
            with self._lock:
                self._counted.discard(segment)
        _fsync_dir(self.directory)

    def seal_orphans(self, alive: Callable[[str], bool] | None = None) -> int:
        """Seal the open segments of writers that are gone; return how many were sealed.

        A segment is an orphan when its writer's lock on it is free (the process died or abandoned it)
        and, if given, ``alive(writer)`` is false. A torn tail is cut first and counted; an orphan with no
        readable record is removed.
        """
        sealed = 0
        for _, writer, name in self._segments("open"):
            if alive is not None and alive(writer):
                continue
            if self._seal_orphan(self.directory / name):
                sealed += 1
        return sealed

    def _seal_orphan(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # its writer is alive
            try:
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    return False
            except FileNotFoundError:
                return False  # sealed by its writer after we listed it
            parsed = parse_segment(_read_fd(fd))
            if parsed.corrupt_bytes:
                os.ftruncate(fd, parsed.good_bytes)
                with self._lock:
                    self._corrupt_records += parsed.corrupt_records
                    self._corrupt_bytes += parsed.corrupt_bytes
                log.warning(
                    "spool: cut a torn tail of %d bytes (~%d records) from orphan %s",
                    parsed.corrupt_bytes,
                    parsed.corrupt_records,
                    path.name,
                )
            if not parsed.records:
                path.unlink()
                _fsync_dir(self.directory)
                return False
            os.fsync(fd)
            path.rename(path.with_suffix(SEALED_SUFFIX))
            _fsync_dir(self.directory)
            log.info("spool: sealed orphan %s (%d records)", path.name, len(parsed.records))
            return True
        finally:
            os.close(fd)

    def purge_older_than(self, seconds: float) -> int:
        """Delete sealed segments last written more than ``seconds`` ago; counted and logged."""
        cutoff = time.time() - seconds
        purged = freed = 0
        for name in self.sealed_segments():
            path = self.directory / name
            try:
                st = path.stat()
                if st.st_mtime >= cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            purged += 1
            freed += st.st_size
            with self._lock:
                self._counted.discard(name)
        if purged:
            _fsync_dir(self.directory)
            with self._lock:
                self._purged_segments += purged
                self._purged_bytes += freed
            log.warning(
                "spool: purged %d segments (%d bytes) older than %.0fs; their events were never stored",
                purged,
                freed,
                seconds,
            )
        return purged

    def stats(self) -> SpoolStats:
        sealed = sealed_bytes = opened = open_bytes = 0
        oldest = math.inf
        with os.scandir(self.directory) as entries:
            for entry in entries:
                parsed = _parse_name(entry.name)
                if parsed is None:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if parsed[2] == "seg":
                    sealed += 1
                    sealed_bytes += st.st_size
                    oldest = min(oldest, st.st_mtime)
                else:
                    opened += 1
                    open_bytes += st.st_size
        with self._lock:
            return SpoolStats(
                segments=sealed,
                bytes=sealed_bytes,
                oldest_age_seconds=max(0.0, time.time() - oldest) if sealed else 0.0,
                corrupt_records=self._corrupt_records,
                purged_segments=self._purged_segments,
                open_segments=opened,
                open_bytes=open_bytes,
                corrupt_bytes=self._corrupt_bytes,
                purged_bytes=self._purged_bytes,
            )


class LoopAppender:
    """The event loop's side of a :class:`SpoolWriter`.

    Appends made while one loop iteration runs are handed to the writer thread together (one lock, one
    wake-up) and their waiters are woken together (one call back into the loop), instead of a thread
    hand-off and a wake-up per request. Each append still succeeds or fails on its own, as ``append``.
    """

    def __init__(self, writer: SpoolWriter) -> None:
        self.writer = writer
        self._batches: list[Sequence[bytes]] = []
        self._waiters: list[asyncio.Future[None]] = []

    def append(self, records: Sequence[bytes]) -> asyncio.Future[None]:
        """Resolves once the records are durable; fails as ``SpoolWriter.append`` would raise or fail."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if not self._batches:
            loop.call_soon(self._flush, loop)  # after every request this iteration has appended
        self._batches.append(records)
        self._waiters.append(waiter)
        return waiter

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batches, waiters = self._batches, self._waiters
        self._batches, self._waiters = [], []
        futures, last = self.writer.append_many(batches)
        if last is None:  # nothing was queued: every future is done already
            _settle(loop, futures, waiters)
        else:
            last.add_done_callback(lambda _: loop.call_soon_threadsafe(_settle, loop, futures, waiters))


def _settle(
    loop: asyncio.AbstractEventLoop, futures: list[Future[None]], waiters: list[asyncio.Future[None]]
) -> None:
    """On the loop: pass each writer future's outcome to its waiter. The writer resolves its queue in
    order, so all are done by now; one that is not (never expected) is passed on when it is."""
    for future, waiter in zip(futures, waiters, strict=True):
        if future.done():
            _pass_on(future, waiter)
        else:
            future.add_done_callback(functools.partial(_pass_on_later, loop, waiter))


def _pass_on_later(
    loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None], future: Future[None]
) -> None:
    loop.call_soon_threadsafe(_pass_on, future, waiter)


def _pass_on(future: Future[None], waiter: asyncio.Future[None]) -> None:
    if waiter.done():  # cancelled meanwhile
        return
    exc = future.exception()
    if exc is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(exc)
