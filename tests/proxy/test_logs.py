"""Structured logs: JSON lines, exception type only (never its message, which may quote data)."""

from __future__ import annotations

import logging
import sys

import orjson
import pytest

from proxy.logs import JsonFormatter


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
