"""Admin SQL on the real engine: only reads of this proxy's tables run, under ClickHouse's own limits.

Everything goes through ``ClickHouseSink.query_json``, the one function both ``POST /admin/query`` and
``beaconproxy query`` (with or without a running proxy) call. Each refusal is also shown to have run
nothing where that can be seen: no file written, no secret in any answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from config.settings import ClickhouseSettings
from sinks.adminsql import READABLE, AdminSQLError, FunctionCatalog, check, parse, query_error
from sinks.clickhouse import ClickHouseSink
from sinks.codec import EventBlock
from tests.sinks.test_clickhouse import full_event


@pytest.fixture
def make_sink(chdb_dsn: str, database: str) -> Iterator[Callable[..., ClickHouseSink]]:
    sinks: list[ClickHouseSink] = []

    def make(**admin_query: Any) -> ClickHouseSink:
        sink = ClickHouseSink(chdb_dsn, ClickhouseSettings(database=database, admin_query=admin_query))
        sink.start()
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


@pytest.fixture(scope="module")
def sink(chdb_dsn: str) -> Iterator[ClickHouseSink]:
    """Three stored events (sites demo, demo, shop), recent enough for every TTL; shared by the tests that
    only read (and check that nothing changed)."""
    s = ClickHouseSink(chdb_dsn, ClickhouseSettings(database=f"adminsql_{uuid.uuid4().hex[:8]}"))
    s.start()
    events = [full_event(i) for i in range(3)]
    for i, event in enumerate(events):
        event.ts = datetime.now(UTC) - timedelta(hours=i)
        event.site = "shop" if i == 2 else "demo"
        event.url = f"https://example.com/p{i}"
    s.write(EventBlock.of(events), "seed")
    yield s
    s.close()


def rows(sink: ClickHouseSink, sql: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in sink.query_json(sql).splitlines()]


def refused(sink: ClickHouseSink, sql: str) -> str:
    with pytest.raises(AdminSQLError) as err:
        sink.query_json(sql)
    return str(err.value)


# --- what an analyst writes still works -----------------------------------------------------------------

ANALYST_QUERIES = [
    ("SELECT count() AS n FROM events", [{"n": 3}]),
    ("select COUNT(*) AS n from {db}.events where site = 'demo'", [{"n": 2}]),
    (
        "SELECT site, count() AS n FROM events GROUP BY site ORDER BY site",
        [{"site": "demo", "n": 2}, {"site": "shop", "n": 1}],
    ),
    (
        "SELECT countIf(site = 'demo') AS d, uniqExact(url) AS u, sumIf(engagement_ms, site = 'shop') AS e "
        "FROM events",
        [{"d": 2, "u": 3, "e": 1500}],
    ),
    (
        "SELECT props['plan'] AS plan, arrayJoin(consent) AS c FROM events WHERE url LIKE '%p0' ORDER BY c",
        [{"plan": "pro", "c": "analytics"}, {"plan": "pro", "c": "marketing"}],
    ),
    (
        "WITH top AS (SELECT url, count() AS c FROM events GROUP BY url) SELECT count() AS n FROM top",
        [{"n": 3}],
    ),
    (
        "SELECT e.site AS site FROM events AS e "
        "INNER JOIN (SELECT site FROM events WHERE site = 'shop') AS s ON e.site = s.site",
        [{"site": "shop"}],
    ),
    (
        "SELECT count() AS n FROM events WHERE site IN (SELECT site FROM events_daily) OR site NOT IN ('x')",
        [{"n": 3}],
    ),
    (
        "SELECT url FROM (SELECT url FROM events WHERE site = 'shop' UNION ALL SELECT 'x') ORDER BY url",
        [{"url": "https://example.com/p2"}, {"url": "x"}],
    ),
    ("SELECT pseudonym FROM audit_log UNION ALL SELECT subject FROM suppressions", []),
    (
        "SELECT row_number() OVER (PARTITION BY site ORDER BY ts) AS rn FROM events WHERE site = 'shop'",
        [{"rn": 1}],
    ),
    (
        "SELECT CASE WHEN site = 'shop' THEN 1 ELSE 0 END AS s, toStartOfDay(ts) <= now() AS past, "
        "formatReadableSize(1024) AS f FROM events WHERE site = 'shop'",
        [{"s": 1, "past": 1, "f": "1.00 KiB"}],
    ),
    (
        "SELECT arraySort(arrayMap(x -> upper(x), mapKeys(props))) AS k, domain(url) AS d, "
        "cityHash64(url) > 0 AS h FROM events WHERE url LIKE '%p1'",
        [{"k": ["N", "PLAN"], "d": "example.com", "h": 1}],
    ),
    (
        "SELECT * EXCEPT (client_id, user_id, session_id, click_ids, event_id, ts) FROM events "
        "WHERE url = 'https://example.com/p1'",
        None,
    ),
    ("SELECT 1 AS one -- a comment\n", [{"one": 1}]),
    ("/* leading */ SELECT 2 AS two;", [{"two": 2}]),
]


@pytest.mark.parametrize(("sql", "expected"), ANALYST_QUERIES)
def test_analyst_queries_run(sink: ClickHouseSink, sql: str, expected: list[dict[str, Any]] | None) -> None:
    result = rows(sink, sql.format(db=sink.database))
    if expected is None:
        assert (
            len(result) == 1 and result[0]["url"] == "https://example.com/p1" and "client_id" not in result[0]
        )
    else:
        assert result == expected


# --- nothing reaches the host ----------------------------------------------------------------------------


def test_every_table_function_the_engine_lists_is_refused(sink: ClickHouseSink, ch: Client) -> None:
    names = [str(n) for (n,) in ch.query("SELECT name FROM system.table_functions").result_rows]
    assert {"file", "url", "remote", "remoteSecure", "mysql", "s3", "hdfs", "executable", "numbers"} <= set(
        names
    )
    for name in names:
        selects, inserts = [], []
        for args in ("'x'", "SELECT 1", "SELECT 1 ELSE null('x UInt8')"):
            selects.append(refused(sink, f"SELECT * FROM `{name}`({args})"))
            inserts.append(refused(sink, f"INSERT INTO FUNCTION `{name}`({args}) SELECT 1"))
        # at least one form is valid syntax for it, and is refused for what it is
        assert any(f"table function {name}() is not allowed" in m for m in selects), (name, selects)
        assert any("INSERT is not allowed" in m for m in inserts), (name, inserts)


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("SELECT 1 INTO OUTFILE '{tmp}/out.csv'", "INTO OUTFILE"),
        ("SELECT 1 INTO OUTFILE '{tmp}/out.csv' APPEND", "INTO OUTFILE"),
        ("SELECT 1 INTO OUTFILE '{tmp}/out.csv' TRUNCATE FORMAT CSV", "INTO OUTFILE"),
        ("SELECT 1 INTO OUTFILE '{tmp}/out.csv.gz' COMPRESSION 'gzip'", "INTO OUTFILE"),
        ("INSERT INTO FUNCTION file('{tmp}/out.csv', 'CSV') SELECT 1", "INSERT is not allowed"),
        ("SELECT * FROM events INTO OUTFILE '{tmp}/out.csv'", "INTO OUTFILE"),
    ],
)
def test_nothing_is_written_to_the_host(sink: ClickHouseSink, tmp_path: Path, sql: str, says: str) -> None:
    assert says in refused(sink, sql.format(tmp=tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("SYSTEM FLUSH LOGS", "SYSTEM is not allowed"),
        ("SYSTEM SHUTDOWN", "SYSTEM is not allowed"),
        ("SYSTEM DROP DNS CACHE", "SYSTEM is not allowed"),
        ("KILL QUERY WHERE 1", "KILL is not allowed"),
        ("KILL MUTATION WHERE 1", "KILL is not allowed"),
        ("SET readonly = 0", "SET is not allowed"),
        ("SELECT count() FROM events SETTINGS max_execution_time = 0", "SETTINGS clause"),
        ("SELECT 1 FORMAT JSON SETTINGS max_result_rows = 0", "FORMAT clause"),
        ("SELECT 1 SETTINGS readonly = 0 FORMAT JSON", "FORMAT clause"),
        ("SELECT * FROM (SELECT 1 SETTINGS max_memory_usage = 0)", "SETTINGS clause"),
        ("SELECT 1 UNION ALL SELECT 2 SETTINGS max_threads = 64", "SETTINGS clause"),
        ("SELECT 1 FORMAT TSV", "FORMAT clause"),
        ("DROP TABLE events", "DROP is not allowed"),
        ("TRUNCATE TABLE events", "not allowed"),
        ("CREATE TABLE x (a UInt8) ENGINE = Memory", "CREATE is not allowed"),
        ("ALTER TABLE events DELETE WHERE 1", "ALTER is not allowed"),
        ("DELETE FROM events WHERE 1", "not allowed"),
        ("RENAME TABLE events TO gone", "not allowed"),
        ("OPTIMIZE TABLE events FINAL", "not allowed"),
        ("INSERT INTO events (site) VALUES ('x')", "INSERT is not allowed"),
        ("INSERT INTO events (site) SELECT 'x'", "INSERT is not allowed"),
        ("GRANT ALL ON *.* TO default", "not allowed"),
        ("CREATE USER intruder", "not allowed"),
        ("USE system", "not allowed"),
        ("SHOW TABLES FROM system", "not allowed"),
        ("DESCRIBE TABLE events", "not allowed"),
        ("EXPLAIN SELECT * FROM file('/etc/passwd')", "EXPLAIN is not allowed"),
        ("EXISTS TABLE system.users", "not allowed"),
        ("CHECK TABLE events", "not allowed"),
        ("SELECT {p:String}", "query parameters"),
        ("SELECT * APPLY(toString) FROM events", "APPLY"),
    ],
)
def test_statements_and_clauses_other_than_plain_reads_are_refused(
    sink: ClickHouseSink, sql: str, says: str
) -> None:
    assert says in refused(sink, sql)
    assert rows(sink, "SELECT count() AS n FROM events") == [{"n": 3}]  # nothing was dropped or changed


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1; SELECT 2",
        "SELECT 1;SELECT * FROM file('/etc/passwd')",
        "SELECT 1; DROP TABLE events",
        "SELECT 1 -- ;\n; DROP TABLE events",
        "SELECT ';' AS s; DROP TABLE events",
        "SELECT 1 /* ; */; SYSTEM FLUSH LOGS",
    ],
)
def test_one_statement_at_a_time(sink: ClickHouseSink, sql: str) -> None:
    assert "Multi-statements are not allowed" in refused(sink, sql)
    assert rows(sink, "SELECT count() AS n FROM events") == [{"n": 3}]


@pytest.mark.parametrize(
    "sql",
    [
        "sElEcT * fRoM FiLe('/etc/passwd', 'LineAsString')",
        "SELECT/**/*/**/FROM/**/file('/etc/passwd','LineAsString')",
        "SELECT *\n--\nFROM\n\tfile(\n'/etc/passwd', 'LineAsString')",
        "SELECT * FROM `file`('/etc/passwd', 'LineAsString')",
        "SELECT * FROM \"file\"('/etc/passwd', 'LineAsString')",
        "SELECT * FROM (SELECT * FROM file('/etc/passwd', 'LineAsString'))",
        "WITH f AS (SELECT * FROM file('/etc/passwd', 'LineAsString')) SELECT * FROM f",
        "SELECT url FROM events UNION ALL SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM events AS e LEFT JOIN file('/etc/passwd', 'LineAsString') AS f ON 1",
        "SELECT count() FROM events WHERE url IN (SELECT * FROM file('/etc/passwd', 'LineAsString'))",
        "SELECT (SELECT any(line) FROM file('/etc/passwd', 'LineAsString')) AS x",
        "SELECT count() FROM events WHERE EXISTS (SELECT 1 FROM url('http://127.0.0.1:1/', 'CSV'))",
        "SELECT * FROM remote('127.0.0.1:1', system.one)",
        "SELECT * FROM mysql('127.0.0.1:1', 'db', 't', 'u', 'p')",
        "SELECT * FROM executable('cat /etc/passwd', 'LineAsString', 'line String')",
        "SELECT * FROM s3('file:///etc/passwd', 'LineAsString')",
        "SELECT * FROM numbers(10)",
    ],
)
def test_casing_comments_spacing_and_nesting_do_not_hide_a_table_function(
    sink: ClickHouseSink, sql: str
) -> None:
    message = refused(sink, sql)
    assert "table function" in message and "is not allowed" in message
    assert "root:" not in message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM system.one",
        "SELECT name FROM system.tables",
        "SELECT * FROM system.users",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM INFORMATION_SCHEMA.TABLES",
        "SELECT * FROM default.events",
        "SELECT * FROM other.events",
        "SELECT * FROM events_daily_mv",
        "SELECT * FROM `{db}.events`",
        "SELECT * FROM events AS e JOIN system.settings AS s ON 1",
        "SELECT * FROM events, system.processes",
        "SELECT (SELECT count() FROM system.processes) AS n",
        "SELECT count() FROM events WHERE site IN (SELECT name FROM system.databases)",
        "SELECT count() FROM events WHERE site IN system.databases",
        "SELECT count() FROM events WHERE site GLOBAL NOT IN system.databases",
        "WITH s AS (SELECT * FROM system.settings) SELECT * FROM s",
        "WITH events AS (SELECT 1) SELECT * FROM system.tables",
        "SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) AS a, x",
        "SELECT url FROM events UNION ALL SELECT name FROM system.functions",
        "SELECT url FROM events INTERSECT SELECT name FROM system.tables",
        "SELECT * FROM events WHERE EXISTS (SELECT 1 FROM system.zookeeper WHERE path = '/')",
    ],
)
def test_only_this_proxys_tables_are_read(sink: ClickHouseSink, sql: str) -> None:
    message = refused(sink, sql.format(db=sink.database))
    assert (
        f"admin SQL reads only this proxy's tables ({', '.join(READABLE)} in database {sink.database})"
        in message
    )


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        # files
        ("SELECT file('/etc/passwd')", "reads files"),
        ("SELECT FILE('/etc/passwd')", "not a ClickHouse built-in"),  # file() is case-sensitive: unknown
        ("SELECT length(file('/proc/self/environ')) FROM events", "reads files"),
        ("SELECT * FROM events WHERE url = file('/etc/hostname')", "reads files"),
        ("WITH file('/etc/passwd') AS f SELECT f", "reads files"),
        ("SELECT arrayMap(p -> file(p), ['/etc/passwd'])", "reads files"),
        ("SELECT filesystemAvailable()", "describes the server"),
        # the server, its settings, users and environment
        ("SELECT hostName()", "describes the server"),
        ("SELECT hostname()", "describes the server"),  # an alias is its function
        ("SELECT getSetting('user_files_path')", "describes the server"),
        ("SELECT getServerSetting('tcp_port')", "describes the server"),
        ("SELECT currentUser()", "describes the server"),
        ("SELECT getOSKernelVersion()", "describes the server"),
        ("SELECT getMacro('replica')", "describes the server"),
        ("SELECT version()", "category 'Other'"),
        # other tables by name, dictionaries
        ("SELECT joinGet('system.one', 'dummy', 0)", "another table"),
        ("SELECT hasColumnInTable('system', 'users', 'name')", "another table"),
        ("SELECT dictGet('d', 'a', 1)", "dictionaries"),
        ("SELECT dictGetStringOrDefault('d', 'a', 1, '')", "dictionaries"),
        ("SELECT regionToName(1)", "region dictionaries"),
        # the network, the process, models, Keeper, waiting
        ("SELECT aiGenerate('hello')", "over the network"),
        ("SELECT addressToSymbol(1)", "inspects the server process"),
        ("SELECT demangle('x')", "inspects the server process"),
        ("SELECT naiveBayesClassifier('model', 'text')", "loads models"),
        ("SELECT generateSerialID('counter')", "Keeper"),
        ("SELECT sleepEachRow(1) FROM events", "wait"),
        # anything that is not a built-in: user-defined functions
        ("SELECT my_udf(1)", "not a ClickHouse built-in"),
        ("SELECT sumFile(1)", "not a ClickHouse built-in"),
        ("SELECT internal_helper(url) FROM events", "not a ClickHouse built-in"),
    ],
)
def test_functions_that_reach_beyond_their_arguments_are_refused(
    sink: ClickHouseSink, sql: str, why: str
) -> None:
    message = refused(sink, sql)
    assert "is not allowed in admin SQL" in message and why in message


def test_the_proxys_secrets_cannot_be_read_by_any_route(
    make_sink: Callable[..., ClickHouseSink], ch: Client, tmp_path: Path
) -> None:
    sink = make_sink()
    token, secret = tmp_path / "admin_token", tmp_path / "pseudonym_secret"
    token.write_text("TOKEN-d2c1e0f9a8b7")
    secret.write_text("SECRET-5a4b3c2d1e0f")
    # Unconfined, the engine reads them: every route below would leak if it ran.
    assert "SECRET-5a4b3c2d1e0f" in ch.command(f"SELECT file('{secret}')")
    routes = [
        "SELECT file('{p}')",
        "SELECT toString(file('{p}')) AS x FROM events",
        "SELECT * FROM file('{p}', 'LineAsString')",
        "SELECT * FROM file('{p}', 'RawBLOB')",
        "SELECT * FROM fileCluster('default', '{p}', 'LineAsString')",
        "SELECT * FROM url('file://{p}', 'LineAsString')",
        "SELECT * FROM s3('file://{p}', 'LineAsString')",
        "SELECT * FROM executable('cat {p}', 'LineAsString', 'line String')",
        "SELECT * FROM format('LineAsString', file('{p}'))",
        "SELECT * FROM input('line String')",
        "SELECT * FROM events SETTINGS format_schema = '{p}'",
        "SELECT * FROM (SELECT '{p}' AS path) AS x, file('{p}', 'LineAsString') AS y",
        "SELECT * APPLY(file) FROM (SELECT '{p}' AS path)",
        "SELECT * FROM dictionary('secrets')",
        "SELECT * FROM filesystem('{d}')",
        "SELECT * FROM merge('system', '.*')",
        "SELECT 1 INTO OUTFILE '{p}' TRUNCATE",
    ]
    for path in (token, secret):
        for route in routes:
            message = refused(sink, route.format(p=path, d=tmp_path))
            assert "TOKEN-d2c1e0f9a8b7" not in message and "SECRET-5a4b3c2d1e0f" not in message
        assert path.read_text().endswith(("b7", "0f"))  # not truncated by INTO OUTFILE


# --- ClickHouse's own limits ------------------------------------------------------------------------------


def test_the_row_limit_stops_a_result_one_row_too_long(make_sink: Callable[..., ClickHouseSink]) -> None:
    sink = make_sink(max_result_rows=10)
    sink.write(EventBlock.of([full_event(0)]), "one")
    assert len(rows(sink, "SELECT arrayJoin(range(10)) AS n FROM events")) == 10
    message = refused(sink, "SELECT arrayJoin(range(11)) AS n FROM events")
    assert "max_result_rows (10 rows)" in message
    # A query that reads no table reads system.one, which ClickHouse exempts from result limits: the
    # proxy runs every query as SELECT * FROM (...), so the limit holds there too.
    assert "max_result_rows (10 rows)" in refused(sink, "SELECT arrayJoin(range(11)) AS n")
    assert "max_result_rows (10 rows)" in refused(sink, " UNION ALL ".join(["SELECT 1"] * 11))


def test_the_result_size_limit(make_sink: Callable[..., ClickHouseSink]) -> None:
    sink = make_sink(max_result_bytes=1024**2)
    assert len(rows(sink, "SELECT randomPrintableASCII(100000) AS s")) == 1
    message = refused(sink, "SELECT randomPrintableASCII(100000) AS s FROM (SELECT arrayJoin(range(30)))")
    assert "max_result_bytes (1048576 bytes)" in message


def test_the_memory_limit(make_sink: Callable[..., ClickHouseSink]) -> None:
    sink = make_sink(max_memory_bytes=16 * 1024**2)
    assert rows(sink, "SELECT uniqExact(i) AS n FROM (SELECT arrayJoin(range(1000)) AS i)") == [{"n": 1000}]
    message = refused(sink, "SELECT uniqExact(i) AS n FROM (SELECT arrayJoin(range(5000000)) AS i)")
    assert "max_memory_bytes (16777216 bytes)" in message


def test_the_time_limit(make_sink: Callable[..., ClickHouseSink]) -> None:
    sink = make_sink(max_seconds=0.05)
    assert rows(sink, "SELECT 1 AS one") == [{"one": 1}]
    # 10^10 rows: far beyond 0.05 s on any machine, in little memory
    message = refused(
        sink,
        "SELECT count() FROM (SELECT arrayJoin(range(100000)) AS a) AS x, "
        "(SELECT arrayJoin(range(100000)) AS b) AS y",
    )
    assert "max_seconds (0.05 s)" in message


def test_limits_are_the_connections_and_the_writer_keeps_none(
    make_sink: Callable[..., ClickHouseSink], ch: Client
) -> None:
    sink = make_sink(max_result_rows=7, max_seconds=12.5)
    sink.query_json("SELECT 1")
    settings = dict(
        sink.client.query(
            "SELECT name, value FROM system.settings WHERE name IN ('readonly', 'max_result_rows')"
        ).result_rows
    )
    assert settings == {"readonly": "0", "max_result_rows": "0"}  # the writer is unaffected
    sink.write(EventBlock.of([full_event(9)]), "after-admin-query")
    assert rows(sink, "SELECT count() AS n FROM events") == [{"n": 1}]


# --- errors say what is wrong, never a stored value ------------------------------------------------------


def test_errors_name_the_mistake_but_never_a_stored_value(sink: ClickHouseSink) -> None:
    assert "Unknown expression identifier `nope`" in refused(sink, "SELECT nope FROM events")
    assert "Syntax error" in refused(sink, "SELECT FROM WHERE")
    message = refused(sink, "SELECT toUInt64(url) FROM events")
    assert message == "ClickHouse refused the query: CANNOT_PARSE_TEXT (ClickHouse code 6)"
    assert "example.com" not in message


def test_an_engine_that_cannot_show_its_syntax_tree_refuses_everything() -> None:
    class OldServer:
        def query(self, *args: Any, **kwargs: Any) -> Any:
            raise DatabaseError(
                "Code: 46. DB::Exception: Unknown function parseQueryToJSON. (UNKNOWN_FUNCTION) "
                "(version 25.3.1.1)"
            )

    with pytest.raises(AdminSQLError, match=r"parseQueryToJSON, ClickHouse 26\.8"):
        parse(OldServer(), "SELECT 1")  # type: ignore[arg-type]


def test_limit_errors_name_the_setting() -> None:
    limits = ClickhouseSettings().admin_query
    timeout = DatabaseError("Code: 159. DB::Exception: Timeout exceeded: elapsed 31 s. (TIMEOUT_EXCEEDED)")
    assert "clickhouse.admin_query.max_seconds (30 s)" in str(query_error(timeout, limits))


# --- the checker fails closed on trees it does not know ---------------------------------------------------


@pytest.fixture(scope="module")
def catalog(ch: Client) -> FunctionCatalog:
    return FunctionCatalog.load(ch)


def select(*items: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "SelectWithUnionQuery",
        "list_of_selects": {
            "type": "ExpressionList",
            "children": [
                {"type": "SelectQuery", "select": {"type": "ExpressionList", "children": list(items)}}
            ],
        },
    }


@pytest.mark.parametrize(
    ("tree", "says"),
    [
        (select({"type": "SomeFutureNode"}), "SomeFutureNode"),
        (select({"type": "Identifier", "name": "x", "something_new": True}), "Identifier.something_new"),
        (select({"type": "Literal", "value": 1, "extra": {"type": "Identifier"}}), "Literal.extra"),
        (select({"type": "Function", "name": "plus", "arguments": {"not_a": "node"}}), "Function.arguments"),
        (select({"type": "Function", "name": "plus", "kind": "TABLE_ENGINE"}), "TABLE_ENGINE"),
        ({**select(), "out_file": {"type": "Literal"}}, "INTO OUTFILE"),
        ({**select(), "is_into_outfile_with_stdout": True}, "INTO OUTFILE"),
        ({"type": "InsertQuery"}, "INSERT"),
        ([], "SELECT queries only"),
    ],
)
def test_unknown_nodes_and_clauses_are_refused(catalog: FunctionCatalog, tree: Any, says: str) -> None:
    with pytest.raises(AdminSQLError, match=says):
        check(tree, "beacon", catalog)


def test_the_parse_is_clickhouses_and_runs_nothing(ch: Client, tmp_path: Path) -> None:
    target = tmp_path / "never.csv"
    parsed = parse(ch, f"INSERT INTO FUNCTION file('{target}', 'CSV') SELECT 1 -- trailing")
    assert parsed.tree["type"] == "InsertQuery"
    assert parsed.canonical == f"INSERT INTO FUNCTION file('{target}', 'CSV') SELECT 1"
    assert not target.exists()


@pytest.mark.parametrize("table", ["salts", "secret_fingerprints"])
def test_the_shared_secrets_state_is_not_readable(sink: ClickHouseSink, table: str) -> None:
    """The day's (wrapped) salt and the secrets' fingerprints are the proxy's own, but nobody needs to read
    them: admin SQL may not, whatever the spelling."""
    for sql in (
        f"SELECT * FROM {table}",
        f"SELECT * FROM {sink.database}.{table}",
        f"SELECT count() FROM `{table}`",
    ):
        assert "is not one of them" in refused(sink, sql)
