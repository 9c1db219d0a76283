"""The ClickHouse DDL in ``schema.sql``, filled in from settings and split into statements."""

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
)


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
    return f"arrayStringConcat({mapped}, '/')"


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


def ddl_statements(database: str, ch: ClickhouseSettings) -> list[str]:
    """Statements in file order, comment lines removed. Values come from validated settings only."""
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
    )
    return [stmt.strip() for stmt in _STATEMENT_END.split(text) if stmt.strip()]


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
