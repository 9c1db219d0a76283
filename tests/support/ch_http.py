"""Test fixture: a subset of ClickHouse's HTTP interface served on top of embedded chDB.

Test code only, never product code. It lets the remote (``http://``) clickhouse-connect client path be
exercised on a machine without a ClickHouse server binary.

chDB allows a single data path per process (and a single process per data directory), and the pytest
process uses embedded chDB itself, so the server always runs in its own subprocess::

    python -m tests.support.ch_http --data-dir DIR --port 0 [--user U --password P]

It binds 127.0.0.1 only, prints ``LISTENING <port>`` on stdout once it is ready and serves until
SIGTERM/SIGINT (clean exit, status 0). Tests normally use :func:`clickhouse_http_server`, which
starts the subprocess, yields a DSN for ``clickhouse_connect.get_client(dsn=...)`` and always stops it.

What is served:

* ``GET|HEAD /ping`` and ``/replicas_status`` -> ``Ok.``; ``GET /`` without a query -> ``Ok.``
* ``GET|POST /``: the SQL is the ``query`` URL parameter and/or the request body (joined by a newline,
  as ClickHouse does); ``multipart/form-data`` bodies may carry ``query`` and ``param_*`` fields.
* ``INSERT ... FORMAT <fmt>`` followed by data (in the body, possibly after a ``query`` parameter) is
  streamed into chDB with ``Connection.send_insert``; any input format chDB knows works (Native,
  RowBinary, CSV, JSONEachRow, ...). Every other statement runs through ``Connection.query``.
* Request bodies with ``Content-Encoding`` lz4 (frames), zstd (frames), gzip, deflate and br (streams) are
  decompressed; responses are compressed when ``enable_http_compression=1`` and ``Accept-Encoding``
  names a supported method.
* URL parameters that are ClickHouse settings are applied to the request with ``SET`` on a fresh
  chDB connection (``readonly`` last, so it cannot block the others); ``database`` selects the current
  database; ``param_<name>`` are query parameters for ``{name:Type}`` placeholders; parameters that
  only mean something to the HTTP layer (``session_id``, ``query_id``, ``wait_end_of_query`` ...)
  are ignored. GET requests default to ``readonly=2`` like ClickHouse.
* Response headers: ``X-ClickHouse-Summary``, ``X-ClickHouse-Query-Id``, ``X-ClickHouse-Timezone``,
  ``X-ClickHouse-Server-Display-Name`` and, for statements that produce a result, ``X-ClickHouse-Format``.
* Errors: ``Code: N. DB::Exception: ... (NAME) (version V)`` with ``X-ClickHouse-Exception-Code: N``
  and an HTTP status derived from the code (401 auth, 403 readonly, 400 bad query, 404 unknown
  table/database, 501 not implemented, 500 otherwise).
* Optional authentication (``--user``/``--password``): basic auth, ``X-ClickHouse-User``/``-Key``
  headers or ``user``/``password`` URL parameters; wrong credentials -> 401 with code 516.
* An optional user that may only read (``--reader-user``/``--reader-password``), like a user granted
  SELECT and nothing else: it may set settings, and any statement that produces no result (INSERT, DDL,
  SYSTEM, ...) answers ACCESS_DENIED (497). Grants on tables and table functions are not emulated.
* An optional restricted user (``--restricted-user``/``--restricted-password``) with what a replica's user
  needs and no more: SELECT, INSERT and ``ALTER ... DELETE``; any other DDL (CREATE, other ALTERs,
  DROP, ...) -> ACCESS_DENIED (code 497), as a server's grants would answer.
* Sessions are exclusive, as on a server: a request whose ``session_id`` is in use by another request
  still running fails with SESSION_IS_LOCKED (code 373).

Known gaps (by design; extend when a test needs it):

* No session state: ``SET``, ``USE`` and temporary tables do not carry over to the next request
  (only the one-query-at-a-time rule of sessions is kept).
* ``client_protocol_version`` is ignored (clickhouse-connect's probe then falls back to protocol 0);
  ``compress=1``/``decompress=1`` (ClickHouse's own block compression) and external data (form
  file parts) answer NOT_IMPLEMENTED.
* Results and request bodies are buffered in memory; no progress headers, no mid-stream exceptions.
* ``enable_http_compression`` defaults to chDB's value (1), not a server's (0).
* ``X-ClickHouse-Summary`` numbers come from chDB (``result_rows`` is 0 for SELECTs; a deduplicated
  insert still reports its rows as written).
* HTTP statuses for error codes are an approximation; one user; no TLS, roles or quotas.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import hmac
import importlib
import itertools
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, BinaryIO, Final, Protocol, cast
from urllib.parse import parse_qsl, quote, urlsplit


def _optional_module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - depends on the environment
        return None


# Codecs clickhouse-connect may use; the same optional packages it relies on.
lz4_frame = _optional_module("lz4.frame")
zstd = _optional_module("backports.zstd")
brotli = _optional_module("brotli")

__all__ = ["ClickHouseError", "clickhouse_http_server", "main"]

LISTEN_HOST: Final = "127.0.0.1"
REPO_ROOT: Final = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------

# ClickHouse error codes this module raises itself, with their symbolic names.
SYNTAX_ERROR: Final = 62
BAD_ARGUMENTS: Final = 36
NOT_IMPLEMENTED: Final = 48
UNKNOWN_SETTING: Final = 115
SESSION_IS_LOCKED: Final = 373
ACCESS_DENIED: Final = 497
AUTHENTICATION_FAILED: Final = 516
STD_EXCEPTION: Final = 1001

_ERROR_NAMES: Final[Mapping[int, str]] = {
    SYNTAX_ERROR: "SYNTAX_ERROR",
    BAD_ARGUMENTS: "BAD_ARGUMENTS",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    ACCESS_DENIED: "ACCESS_DENIED",
    UNKNOWN_SETTING: "UNKNOWN_SETTING",
    SESSION_IS_LOCKED: "SESSION_IS_LOCKED",
    AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED",
    STD_EXCEPTION: "STD_EXCEPTION",
}

# Approximation of how ClickHouse maps exception codes to HTTP statuses. Never 429/503/504:
# clickhouse-connect retries those.
_HTTP_STATUS_BY_CODE: Final[Mapping[int, int]] = {
    # authentication
    192: 401,  # UNKNOWN_USER
    193: 401,  # WRONG_PASSWORD
    194: 401,  # REQUIRED_PASSWORD
    516: 401,  # AUTHENTICATION_FAILED
    # authorisation
    164: 403,  # READONLY
    497: 403,  # ACCESS_DENIED
    # bad request
    6: 400,  # CANNOT_PARSE_TEXT
    16: 400,  # NO_SUCH_COLUMN_IN_TABLE
    27: 400,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33: 400,  # CANNOT_READ_ALL_DATA
    36: 400,  # BAD_ARGUMENTS
    42: 400,  # NUMBER_OF_ARGUMENTS_DOESNT_MATCH
    43: 400,  # ILLEGAL_TYPE_OF_ARGUMENT
    47: 400,  # UNKNOWN_IDENTIFIER
    53: 400,  # TYPE_MISMATCH
    62: 400,  # SYNTAX_ERROR
    73: 400,  # UNKNOWN_FORMAT
    115: 400,  # UNKNOWN_SETTING
    # not found
    46: 404,  # UNKNOWN_FUNCTION
    60: 404,  # UNKNOWN_TABLE
    81: 404,  # UNKNOWN_DATABASE
    # not implemented
    48: 501,  # NOT_IMPLEMENTED
}

_CODE_RE: Final = re.compile(r"Code: (\d+)\. (.*)", re.DOTALL)
_VERSION_TRAILER_RE: Final = re.compile(r"\s*\(version [^)]*\)\s*$")


class ClickHouseError(Exception):
    """An error reported the way ClickHouse reports it: numeric code plus ``DB::Exception: ...`` text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"Code: {code}. {text}")
        self.code = code
        self.text = text

    @classmethod
    def make(cls, code: int, message: str) -> ClickHouseError:
        name = _ERROR_NAMES.get(code)
        suffix = f" ({name})" if name else ""
        return cls(code, f"DB::Exception: {message}.{suffix}")

    @classmethod
    def from_engine(cls, exc: BaseException) -> ClickHouseError:
        """Convert an exception raised by chDB (text contains ``Code: N. DB::Exception: ...``)."""
        if isinstance(exc, ClickHouseError):
            return exc
        raw = str(exc)
        match = _CODE_RE.search(raw)
        if match is None:
            return cls.make(STD_EXCEPTION, f"{type(exc).__name__}: {raw.strip() or 'unknown error'}")
        # Keep the first paragraph only: chDB appends stack traces to some internal errors.
        text = match.group(2).split("\n\n", 1)[0].strip()
        return cls(int(match.group(1)), _VERSION_TRAILER_RE.sub("", text))

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS_BY_CODE.get(self.code, 500)

    def render(self, version: str) -> bytes:
        return f"Code: {self.code}. {self.text} (version {version})\n".encode()


# ---------------------------------------------------------------------------------------------------
# A small SQL lexer: just enough to split INSERT statements from their data, find FORMAT clauses
# and count statements. Works on bytes so it can stop before binary insert data.
# ---------------------------------------------------------------------------------------------------

_WHITESPACE: Final = frozenset(b" \t\n\r\f\v")
_WORD_CHARS: Final = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$" + bytes(range(0x80, 0x100))
)
_QUOTES: Final = frozenset(b"'\"`")
_OPEN: Final = frozenset(b"([{")
_CLOSE: Final = frozenset(b")]}")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "word", "quoted" or "punct"
    start: int
    end: int
    depth: int  # bracket nesting level the token is at

    def text(self, sql: bytes) -> str:
        return sql[self.start : self.end].decode("utf-8", errors="replace")

    def keyword(self, sql: bytes) -> str:
        return self.text(sql).upper() if self.kind == "word" else ""


def tokenize(sql: bytes) -> Iterator[Token]:
    """Yield tokens lazily, skipping whitespace and comments. Tolerant: never raises."""
    i, n, depth = 0, len(sql), 0
    while i < n:
        c = sql[i]
        if c in _WHITESPACE:
            i += 1
        elif sql.startswith(b"--", i) or (c == ord("#") and sql[i + 1 : i + 2] in (b" ", b"!")):
            newline = sql.find(b"\n", i)
            i = n if newline < 0 else newline + 1
        elif sql.startswith(b"/*", i):
            close = sql.find(b"*/", i + 2)
            i = n if close < 0 else close + 2
        elif c in _QUOTES:
            j = i + 1
            while j < n:
                if sql[j] == ord("\\"):
                    j += 2
                elif sql[j] == c:
                    if sql[j + 1 : j + 2] == bytes([c]):
                        j += 2
                    else:
                        break
                else:
                    j += 1
            end = min(j + 1, n)
            yield Token("quoted", i, end, depth)
            i = end
        elif c in _WORD_CHARS:
            j = i + 1
            while j < n and sql[j] in _WORD_CHARS:
                j += 1
            yield Token("word", i, j, depth)
            i = j
        else:
            if c in _CLOSE:
                depth = max(0, depth - 1)
            yield Token("punct", i, i + 1, depth)
            if c in _OPEN:
                depth += 1
            i += 1


@dataclass(frozen=True, slots=True)
class InsertWithData:
    statement: str  # "INSERT INTO t (cols)" without the FORMAT clause
    input_format: str
    data: bytes


def split_insert(payload: bytes) -> InsertWithData | None:
    """Split ``INSERT ... FORMAT fmt <data>`` into statement, format and data.

    Returns None for anything else (including ``INSERT ... VALUES`` and ``INSERT ... SELECT``, which
    chDB executes as plain queries). Data starts after the format name, optional blanks and at most
    one line break, like ClickHouse; the data itself is never tokenized.
    """
    tokens = tokenize(payload)
    first = next(tokens, None)
    if first is None or first.keyword(payload) != "INSERT":
        return None
    previous = first
    format_keyword: Token | None = None
    statement_end = first.end
    for token in tokens:
        keyword = token.keyword(payload)
        if format_keyword is not None:
            if token.kind != "word":
                raise ClickHouseError.make(SYNTAX_ERROR, "Expected a format name after FORMAT")
            data_start = token.end
            while data_start < len(payload) and payload[data_start] in b" \t\f":
                data_start += 1
            if payload[data_start : data_start + 1] == b"\r":
                data_start += 1
            if payload[data_start : data_start + 1] == b"\n":
                data_start += 1
            # Up to the last token before FORMAT: drops a trailing comment that would swallow the
            # FORMAT clause chDB appends.
            statement = payload[:statement_end].decode("utf-8")
            return InsertWithData(statement, token.text(payload), payload[data_start:])
        if token.depth == 0 and keyword in ("SELECT", "WITH", "VALUES"):
            return None
        is_table_name = previous.keyword(payload) in ("INTO", "TABLE") or payload[previous.start] == ord(".")
        if token.depth == 0 and keyword == "FORMAT" and not is_table_name:
            format_keyword = token
            statement_end = previous.end
        previous = token
    return None


def explicit_output_format(sql: bytes) -> str | None:
    """The name in a trailing top-level ``FORMAT name`` clause (optionally followed by SETTINGS/;)."""
    tokens = list(tokenize(sql))
    for index in range(len(tokens) - 2, -1, -1):
        token, name = tokens[index], tokens[index + 1]
        if token.depth != 0 or token.keyword(sql) != "FORMAT" or name.kind != "word":
            continue
        rest = tokens[index + 2 :]
        if not rest or sql[rest[0].start : rest[0].end] == b";" or rest[0].keyword(sql) == "SETTINGS":
            return name.text(sql)
    return None


def statement_count(sql: bytes) -> int:
    count, in_statement = 0, False
    for token in tokenize(sql):
        if token.depth == 0 and sql[token.start : token.end] == b";":
            in_statement = False
        elif not in_statement:
            count += 1
            in_statement = True
    return count


_RESULT_KEYWORDS: Final = frozenset(
    {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "CHECK"}
)


def produces_result(sql: bytes) -> bool:
    for token in tokenize(sql):
        if token.kind == "punct" and sql[token.start : token.end] == b"(":
            continue
        return token.keyword(sql) in _RESULT_KEYWORDS or explicit_output_format(sql) is not None
    return False


# ---------------------------------------------------------------------------------------------------
# HTTP compression
# ---------------------------------------------------------------------------------------------------


def _decompress_lz4(data: bytes) -> bytes:
    if lz4_frame is None:
        raise ClickHouseError.make(NOT_IMPLEMENTED, "lz4 is not installed in the fixture environment")
    out = bytearray()
    while data:  # clickhouse-connect sends one LZ4 frame per block
        decompressor = lz4_frame.LZ4FrameDecompressor()
        out += decompressor.decompress(data)
        if not decompressor.eof:
            raise ClickHouseError.make(BAD_ARGUMENTS, "Truncated lz4 frame in request body")
        data = decompressor.unused_data
    return bytes(out)


def _decompress_zstd(data: bytes) -> bytes:
    if zstd is None:
        raise ClickHouseError.make(NOT_IMPLEMENTED, "zstd is not installed in the fixture environment")
    return cast(bytes, zstd.decompress(data))


def _decompress_brotli(data: bytes) -> bytes:
    """Decode concatenated brotli streams (clickhouse-connect compresses each block separately)."""
    if brotli is None:
        raise ClickHouseError.make(NOT_IMPLEMENTED, "brotli is not installed in the fixture environment")
    out = bytearray()
    start = 0
    while start < len(data):
        decoder = brotli.Decompressor()
        pos = start
        while not decoder.is_finished():
            if pos >= len(data):
                raise ClickHouseError.make(BAD_ARGUMENTS, "Truncated brotli stream in request body")
            piece = data[pos : pos + 65536]
            try:
                out += decoder.process(piece)
                pos += len(piece)
            except brotli.error:
                # The stream ends inside this piece and another one follows; the decoder has no
                # "unused data", so replay the consumed part and find the end byte by byte.
                decoder = brotli.Decompressor()
                decoder.process(data[start:pos])  # output already collected
                end = pos + len(piece)
                while not decoder.is_finished() and pos < end:
                    out += decoder.process(data[pos : pos + 1])
                    pos += 1
        start = pos
    return bytes(out)


def _decompress_deflate(data: bytes) -> bytes:
    try:
        return zlib.decompress(data, wbits=47)  # zlib or gzip header, auto-detected
    except zlib.error:
        return zlib.decompress(data, wbits=-15)  # raw deflate


_DECOMPRESSORS: Final[Mapping[str, Callable[[bytes], bytes]]] = {
    "lz4": _decompress_lz4,
    "zstd": _decompress_zstd,
    "br": _decompress_brotli,
    "gzip": gzip.decompress,
    "x-gzip": gzip.decompress,
    "deflate": _decompress_deflate,
}


def decompress_body(data: bytes, content_encoding: str | None) -> bytes:
    encoding = (content_encoding or "").strip().lower()
    if not data or encoding in ("", "identity"):
        return data
    decompressor = _DECOMPRESSORS.get(encoding)
    if decompressor is None:
        raise ClickHouseError.make(NOT_IMPLEMENTED, f"Unsupported Content-Encoding {encoding!r}")
    try:
        return decompressor(data)
    except ClickHouseError:
        raise
    except Exception as exc:
        raise ClickHouseError.make(
            BAD_ARGUMENTS, f"Cannot decompress {encoding} request body: {exc}"
        ) from exc


def _compressors() -> dict[str, Callable[[bytes], bytes]]:
    available: dict[str, Callable[[bytes], bytes]] = {}
    # Preference order when the client accepts several.
    if zstd is not None:
        available["zstd"] = zstd.compress
    if brotli is not None:
        available["br"] = brotli.compress
    if lz4_frame is not None:
        available["lz4"] = lz4_frame.compress
    available["gzip"] = gzip.compress
    available["deflate"] = zlib.compress
    return available


_COMPRESSORS: Final = _compressors()


def choose_response_encoding(accept_encoding: str | None) -> str | None:
    accepted = {part.split(";", 1)[0].strip().lower() for part in (accept_encoding or "").split(",")}
    return next((name for name in _COMPRESSORS if name in accepted), None)


# ---------------------------------------------------------------------------------------------------
# Query execution on chDB
# ---------------------------------------------------------------------------------------------------

# URL parameters that belong to the HTTP protocol rather than to query settings; ignored.
HTTP_ONLY_PARAMS: Final = frozenset(
    {
        "query",
        "database",
        "user",
        "password",
        "quota_key",
        "role",
        "session_id",
        "session_timeout",
        "session_check",
        "close_session",
        "query_id",
        "default_format",
        "buffer_size",
        "wait_end_of_query",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "enable_http_compression",
        "http_zlib_compression_level",
        "client_protocol_version",
        "stacktrace",
        "compress",
        "decompress",
    }
)
_SETTING_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TRUE_VALUES: Final = frozenset({"1", "true", "yes", "on"})

_CONTENT_TYPES: Final[tuple[tuple[str, str], ...]] = (
    ("Native", "application/octet-stream"),
    ("RowBinary", "application/octet-stream"),
    ("Arrow", "application/octet-stream"),
    ("Parquet", "application/octet-stream"),
    ("JSON", "application/json; charset=UTF-8"),
    ("TabSeparated", "text/tab-separated-values; charset=UTF-8"),
    ("TSV", "text/tab-separated-values; charset=UTF-8"),
    ("CSV", "text/csv; charset=UTF-8"),
)


def content_type_for(fmt: str) -> str:
    return next(
        (ctype for prefix, ctype in _CONTENT_TYPES if fmt.startswith(prefix)), "text/plain; charset=UTF-8"
    )


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _Inserter(Protocol):
    def append(self, data: bytes) -> None: ...

    def finish(self) -> Any: ...

    def cancel(self) -> None: ...


class _Connection(Protocol):
    def query(self, query: str, format: str = "CSV", params: dict[str, str] | None = None) -> Any: ...

    def send_insert(self, query: str, format: str = "CSV") -> _Inserter: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class QueryRequest:
    method: str
    params: Mapping[str, str]
    headers: Mapping[str, str]  # lower-cased names
    payload: bytes  # query parameter + "\n" + (decompressed) body
    reader: bool = False  # sent by the user that may only read


@dataclass(frozen=True, slots=True)
class QueryResponse:
    body: bytes
    output_format: str | None
    summary: Mapping[str, str]
    timezone: str


class Engine:
    """Runs requests on chDB: one fresh connection per request so settings never leak."""

    def __init__(self, data_dir: Path) -> None:
        import chdb  # imported lazily: only the server subprocess needs the engine

        self._connect = cast(Callable[[str], _Connection], chdb.connect)
        self._path = str(data_dir.resolve())
        # Keeps the embedded engine alive for the whole server lifetime.
        self._base: _Connection | None = self._connect(self._path)
        row = self._base.query(
            "SELECT version(), timezone(), getSetting('enable_http_compression')", "TabSeparated"
        )
        self.version, self.timezone, compression = row.bytes().decode().rstrip("\n").split("\t")
        # chDB's default for enable_http_compression is 1 (a ClickHouse server's is 0); honour it.
        self.http_compression_default = compression.lower() in _TRUE_VALUES

    def close(self) -> None:
        base, self._base = self._base, None
        if base is not None:
            base.close()

    def execute(self, request: QueryRequest) -> QueryResponse:
        params = request.params
        if any(params.get(name, "0").lower() in _TRUE_VALUES for name in ("compress", "decompress")):
            raise ClickHouseError.make(
                NOT_IMPLEMENTED, "ClickHouse native block compression is not supported"
            )
        conn = self._connect(self._path)
        try:
            self._prepare(conn, request)
            insert = split_insert(request.payload)
            if request.reader and (insert is not None or not produces_result(request.payload)):
                raise ClickHouseError.make(ACCESS_DENIED, "Not enough privileges: this user may only read")
            if insert is not None:
                return self._insert(conn, insert, request)
            return self._query(conn, request)
        except Exception as exc:
            raise ClickHouseError.from_engine(exc) from exc
        finally:
            conn.close()

    def _prepare(self, conn: _Connection, request: QueryRequest) -> None:
        database = request.params.get("database") or request.headers.get("x-clickhouse-database")
        if database:
            conn.query(f"USE {quote_identifier(database)}")
        settings = {
            name: value
            for name, value in request.params.items()
            if name not in HTTP_ONLY_PARAMS and not name.startswith("param_")
        }
        if request.method == "GET":
            settings.setdefault("readonly", "2")
        readonly = settings.pop("readonly", None)
        for name, value in [*settings.items(), *([("readonly", readonly)] if readonly is not None else [])]:
            if not _SETTING_NAME_RE.fullmatch(name):
                raise ClickHouseError.make(UNKNOWN_SETTING, f"Unknown setting {name!r}")
            conn.query(f"SET {name} = {quote_string(value)}")

    def _insert(self, conn: _Connection, insert: InsertWithData, request: QueryRequest) -> QueryResponse:
        inserter = conn.send_insert(insert.statement, insert.input_format)
        try:
            if insert.data:
                inserter.append(insert.data)
            result = inserter.finish()
        except BaseException:
            with contextlib.suppress(Exception):
                inserter.cancel()
            raise
        rows, size = str(result.rows_written), str(result.bytes_written)
        summary = _summary(written=(rows, size), result=(rows, size), elapsed=result.elapsed)
        return QueryResponse(b"", None, summary, self._timezone(request))

    def _query(self, conn: _Connection, request: QueryRequest) -> QueryResponse:
        sql = request.payload
        count = statement_count(sql)
        if count == 0:
            raise ClickHouseError.make(SYNTAX_ERROR, "Empty query")
        if count > 1:
            raise ClickHouseError.make(SYNTAX_ERROR, "Multi-statements are not allowed")
        try:
            text = sql.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClickHouseError.make(SYNTAX_ERROR, f"Query is not valid UTF-8: {exc}") from exc
        default_format = request.params.get("default_format") or request.headers.get(
            "x-clickhouse-format", "TabSeparated"
        )
        query_params = {
            name[6:]: value for name, value in request.params.items() if name.startswith("param_")
        }
        result = conn.query(text, default_format, params=query_params)
        output_format = (explicit_output_format(sql) or default_format) if produces_result(sql) else None
        summary = _summary(
            read=(str(result.rows_read()), str(result.bytes_read())),
            written=(str(result.rows_written()), str(result.bytes_written())),
            elapsed=result.elapsed(),
        )
        return QueryResponse(result.bytes(), output_format, summary, self._timezone(request))

    def _timezone(self, request: QueryRequest) -> str:
        return request.params.get("session_timezone") or self.timezone


def _summary(
    *,
    read: tuple[str, str] = ("0", "0"),
    written: tuple[str, str] = ("0", "0"),
    result: tuple[str, str] = ("0", "0"),
    elapsed: float = 0.0,
) -> dict[str, str]:
    return {
        "read_rows": read[0],
        "read_bytes": read[1],
        "written_rows": written[0],
        "written_bytes": written[1],
        "total_rows_to_read": read[0],
        "result_rows": result[0],
        "result_bytes": result[1],
        "elapsed_ns": str(int(elapsed * 1e9)),
    }


# ---------------------------------------------------------------------------------------------------
# HTTP layer
# ---------------------------------------------------------------------------------------------------


class BadRequest(Exception):
    """The HTTP request itself is malformed; the connection is closed after answering."""


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str


# What the restricted user may not run: every statement that changes the schema or the server.
_DDL_KEYWORDS: Final = frozenset(
    {
        "CREATE",
        "ALTER",
        "DROP",
        "RENAME",
        "TRUNCATE",
        "ATTACH",
        "DETACH",
        "OPTIMIZE",
        "GRANT",
        "REVOKE",
        "SYSTEM",
    }
)


def check_restricted(sql: bytes) -> None:
    """Raise ACCESS_DENIED unless a user with SELECT, INSERT and ALTER DELETE may run ``sql``."""
    words = [t.keyword(sql) for t in itertools.islice(tokenize(sql), 12) if t.kind == "word"]
    if not words or words[0] not in _DDL_KEYWORDS:
        return
    if words[0] == "ALTER" and "DELETE" in words:
        return  # ALTER TABLE t [ON CLUSTER c] DELETE WHERE ...
    raise ClickHouseError.make(
        ACCESS_DENIED,
        f"restricted: Not enough privileges. To execute this query, it's necessary to have {words[0]} rights",
    )


class FixtureServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not delay shutdown

    def __init__(
        self,
        port: int,
        engine: Engine,
        credentials: Credentials,
        verbose: bool,
        reader: Credentials | None = None,
        restricted: Credentials | None = None,
    ) -> None:
        self.engine = engine
        self.credentials = credentials
        self.reader = reader
        self.restricted = restricted
        self.verbose = verbose
        self.display_name = socket.gethostname()
        self.sessions: set[str] = set()  # sessions with a request running
        self.sessions_lock = threading.Lock()
        super().__init__((LISTEN_HOST, port), RequestHandler)

    @contextlib.contextmanager
    def session(self, session_id: str | None) -> Iterator[None]:
        """A session runs one request at a time, as on a ClickHouse server."""
        if not session_id:
            yield
            return
        with self.sessions_lock:
            if session_id in self.sessions:
                raise ClickHouseError.make(
                    SESSION_IS_LOCKED, f"Session {session_id} is locked by a concurrent client"
                )
            self.sessions.add(session_id)
        try:
            yield
        finally:
            with self.sessions_lock:
                self.sessions.discard(session_id)


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ClickHouseHTTPFixture"
    sys_version = ""
    timeout = 60  # seconds an idle keep-alive connection may stay open

    @property
    def fixture(self) -> FixtureServer:
        return cast(FixtureServer, self.server)

    def log_message(self, format: str, *args: Any) -> None:
        if self.fixture.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    # -- request handling ------------------------------------------------------------------------

    def _handle(self) -> None:
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except BadRequest as exc:
            self.close_connection = True
            self._send(400, f"Bad request: {exc}\n".encode(), {"Content-Type": "text/plain; charset=UTF-8"})
            return
        if url.path in ("/ping", "/replicas_status"):
            self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            return
        if url.path != "/":
            message = f"There is no handle {url.path}\n\nUse / or /ping for health checks.\n".encode()
            self._send(404, message, {"Content-Type": "text/plain; charset=UTF-8"})
            return
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if self.command in ("GET", "HEAD") and "query" not in params and not body:
            self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            return
        query_id = params.get("query_id") or str(uuid.uuid4())
        engine = self.fixture.engine
        try:
            role = self._authenticate(params)
            reader, restricted = role == "reader", role == "restricted"
            payload = self._payload(params, body)
            if restricted:
                check_restricted(payload)
            request = QueryRequest(
                self.command, params, {k.lower(): v for k, v in self.headers.items()}, payload, reader
            )
            with self.fixture.session(params.get("session_id")):
                response = engine.execute(request)
        except Exception as exc:  # every failure is answered the ClickHouse way, never a dropped socket
            error = ClickHouseError.from_engine(exc)
            headers = {
                "Content-Type": "text/plain; charset=UTF-8",
                "X-ClickHouse-Exception-Code": str(error.code),
                "X-ClickHouse-Query-Id": query_id,
            }
            self._send(error.http_status, error.render(engine.version), headers)
            return
        headers = {
            "Content-Type": content_type_for(response.output_format or "TabSeparated"),
            "X-ClickHouse-Server-Display-Name": self.fixture.display_name,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": response.timezone,
            "X-ClickHouse-Summary": json.dumps(response.summary, separators=(",", ":")),
        }
        if response.output_format is not None:
            headers["X-ClickHouse-Format"] = response.output_format
        out = response.body
        compression_setting = params.get("enable_http_compression")
        if compression_setting is None:
            compress_response = engine.http_compression_default
        else:
            compress_response = compression_setting.lower() in _TRUE_VALUES
        if out and compress_response:
            encoding = choose_response_encoding(self.headers.get("Accept-Encoding"))
            if encoding is not None:
                out = _COMPRESSORS[encoding](out)
                headers["Content-Encoding"] = encoding
        self._send(200, out, headers)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError as exc:
            raise BadRequest(f"invalid Content-Length {length_header!r}") from exc
        if length < 0:
            raise BadRequest(f"invalid Content-Length {length_header!r}")
        body = self.rfile.read(length)
        if len(body) != length:
            raise BadRequest("request body shorter than Content-Length")
        return body

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise BadRequest("malformed chunk header")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise BadRequest("malformed chunk size") from exc
            if size == 0:
                while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(out)
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BadRequest("truncated chunk")
            out += chunk

    def _authenticate(self, params: Mapping[str, str]) -> str:
        """Check the credentials; the user's role: "default", "reader" or "restricted"."""
        user_header = self.headers.get("X-ClickHouse-User")
        authorization = self.headers.get("Authorization")
        if user_header is not None:
            user, password = user_header, self.headers.get("X-ClickHouse-Key", "")
        elif authorization is not None:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "basic":
                raise ClickHouseError.make(
                    AUTHENTICATION_FAILED, f"Unsupported authentication scheme {scheme}"
                )
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except ValueError as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors
                raise ClickHouseError.make(AUTHENTICATION_FAILED, "Malformed basic authentication") from exc
            user, _, password = decoded.partition(":")
        else:
            user, password = params.get("user", "default"), params.get("password", "")
        users = (
            (self.fixture.credentials, "default"),
            (self.fixture.reader, "reader"),
            (self.fixture.restricted, "restricted"),
        )
        for expected, role in users:
            if expected is None:
                continue
            user_ok = hmac.compare_digest(user.encode(), expected.user.encode())
            password_ok = hmac.compare_digest(password.encode(), expected.password.encode())
            if user_ok and password_ok:
                return role
        raise ClickHouseError.make(
            AUTHENTICATION_FAILED,
            f"{user}: Authentication failed: password is incorrect, or there is no user with such name",
        )

    def _payload(self, params: dict[str, str], body: bytes) -> bytes:
        content_type = self.headers.get("Content-Type", "")
        if content_type.lower().startswith("multipart/form-data"):
            params.update(
                _parse_form(content_type, decompress_body(body, self.headers.get("Content-Encoding")))
            )
            body = b""
        else:
            body = decompress_body(body, self.headers.get("Content-Encoding"))
        query = params.get("query", "")
        if query and body:
            return query.encode() + b"\n" + body
        return query.encode() or body

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _parse_form(content_type: str, body: bytes) -> dict[str, str]:
    """Text fields of a multipart/form-data body (``query``, ``param_*``); file parts are rejected."""
    message = BytesParser(policy=policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        raise ClickHouseError.make(BAD_ARGUMENTS, "Malformed multipart/form-data body")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise ClickHouseError.make(BAD_ARGUMENTS, "Form field without a name")
        if part.get_filename() is not None:
            raise ClickHouseError.make(
                NOT_IMPLEMENTED, f"External data (form file {name!r}) is not supported"
            )
        payload = part.get_payload(decode=True)
        fields[name] = payload.decode("utf-8") if isinstance(payload, bytes) else ""
    return fields


# ---------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------


def _watch_stdin(stop: threading.Event) -> None:
    """Stop when stdin reaches EOF, i.e. when the parent process (the test run) goes away."""
    with contextlib.suppress(OSError, ValueError):
        fd = sys.stdin.fileno()
        while os.read(fd, 4096):  # unbuffered: no lock on sys.stdin held at interpreter shutdown
            pass
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.ch_http",
        description="Serve a subset of ClickHouse's HTTP interface on top of chDB (test fixture).",
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="chDB data directory")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: pick a free one)")
    parser.add_argument("--user", default="default", help="accepted user name")
    parser.add_argument("--password", default="", help="accepted password")
    parser.add_argument("--reader-user", help="a second user, who may only read")
    parser.add_argument("--reader-password", default="", help="the read-only user's password")
    parser.add_argument("--restricted-user", help="a user with SELECT, INSERT and ALTER DELETE only")
    parser.add_argument("--restricted-password", default="", help="that user's password")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin is closed")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    try:
        engine = Engine(args.data_dir)
    except Exception as exc:
        print(f"ch_http: cannot start chDB on {args.data_dir}: {exc}", file=sys.stderr, flush=True)
        return 1
    try:
        reader = Credentials(args.reader_user, args.reader_password) if args.reader_user else None
        restricted = (
            Credentials(args.restricted_user, args.restricted_password) if args.restricted_user else None
        )
        server = FixtureServer(
            args.port, engine, Credentials(args.user, args.password), args.verbose, reader, restricted
        )
    except OSError as exc:
        engine.close()
        print(f"ch_http: cannot listen on {LISTEN_HOST}:{args.port}: {exc}", file=sys.stderr, flush=True)
        return 1
    serve_thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    serve_thread.start()
    if args.exit_on_stdin_eof:
        threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        serve_thread.join(timeout=5)
        engine.close()
    return 0


# ---------------------------------------------------------------------------------------------------
# Pytest helper
# ---------------------------------------------------------------------------------------------------


def _stderr_tail(stderr: BinaryIO, limit: int = 4000) -> str:
    stderr.flush()
    stderr.seek(0)
    text = stderr.read().decode("utf-8", errors="replace").strip()
    return text[-limit:] if text else "(no stderr output)"


def _wait_for_listening(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Read stdout until ``LISTENING <port>``; raise RuntimeError if the process dies or times out."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buffer = b""
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"ClickHouse HTTP fixture did not report LISTENING within {timeout:.0f}s")
        # poll, not select: a test process with over 1024 descriptors open (chDB keeps one per table
        # with a deduplication window) would make select() fail
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        ready = poller.poll(min(remaining, 0.25) * 1000)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                try:
                    code = proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    code = None
                raise RuntimeError(
                    f"ClickHouse HTTP fixture closed stdout before LISTENING (exit code {code})"
                )
            buffer += chunk
        elif proc.poll() is not None:
            raise RuntimeError(f"ClickHouse HTTP fixture exited with code {proc.returncode} before LISTENING")
    line = buffer.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()
    match = re.fullmatch(r"LISTENING (\d+)", line)
    if match is None:
        raise RuntimeError(f"ClickHouse HTTP fixture printed {line!r} instead of 'LISTENING <port>'")
    return int(match.group(1))


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


@contextlib.contextmanager
def clickhouse_http_server(
    data_dir: Path,
    *,
    user: str = "default",
    password: str = "",
    reader: tuple[str, str] | None = None,
    startup_timeout: float = 60.0,
    stop_timeout: float = 10.0,
) -> Iterator[str]:
    """Start the fixture subprocess, yield its DSN "http://user:password@127.0.0.1:<port>/", stop it.

    ``reader`` (user, password) adds a user who may only read; its DSN is the same with those credentials.

    Stopping sends SIGTERM, waits ``stop_timeout`` seconds and kills the process after that. The
    process is never left running: it also exits on its own when its stdin (a pipe held by this
    process) reaches EOF. Raises RuntimeError with the server's stderr if it dies before it is
    ready, does not become ready within ``startup_timeout``, or does not exit cleanly.
    """
    command = [
        sys.executable,
        "-m",
        "tests.support.ch_http",
        "--data-dir",
        str(data_dir),
        "--port",
        "0",
        "--user",
        user,
        "--password",
        password,
        "--exit-on-stdin-eof",
        *(["--reader-user", reader[0], "--reader-password", reader[1]] if reader else []),
    ]
    with (
        tempfile.TemporaryFile(prefix="ch_http_stderr_") as stderr,
        subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        ) as proc,
    ):
        try:
            port = _wait_for_listening(proc, startup_timeout)
        except BaseException as exc:
            _stop(proc, stop_timeout)
            if isinstance(exc, RuntimeError):
                raise RuntimeError(
                    f"{exc}; command: {command[:6]}; stderr:\n{_stderr_tail(stderr)}"
                ) from None
            raise
        body_failed = False
        try:
            yield f"http://{quote(user, safe='')}:{quote(password, safe='')}@{LISTEN_HOST}:{port}/"
        except BaseException:
            body_failed = True
            raise
        finally:
            _stop(proc, stop_timeout)
            if not body_failed and proc.returncode != 0:
                raise RuntimeError(
                    f"ClickHouse HTTP fixture exited with code {proc.returncode}; "
                    f"stderr:\n{_stderr_tail(stderr)}"
                )


if __name__ == "__main__":
    sys.exit(main())
