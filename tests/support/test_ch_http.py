"""Tests for the ClickHouse-over-HTTP test fixture (tests/support/ch_http.py).

Most tests drive the fixture with clickhouse-connect's real HTTP client, the way the product talks to
a remote ClickHouse server; a few use http.client to check protocol details directly.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import http.client
import math
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from clickhouse_connect.driver.external import ExternalData

from tests.support.ch_http import (
    ClickHouseError,
    clickhouse_http_server,
    decompress_body,
    explicit_output_format,
    produces_result,
    split_insert,
    statement_count,
)

USER = "beacon"
PASSWORD = "p@ss:w/rd %"  # characters that must survive DSN quoting

COLUMNS = ["id", "ts", "user_agent", "props", "country", "tags", "value"]
COLUMN_TYPES = [
    "UInt64",
    "DateTime64(3, 'UTC')",
    "Nullable(String)",
    "Map(String, String)",
    "LowCardinality(String)",
    "Array(LowCardinality(String))",
    "Float64",
]
EVENTS_DDL = """
CREATE TABLE {table} (
    id UInt64,
    ts DateTime64(3, 'UTC'),
    user_agent Nullable(String),
    props Map(String, String),
    country LowCardinality(String),
    tags Array(LowCardinality(String)),
    value Float64
) ENGINE = MergeTree ORDER BY id
"""

ClientFactory = Callable[..., Client]


def sample_rows(count: int) -> list[list[Any]]:
    """Rows covering NULLs, empty/unicode strings, empty maps/arrays, ms timestamps and UInt64 max."""
    start = dt.datetime(2024, 5, 17, 8, 30, 0, 123000)
    rows: list[list[Any]] = []
    for i in range(count):
        row_id = 2**64 - 1 if i == count - 1 else i
        user_agent = None if i % 4 == 0 else ("" if i % 4 == 1 else f"Mozilla/5.0 (β {i}) 'quoted' \\ tab\t")
        props = {} if i % 5 == 0 else {"path": f"/p/{i}", "ref": "ünïcode", "n": str(i * i)}
        tags = [] if i % 3 == 0 else [f"tag{i % 4}", "common"]
        value = [0.0, -1.5, 1e308, math.pi][i % 4] + i
        ts = start + dt.timedelta(seconds=i * 37, milliseconds=i % 1000)
        rows.append([row_id, ts, user_agent, props, ["DE", "FR", "US"][i % 3], tags, value])
    return rows


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("ch_http") / "chdb"
    with clickhouse_http_server(data_dir, user=USER, password=PASSWORD) as server_dsn:
        yield server_dsn


@pytest.fixture
def make_client(dsn: str) -> Iterator[ClientFactory]:
    """Factory for clickhouse-connect clients on the fixture; each has its own pool, closed afterwards."""
    clients: list[Client] = []

    def factory(*, client_dsn: str | None = None, **kwargs: Any) -> Client:
        client = clickhouse_connect.get_client(dsn=client_dsn or dsn, dedicated_pool=True, **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def database(make_client: ClientFactory) -> str:
    name = f"db_{uuid.uuid4().hex[:12]}"
    make_client().command(f"CREATE DATABASE {name}")
    return name


def raw_request(
    dsn: str,
    method: str,
    params: Mapping[str, str] | None = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    path: str = "/",
    auth: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    """One request with http.client; returns status, headers (lower-cased names) and body."""
    url = urlsplit(dsn)
    assert url.hostname is not None and url.port is not None
    all_headers = dict(headers or {})
    if auth:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        all_headers.setdefault("Authorization", f"Basic {token}")
    target = f"{path}?{urlencode(params)}" if params else path
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request(method, target, body=body, headers=all_headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


# --- clickhouse-connect end to end ---------------------------------------------------------------


def test_connect_ping_and_version(make_client: ClientFactory) -> None:
    client = make_client()
    assert client.ping()
    version = client.command("SELECT version()")
    assert isinstance(version, str)
    assert version.count(".") >= 2
    assert client.server_version == version
    assert client.command("SELECT 1 + 1") == 2


@pytest.mark.parametrize("compress", [True, False, "zstd", "gzip", "br"])
def test_insert_and_query_round_trip(make_client: ClientFactory, database: str, compress: bool | str) -> None:
    client = make_client(compress=compress)
    table = f"{database}.events"
    client.command(EVENTS_DDL.format(table=table))
    rows = sample_rows(300)

    summary = client.insert(table, rows, column_names=COLUMNS, column_type_names=COLUMN_TYPES)

    assert summary.written_rows == 300
    result = client.query(f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY id")
    assert result.column_names == tuple(COLUMNS)
    assert result.result_rows == [tuple(row) for row in rows]
    types = client.query(f"SELECT toTypeName(ts), toTypeName(tags) FROM {table} LIMIT 1").result_rows
    assert types == [("DateTime64(3, 'UTC')", "Array(LowCardinality(String))")]


@pytest.mark.parametrize("compress", [True, "zstd", "gzip", "br"])
def test_multi_block_insert(make_client: ClientFactory, database: str, compress: bool | str) -> None:
    """~16 KB rows make clickhouse-connect split 300 rows into 128-row blocks, compressed one by one."""
    client = make_client(compress=compress)
    table = f"{database}.wide"
    client.command(f"CREATE TABLE {table} (id UInt32, s String) ENGINE = MergeTree ORDER BY id")
    rows = [[i, f"{i:05d}" * 3300] for i in range(300)]

    client.insert(table, rows, column_names=["id", "s"], column_type_names=["UInt32", "String"])

    assert client.query(f"SELECT id, s FROM {table} ORDER BY id").result_rows == [tuple(row) for row in rows]


def test_concurrent_clients(make_client: ClientFactory, database: str) -> None:
    table = f"{database}.concurrent"
    make_client().command(f"CREATE TABLE {table} (id UInt64, worker UInt8) ENGINE = MergeTree ORDER BY id")
    clients = [make_client() for _ in range(4)]

    def work(worker: int) -> None:
        for batch in range(5):
            rows = [[worker * 1000 + batch * 100 + i, worker] for i in range(100)]
            clients[worker].insert(
                table, rows, column_names=["id", "worker"], column_type_names=["UInt64", "UInt8"]
            )
            clients[worker].query(f"SELECT count() FROM {table}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(work, worker) for worker in range(4)]:
            future.result(timeout=60)

    result = clients[0].query(
        f"SELECT worker, count(), uniqExact(id) FROM {table} GROUP BY worker ORDER BY worker"
    )
    assert result.result_rows == [(worker, 500, 500) for worker in range(4)]


def test_database_setting_and_described_insert(make_client: ClientFactory, database: str) -> None:
    client = make_client(database=database)
    client.command(EVENTS_DDL.format(table="events"))  # unqualified: resolved through `database`
    rows = sample_rows(20)

    client.insert("events", rows, column_names=COLUMNS)  # types come from DESCRIBE TABLE

    assert client.query("SELECT * FROM events ORDER BY id").result_rows == [tuple(row) for row in rows]
    assert client.command("SELECT currentDatabase()") == database


def test_insert_deduplication_token(make_client: ClientFactory, database: str) -> None:
    client = make_client()
    table = f"{database}.dedup"
    client.command(
        f"CREATE TABLE {table} (id UInt64, v String) ENGINE = MergeTree ORDER BY id "
        "SETTINGS non_replicated_deduplication_window = 100"
    )

    def insert(rows: list[list[Any]], token: str) -> None:
        client.insert(
            table,
            rows,
            column_names=["id", "v"],
            column_type_names=["UInt64", "String"],
            settings={"insert_deduplication_token": token},
        )

    def count() -> Any:
        return client.command(f"SELECT count() FROM {table}")

    first = [[i, f"a{i}"] for i in range(10)]
    insert(first, "batch-1")
    assert count() == 10
    insert(first, "batch-1")  # replay of the same batch: deduplicated
    assert count() == 10
    insert([[i, f"b{i}"] for i in range(100, 110)], "batch-1")  # same token, other rows: still dropped
    assert count() == 10
    insert(first, "batch-2")  # same rows, new token: inserted, so dedup really keys on the token
    assert count() == 20


def test_readonly_blocks_writes_but_allows_reads(make_client: ClientFactory, database: str) -> None:
    admin = make_client()
    table = f"{database}.ro"
    admin.command(f"CREATE TABLE {table} (id UInt64) ENGINE = MergeTree ORDER BY id")
    admin.insert(table, [[1], [2]], column_names=["id"], column_type_names=["UInt64"])

    reader = make_client(settings={"readonly": 1})
    assert reader.query(f"SELECT count() FROM {table}").result_rows == [(2,)]
    with pytest.raises(DatabaseError) as insert_error:
        reader.insert(table, [[3]], column_names=["id"], column_type_names=["UInt64"])
    assert insert_error.value.code == 164
    assert "READONLY" in str(insert_error.value)
    with pytest.raises(DatabaseError) as ddl_error:
        reader.command(f"CREATE TABLE {database}.other (id UInt64) ENGINE = Memory")
    assert ddl_error.value.code == 164

    # The setting is per request: the same server still accepts writes without it.
    with pytest.raises(DatabaseError) as per_query_error:
        admin.command(f"INSERT INTO {table} VALUES (4)", settings={"readonly": 1})
    assert per_query_error.value.code == 164
    admin.command(f"INSERT INTO {table} VALUES (5)")
    assert admin.command(f"SELECT groupArray(id) FROM (SELECT id FROM {table} ORDER BY id)") == "[1,2,5]"


def test_a_user_that_may_only_read(tmp_path: Path) -> None:
    """The optional second user (--reader-user): reads, sets settings, writes nothing."""
    with clickhouse_http_server(
        tmp_path / "chdb", user=USER, password=PASSWORD, reader=("ro", "ro-pw")
    ) as dsn:
        url = urlsplit(dsn)
        admin = clickhouse_connect.get_client(dsn=dsn)
        admin.command("CREATE TABLE t (id UInt64) ENGINE = MergeTree ORDER BY id")
        admin.command("INSERT INTO t VALUES (1), (2)")
        reader = clickhouse_connect.get_client(
            dsn=f"http://ro:ro-pw@{url.hostname}:{url.port}/", settings={"max_result_rows": 1}
        )
        assert reader.query("SELECT count() FROM t").result_rows == [(2,)]
        with pytest.raises(DatabaseError) as too_many:  # its settings apply
            reader.query("SELECT id FROM t")
        assert too_many.value.code == 396
        for statement in (
            "INSERT INTO t VALUES (3)",
            "DROP TABLE t",
            "CREATE TABLE u (a UInt8) ENGINE = Memory",
        ):
            with pytest.raises(DatabaseError) as denied:
                reader.command(statement)
            assert denied.value.code == 497
        with pytest.raises(DatabaseError) as inserted:
            reader.insert("t", [[4]], column_names=["id"], column_type_names=["UInt64"])
        assert inserted.value.code == 497
        assert admin.query("SELECT groupArray(id) FROM t").result_rows == [([1, 2],)]
        with pytest.raises(DatabaseError) as wrong:
            clickhouse_connect.get_client(dsn=f"http://ro:wrong@{url.hostname}:{url.port}/")
        assert wrong.value.code == 516
        reader.close()
        admin.close()


@pytest.mark.parametrize(
    ("sql", "code", "name"),
    [
        ("SELECT * FROM no_such_table_anywhere", 60, "UNKNOWN_TABLE"),
        ("SELEC 1", 62, "SYNTAX_ERROR"),
        ("SELECT 1; SELECT 2", 62, "SYNTAX_ERROR"),
        ("SELECT throwIf(1, 'boom')", 395, "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO"),
    ],
)
def test_sql_errors_surface_as_database_error(
    make_client: ClientFactory, sql: str, code: int, name: str
) -> None:
    client = make_client()
    with pytest.raises(DatabaseError) as error:
        client.query(sql)
    assert error.value.code == code
    assert error.value.name == name
    assert f"Code: {code}. DB::Exception:" in str(error.value)


def test_unknown_setting_is_rejected(make_client: ClientFactory) -> None:
    client = make_client()
    with pytest.raises(DatabaseError) as error:
        client.query("SELECT 1", settings={"no_such_setting_xyz": 1})
    assert error.value.code == 115


def test_wrong_password_is_rejected(make_client: ClientFactory, dsn: str) -> None:
    url = urlsplit(dsn)
    bad_dsn = f"http://{USER}:wrong@{url.hostname}:{url.port}/"
    with pytest.raises(DatabaseError) as error:
        make_client(client_dsn=bad_dsn)
    assert error.value.code == 516

    status, headers, body = raw_request(dsn, "POST", body=b"SELECT 1", auth=False)  # default user
    assert status == 401
    assert headers["x-clickhouse-exception-code"] == "516"
    assert body.startswith(b"Code: 516. DB::Exception: default: Authentication failed")

    key_headers = {"X-ClickHouse-User": USER, "X-ClickHouse-Key": PASSWORD}
    status, _, body = raw_request(dsn, "POST", body=b"SELECT 42", headers=key_headers, auth=False)
    assert (status, body) == (200, b"42\n")


def test_query_parameters_in_url_and_form(make_client: ClientFactory) -> None:
    for form in (False, True):
        client = make_client(form_encode_query_params=form)
        result = client.query(
            "SELECT {s:String} AS s, {n:UInt32} + 1 AS n", parameters={"s": "a b&c", "n": 41}
        )
        assert result.result_rows == [("a b&c", 42)]


def test_external_data_is_reported_as_not_implemented(make_client: ClientFactory) -> None:
    external = ExternalData(file_name="ext", data=b"1\n2\n", fmt="TSV", structure=["x UInt8"])
    with pytest.raises(DatabaseError) as error:
        make_client().query("SELECT sum(x) FROM ext", external_data=external)
    assert error.value.code == 48


def test_raw_insert_with_query_in_body_and_in_url(make_client: ClientFactory, database: str) -> None:
    client = make_client()
    table = f"{database}.raw"
    client.command(f"CREATE TABLE {table} (id UInt64, s String) ENGINE = MergeTree ORDER BY id")

    client.raw_insert(table, ["id", "s"], insert_block="1,one\n2,two\n", fmt="CSV")  # INSERT in the body
    client.raw_insert(table, ["id", "s"], insert_block=b'{"id":3,"s":"three"}\n', fmt="JSONEachRow")
    # A compressed block keeps the INSERT in the `query` URL parameter.
    client.raw_insert(
        table, ["id", "s"], insert_block=gzip.compress(b"4,four\n"), fmt="CSV", compression="gzip"
    )
    client.command(f"INSERT INTO {table} FORMAT TSV", data="5\tfive\n")

    assert client.query(f"SELECT * FROM {table} ORDER BY id").result_rows == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
        (4, "four"),
        (5, "five"),
    ]


# --- HTTP protocol details ----------------------------------------------------------------------


def test_http_endpoints_and_headers(dsn: str) -> None:
    assert raw_request(dsn, "GET", path="/ping", auth=False)[::2] == (200, b"Ok.\n")
    assert raw_request(dsn, "GET", auth=False)[::2] == (200, b"Ok.\n")
    assert raw_request(dsn, "GET", path="/nope")[0] == 404

    status, headers, body = raw_request(
        dsn, "POST", {"query": "SELECT 1 AS x", "default_format": "JSONEachRow", "query_id": "q-1"}
    )
    assert (status, body) == (200, b'{"x":1}\n')
    assert headers["x-clickhouse-format"] == "JSONEachRow"
    assert headers["x-clickhouse-query-id"] == "q-1"
    assert headers["x-clickhouse-timezone"]
    assert headers["x-clickhouse-server-display-name"]
    assert '"read_rows":"1"' in headers["x-clickhouse-summary"]

    status, headers, _ = raw_request(dsn, "POST", body=b"CREATE DATABASE IF NOT EXISTS scratch")
    assert status == 200
    assert "x-clickhouse-format" not in headers  # no result set

    # GET implies readonly=2, like ClickHouse
    status, headers, body = raw_request(dsn, "GET", {"query": "CREATE DATABASE IF NOT EXISTS via_get"})
    assert status == 403
    assert headers["x-clickhouse-exception-code"] == "164"


def test_response_compression_follows_accept_encoding(dsn: str) -> None:
    params = {"query": "SELECT number FROM numbers(1000)", "enable_http_compression": "1"}
    status, headers, body = raw_request(dsn, "POST", params, headers={"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert decompress_body(body, "gzip") == "".join(f"{n}\n" for n in range(1000)).encode()

    # Without the parameter the engine default applies (1 in chDB), as clickhouse-connect expects.
    del params["enable_http_compression"]
    _, headers, body = raw_request(
        dsn, "POST", params, headers={"Accept-Encoding": "lz4,zstd,br,gzip,deflate"}
    )
    assert headers["content-encoding"] in ("zstd", "br", "lz4", "gzip", "deflate")
    assert decompress_body(body, headers["content-encoding"]).startswith(b"0\n1\n")

    params["enable_http_compression"] = "0"
    _, headers, body = raw_request(dsn, "POST", params, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in headers
    assert body.startswith(b"0\n1\n")


# --- fixture lifecycle ----------------------------------------------------------------------------


def test_server_process_is_stopped_on_exit(tmp_path: Path) -> None:
    with clickhouse_http_server(tmp_path / "data") as server_dsn:
        assert server_dsn.startswith("http://default:@127.0.0.1:")
        port = urlsplit(server_dsn).port
        assert port is not None
        assert raw_request(server_dsn, "POST", body=b"SELECT 7", auth=False)[::2] == (200, b"7\n")
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_startup_failure_is_reported(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    with (
        pytest.raises(RuntimeError, match=r"before LISTENING(?s:.*)cannot start chDB"),
        clickhouse_http_server(not_a_directory),
    ):
        pass


# --- SQL splitting helpers -----------------------------------------------------------------------


def test_split_insert_keeps_binary_data_intact() -> None:
    data = b"\t\n\x00 binary"  # starts like whitespace: must not be skipped
    split = split_insert(b"INSERT INTO db.t (`a`, `b`) FORMAT Native\n" + data)
    assert split is not None
    assert (split.statement, split.input_format, split.data) == (
        "INSERT INTO db.t (`a`, `b`)",
        "Native",
        data,
    )

    split = split_insert(b"insert into format (x) -- FORMAT X\n format CSV  1,2")
    assert split is not None
    assert (split.statement, split.input_format, split.data) == (
        "insert into format (x)",
        "CSV",
        b"1,2",
    )
    assert split_insert(b"INSERT INTO t VALUES (1, 'FORMAT Native')") is None
    assert split_insert(b"INSERT INTO t SELECT 1 FORMAT Native") is None
    assert split_insert(b"SELECT 1 FORMAT Native") is None
    with pytest.raises(ClickHouseError):
        split_insert(b"INSERT INTO t FORMAT 'x'")


def test_sql_helpers() -> None:
    assert explicit_output_format(b"SELECT 1\n FORMAT Native") == "Native"
    assert explicit_output_format(b"SELECT 1 FORMAT JSON SETTINGS max_threads = 1;") == "JSON"
    assert explicit_output_format(b"SELECT format FROM t") is None
    assert explicit_output_format(b"SELECT 'FORMAT JSON'") is None
    assert statement_count(b"SELECT 1;") == 1
    assert statement_count(b"SELECT ';'; SELECT 2") == 2
    assert statement_count(b" -- nothing\n") == 0
    assert produces_result(b"(SELECT 1)")
    assert produces_result(b"SHOW TABLES")
    assert not produces_result(b"CREATE TABLE t (a UInt8) ENGINE = Memory")


def test_a_session_runs_one_query_at_a_time(tmp_path: Path) -> None:
    """As on a server: a second request in a session whose query is still running is refused
    (SESSION_IS_LOCKED), while requests without a session, or in other sessions, run side by side."""
    with clickhouse_http_server(tmp_path / "sessions") as dsn:
        clients = [
            clickhouse_connect.get_client(dsn=dsn, session_id="shared-session", autogenerate_session_id=False)
            for _ in range(2)
        ]
        others = [clickhouse_connect.get_client(dsn=dsn, autogenerate_session_id=False) for _ in range(2)]

        def run(client: Client) -> str:
            try:
                client.command("SELECT sleep(1)")
            except DatabaseError as exc:
                return str(exc)
            return "ok"

        with ThreadPoolExecutor(2) as pool:
            same = list(pool.map(run, clients))
            apart = list(pool.map(run, others))
        assert same.count("ok") == 1 and any("SESSION_IS_LOCKED" in answer for answer in same)
        assert apart == ["ok", "ok"]


def test_the_restricted_user_may_read_insert_and_delete_rows_only(tmp_path: Path) -> None:
    from tests.support.serve import ChFixture, Processes

    processes = Processes(tmp_path)
    fixture = ChFixture(processes, tmp_path / "grants", password="admin-pw", restricted=("replica", "r-pw"))
    try:
        fixture.start()
        admin = clickhouse_connect.get_client(dsn=fixture.dsn, autogenerate_session_id=False)
        admin.command("CREATE TABLE t (a UInt8) ENGINE = MergeTree ORDER BY a")
        replica = clickhouse_connect.get_client(dsn=fixture.restricted_dsn, autogenerate_session_id=False)
        replica.command("INSERT INTO t VALUES (1), (2)")
        replica.command("ALTER TABLE t DELETE WHERE a = 1", settings={"mutations_sync": 2})
        assert replica.command("SELECT sum(a) FROM t") == 2
        for ddl in (
            "CREATE TABLE u (a UInt8) ENGINE = MergeTree ORDER BY a",
            "CREATE DATABASE IF NOT EXISTS default",
            "ALTER TABLE t MODIFY TTL toDate('2000-01-01') + INTERVAL 1 DAY",
            "DROP TABLE t",
        ):
            with pytest.raises(DatabaseError, match="ACCESS_DENIED"):
                replica.command(ddl)
        with pytest.raises(DatabaseError, match="516"):
            clickhouse_connect.get_client(dsn=fixture.restricted_dsn.replace("r-pw", "wrong"))
    finally:
        processes.cleanup()
