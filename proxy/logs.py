"""Structured logs: one JSON object per line on stderr, for our loggers and uvicorn's.

What we log is reasons, counts, steps, sites and file names; never an IP, identifier, User-Agent or
payload (the code never passes one, and uvicorn's access log, which would, is never enabled).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__  # the type only: messages can quote data
        return orjson.dumps(entry).decode()


class RepeatFilter(logging.Filter):
    """Rate-limits repeated log lines: at most ``burst`` lines per message template (logger, level,
    format string) in each ``window`` seconds. The first line let through after a suppression says how
    many similar lines were left out, so a fault that repeats per request (a full disk refusing every
    append) costs a few lines a minute, not one or two per request."""

    MAX_TEMPLATES = 1024  # templates are the code's own strings; this only bounds a misuse

    def __init__(self, window: float = 10.0, burst: int = 5, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window = window
        self.burst = burst
        self.clock = clock
        self._seen: dict[tuple[str, int, str], list[float | int]] = {}  # key -> [window start, sent, held]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        state = self._seen.get(key)
        if state is None or now - state[0] >= self.window:
            held = int(state[2]) if state is not None else 0
            if state is None and len(self._seen) >= self.MAX_TEMPLATES:
                self._seen.clear()
            self._seen[key] = [now, 1, 0]
            if held:
                record.msg = f"{record.msg} [{held} similar lines suppressed]"
            return True
        if state[1] < self.burst:
            state[1] += 1
            return True
        state[2] += 1
        return False


def configure_logging(level: str, fmt: Literal["json", "text"] = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RepeatFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own handlers would print plain text
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every request's URL at info
