"""Structured logs: JSON lines, exception type only (never its message, which may quote data)."""

from __future__ import annotations

import logging
import sys

import orjson
import pytest

from proxy.logs import JsonFormatter, RepeatFilter


def test_json_lines_carry_no_exception_message() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("203.0.113.77 jo@example.com")
    except ValueError:
        record = logging.LogRecord(
            "beaconproxy", logging.ERROR, __file__, 1, "insert failed: %s", ("code 27",), None
        )
        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    entry = orjson.loads(line)
    assert entry["msg"] == "insert failed: code 27"
    assert entry["level"] == "error"
    assert entry["logger"] == "beaconproxy"
    assert entry["exception"] == "ValueError"
    assert "203.0.113.77" not in line and "jo@" not in line


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_every_level_formats(level: str) -> None:
    record = logging.LogRecord("x", getattr(logging, level.upper()), __file__, 1, "m", (), None)
    assert orjson.loads(JsonFormatter().format(record))["level"] == level


def test_repeated_lines_are_rate_limited_per_template() -> None:
    now = [0.0]
    f = RepeatFilter(window=10.0, burst=3, clock=lambda: now[0])

    def line(msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord("beaconproxy", level, __file__, 1, msg, args, None)

    refused = [line("spool append failed: %d events refused", n) for n in range(100)]
    passed = [r for r in refused if f.filter(r)]
    assert len(passed) == 3  # the burst; the other 97 are held back
    assert f.filter(line("worker process %s started", 1, level=logging.INFO))  # another template passes
    now[0] = 10.0
    late = line("spool append failed: %d events refused", 7)
    assert f.filter(late)
    assert late.getMessage() == "spool append failed: 7 events refused [97 similar lines suppressed]"
    assert f.filter(line("spool append failed: %d events refused", 8))
    # the same text at another level is another template
    assert f.filter(line("spool append failed: %d events refused", 1, level=logging.WARNING))
