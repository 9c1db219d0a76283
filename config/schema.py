"""The ClickHouse DDL in ``schema.sql``, filled in from settings and split into statements.

For a ClickHouse cluster (``clickhouse.cluster``) the same statements are rewritten: every CREATE gets
``ON CLUSTER``, every MergeTree-family engine its Replicated form (the Keeper path from the servers'
``{shard}`` and ``{replica}`` macros), and every table explicit deduplication windows. Statements other
helpers add to ``schema.sql`` are rewritten the same way.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from config.settings import ClickhouseSettings

SCHEMA_FILE = Path(__file__).with_name("schema.sql")
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)  # a statement ends with ";" at the end of a line
# Columns whose values expire before the row does (a column TTL in the DDL).
PSEUDONYM_COLUMNS = ("client_id", "user_id", "session_id", "click_ids")
TABLES = (
    "events",
    "events_daily",
    "audit_log",
    "suppressions",
    "analyst_keys",
    "analyst_requests",
    "dashboard_sessions",
    "visits",
    "visit_days",
    "salts",
    "secret_fingerprints",
    "replicas",
    "subject_requests",
)
# Shared state no analyst query may read (the wrapped salts, the secrets' fingerprints).
PRIVATE_TABLES = ("salts", "secret_fingerprints")
# Where a Replicated table keeps its metadata in Keeper: ClickHouse fills in the macros per server.
REPLICA_PATH = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"

_CREATE = re.compile(
    r"^CREATE (?P<kind>DATABASE|TABLE|MATERIALIZED VIEW|VIEW) IF NOT EXISTS (?P<name>[A-Za-z0-9_.]+)"
)
_ALTER = re.compile(r"^ALTER TABLE [A-Za-z0-9_.]+")
_ENGINE = re.compile(r"ENGINE = (?P<family>[A-Za-z]*)MergeTree(?:\((?P<args>[^()]*)\))?")
_NON_REPLICATED_WINDOW = re.compile(r"non_replicated_deduplication_window = \d+")


def days_ttl(column: str, days: int) -> str:
    return f"toDateTime({column}) + INTERVAL {int(days)} DAY"


# --- the daily rollup ---------------------------------------------------------------------------------
# events_daily is kept for years and a subject request does not look there (it holds no identifier to
# look for), so nothing that can carry an identifier may reach it, however the events table was scrubbed.
# The materialized view writes generalised values only; ROLLUP_VERSION (the view's COMMENT, with a hash of
# the definition, so that any change to it makes a new version) says which definition an existing store
# has, and ClickHouseSink.start brings older ones, and their rows, up to it.

# Path segments after which the next one names a person, an account, an order or a one-time secret.
ROLLUP_ID_PREFIXES = (
    "u", "user", "users", "profile", "profiles", "people", "person", "member", "members", "author",
    "authors", "customer", "customers", "patient", "patients", "student", "students", "employee",
    "employees", "staff", "order", "orders", "invoice", "invoices", "ticket", "tickets", "booking",
    "bookings", "reservation", "reservations", "id", "uid", "reset", "reset-password", "password-reset",
    "verify", "verify-email", "confirm", "activate", "invite", "invitation", "magic-link", "unsubscribe",
    "token",
)  # fmt: skip
# Second-level labels under which a registrable domain has three labels (news.bbc.co.uk -> bbc.co.uk).
_SECOND_LEVEL_LABELS = (
    "co",
    "com",
    "net",
    "org",
    "gov",
    "edu",
    "ac",
    "or",
    "ne",
    "go",
    "gob",
    "nic",
    "ltd",
    "plc",
)


def _sql_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def rollup_page(path: str) -> str:
    """SQL: the path ``path`` (an expression) with every segment that can carry an identifier as ``:id``.

    Such a segment, percent-decoded, holds a digit of any script, "@", "~" or "[" (a scrubber
    placeholder), is longer than 48 characters, changes from lower to upper case three times (random
    or base64 runs), or follows a segment in ROLLUP_ID_PREFIXES (``/users/jane`` -> ``/users/:id``).
    """
    segs = f"splitByChar('/', {path})"
    idlike = (
        "(match(decodeURLComponent(seg), '[\\\\pN@~\\\\[]') OR lengthUTF8(decodeURLComponent(seg)) > 48"
        " OR match(seg, '[a-z][A-Z].*[a-z][A-Z].*[a-z][A-Z]')"
        f" OR has({_sql_list(ROLLUP_ID_PREFIXES)}, lower(prev)))"
    )
    previous = f"arrayPushFront(arrayPopBack({segs}), '')"
    mapped = f"arrayMap((seg, prev) -> if(seg != '' AND {idlike}, ':id', seg), {segs}, {previous})"
    # What some segment must hold for the test above to pick it (a segment over 48 characters needs a path
    # that long): one look at the whole path lets most skip splitting and decoding (the view runs on every
    # inserted row).
    suspect = f"[\\\\pN@~\\\\[%]|[a-z][A-Z]|(?i:(?:^|/)(?:{'|'.join(ROLLUP_ID_PREFIXES)})/[^/])"
    return f"if(length({path}) > 48 OR match({path}, '{suspect}'), arrayStringConcat({mapped}, '/'), {path})"


def rollup_source(value: str) -> str:
    """SQL: a source value (``utm_source``, or a referrer host) reduced to what cannot carry an id.

    ``(direct)`` and ``(other)`` stay; a host name becomes its registrable domain (the last two labels,
    three under a second-level label of a two-letter country: ``news.bbc.co.uk`` -> ``bbc.co.uk``,
    ``jane.blogspot.com`` -> ``blogspot.com``); a campaign name of up to 40 letters, ``.``, ``_`` and
    ``-`` stays; anything else (digits, spaces, ``@``, placeholders) becomes ``(other)``.
    """
    labels = f"splitByChar('.', {value})"
    three = (
        f"length({labels}) >= 3 AND length({labels}[-1]) = 2"
        f" AND has({_sql_list(_SECOND_LEVEL_LABELS)}, {labels}[-2])"
    )
    registrable = f"arrayStringConcat(arraySlice({labels}, if({three}, -3, -2)), '.')"
    return (
        f"multiIf({value} IN ('(direct)', '(other)'), {value},"
        f" match({value}, '^[a-z0-9-]+(\\\\.[a-z0-9-]+)+$'), {registrable},"
        f" match({value}, '^[A-Za-z][A-Za-z._-]*$') AND length({value}) <= 40, {value},"
        " '(other)')"
    )


def rollup_source_of_event() -> str:
    """SQL: the rollup's source for an events row: its utm_source, else its referrer's host, else (direct)."""
    host = "extract(referrer, '^[A-Za-z][A-Za-z0-9+.-]*://([^/:?#]+)')"
    return (
        f"if(utm_source != '', {rollup_source('utm_source')},"
        f" if(referrer != '', {rollup_source(host)}, '(direct)'))"
    )


ROLLUP_VERSION = (
    "rollup "
    + hashlib.sha256((rollup_page("p") + rollup_source_of_event()).encode()).hexdigest()[:12]
    + ": page segments that can carry an id are :id; source is a domain or campaign name"
)


def request_retention_days(ch: ClickhouseSettings) -> int:
    """Subject requests are kept as long as an event may wait in a spool (its retention), plus a day."""
    return ch.retention_days + 1


def ddl_statements(database: str, ch: ClickhouseSettings, cluster: str = "") -> list[str]:
    """Statements in file order, comment lines removed. Values come from validated settings only.

    ``cluster``: a cluster name (``clickhouse.cluster``): the statements for a replicated cluster."""
    lines = [ln for ln in SCHEMA_FILE.read_text().splitlines() if not ln.lstrip().startswith("--")]
    text = "\n".join(lines).format(
        database=database,
        rollup_page=rollup_page("path(url)"),
        rollup_source=rollup_source_of_event(),
        rollup_version=ROLLUP_VERSION.replace("'", "''"),
        ttl=days_ttl("ts", ch.retention_days),
        pseudonym_ttl=days_ttl("ts", ch.pseudonym_retention_days),
        aggregate_ttl=days_ttl("day", ch.aggregate_retention_days),
        audit_ttl=days_ttl("time", ch.audit_retention_days),
        visits_ttl=days_ttl("day", ch.retention_days),
        request_ttl=days_ttl("requested", request_retention_days(ch)),
    )
    statements = [stmt.strip() for stmt in _STATEMENT_END.split(text) if stmt.strip()]
    window = f"non_replicated_deduplication_window = {int(ch.deduplication_window)}"
    statements = [_NON_REPLICATED_WINDOW.sub(window, stmt) for stmt in statements]
    if cluster:
        statements = [for_cluster(stmt, cluster, ch) for stmt in statements]
    return statements


def on_cluster(cluster: str) -> str:
    """`` ON CLUSTER '<name>'`` (the name is validated by settings), or "" without a cluster."""
    return f" ON CLUSTER '{cluster}'" if cluster else ""


def for_cluster(stmt: str, cluster: str, ch: ClickhouseSettings) -> str:
    """One statement for a replicated cluster: ON CLUSTER, a Replicated engine, explicit windows."""
    alter = _ALTER.match(stmt)
    if alter is not None:  # e.g. a column added to an existing table: on every node too
        return stmt[: alter.end()] + on_cluster(cluster) + stmt[alter.end() :]
    match = _CREATE.match(stmt)
    if match is None:
        return stmt
    stmt = stmt[: match.end()] + on_cluster(cluster) + stmt[match.end() :]
    engine = _ENGINE.search(stmt)
    if match["kind"] != "TABLE" or engine is None:
        return stmt
    args = engine["args"]
    replicated = (
        f"ENGINE = Replicated{engine['family']}MergeTree({REPLICA_PATH}{', ' + args if args else ''})"
    )
    stmt = stmt[: engine.start()] + replicated + stmt[engine.end() :]
    windows = (
        f"replicated_deduplication_window = {int(ch.deduplication_window)}, "
        f"replicated_deduplication_window_seconds = {int(ch.deduplication_window_seconds)}"
    )
    if _NON_REPLICATED_WINDOW.search(stmt):
        return _NON_REPLICATED_WINDOW.sub(windows, stmt)
    if re.search(r"\nSETTINGS ", stmt):
        return f"{stmt}, {windows}"
    return f"{stmt}\nSETTINGS {windows}"


def schema_objects(database: str, ch: ClickhouseSettings) -> list[str]:
    """The tables and views the DDL creates, in order (without the database)."""
    names = []
    for stmt in ddl_statements(database, ch):
        match = _CREATE.match(stmt)
        if match is not None and match["kind"] != "DATABASE":
            names.append(match["name"].split(".", 1)[1])
    return names


def rollup_select(statements: list[str]) -> str:
    """The SELECT of the rollup view's CREATE statement among ``statements`` (for ALTER ... MODIFY QUERY)."""
    for stmt in statements:
        if stmt.startswith("CREATE MATERIALIZED VIEW"):
            select = stmt[stmt.index(" AS\nSELECT") + 4 :]
            return select[: select.rindex("\nCOMMENT ")].strip()
    raise ValueError("schema.sql has no materialized view")


def normalised_ttl(column: str, days: int) -> str:
    """How ClickHouse shows ``days_ttl`` in ``create_table_query``."""
    return f"toDateTime({column}) + toIntervalDay({int(days)})"
