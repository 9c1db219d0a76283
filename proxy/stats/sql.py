"""SQL from a :class:`Query`, and nothing else: names map through closed tables, values are bound.

Three ways to read, chosen from the query (:func:`plan`):

* ``events``: event metrics over event or visitor dimensions -> straight from ``events``.
* ``visits``: any visit metric, or visit dimensions/filters without event ones -> one row per visit
  (``proxy.stats.visits``); event metrics are then the visits' own page views and events.
* ``annotated``: event metrics with event dimensions or filters *and* visit dimensions or filters -> each
  event carries its visit's attributes.

Every plan yields per-group *components* (a visitors sketch, sums); ``proxy.stats.suppress`` folds small
groups and the outer query finishes the metrics, orders and limits. Only the database name (from validated
settings) is interpolated; the site, dates, time zone, clauses, property keys, thresholds and limits are all
``{name:Type}`` parameters bound by ClickHouse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from proxy.stats import suppress, timezone, visit_store, visits
from proxy.stats.query import (
    PROPS_PREFIX,
    VISIT_METRICS,
    Condition,
    Filter,
    Query,
    conditions,
    level,
)
from proxy.stats.referrers import source_sql

Plan = Literal["events", "visits", "annotated"]
DT = "DateTime64(3, 'UTC')"
NOT_SET = "(not set)"
NO_REFERRER = "Direct / None"
VISITOR_DIMENSION_COLUMNS = {f"visit:{c}": c for c in visits.VISITOR_COLUMNS}
UTM = visits.UTM_COLUMNS


VISITOR_ONLY_METRICS = frozenset({"visitors", "percentage"})


def plan(q: Query) -> Plan:
    dims = q.levels()
    filters = q.filter_levels()
    if any(m in VISIT_METRICS for m in q.metrics):
        return "visits"
    if (
        set(q.metrics) <= VISITOR_ONLY_METRICS
        and dims | filters <= {"visitor", "time"}
        and q.bucket in (None, "day", "week", "month")
        and q.end - q.start >= timedelta(hours=23)
    ):
        # Visitors by visitor attributes over days: the same visitors whether counted from their events or
        # their visits (attributes do not change within a visit, nor does the UTC day), and past days'
        # visits are stored. Short ranges (realtime) and hours stay on events.
        return "visits"
    if "visit" in dims or "visit" in filters:
        return "annotated" if "event" in dims or "event" in filters else "visits"
    return "events"


@dataclass
class Statement:
    sql: str
    parameters: dict[str, Any]
    dimensions: list[str]  # output columns d0, d1, ...
    metrics: list[str]  # output columns m_<metric>


@dataclass
class _Build:
    q: Query
    db: str
    params: dict[str, Any] = field(default_factory=dict)
    props: list[str] = field(default_factory=list)  # property keys, by index
    carried: list[tuple[str, str]] = field(default_factory=list)  # per-event fields kept in visits
    flags: list[str] = field(default_factory=list)  # per-event filter flags kept in visits

    def bind(self, value: Any, type_: str) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{type_}}}"

    def prop(self, dimension: str) -> str:
        key = dimension[len(PROPS_PREFIX) :]
        if key not in self.props:
            self.props.append(key)
        return f"prop_{self.props.index(key)}"

    def carry(self, alias: str) -> str:
        """Tuple position of a per-event column kept in each visit's events."""
        for i, (a, _) in enumerate(self.carried):
            if a == alias:
                return visits.field(i)
        self.carried.append((alias, alias))
        return visits.field(len(self.carried) - 1)

    # --- values shown for dimensions -------------------------------------------------------------------

    def dimension(self, d: str, time_column: str) -> str:
        lv = level(d)
        if lv == "time":
            assert self.q.bucket is not None
            return timezone.bucket_sql(self.q.bucket, time_column)
        if d == "event:page":
            return "page"
        if d == "event:name":
            return "name"
        if d.startswith(PROPS_PREFIX):
            return self.prop(d)
        if d in VISITOR_DIMENSION_COLUMNS:
            col = VISITOR_DIMENSION_COLUMNS[d]
            return f"if({col} = '', '{NOT_SET}', {col})"
        if d in ("visit:entry_page", "visit:exit_page"):
            return d.split(":", 1)[1]
        if d == "visit:source":
            known = source_sql("v_ref_host")
            return f"if(v_utm_source != '', v_utm_source, if(v_ref_host = '', '{NO_REFERRER}', {known}))"
        if d == "visit:referrer":
            return f"if(v_ref_host = '', '{NO_REFERRER}', replaceRegexpOne(v_ref_host, '^www\\\\.', ''))"
        utm = d.split(":", 1)[1]
        assert utm in UTM
        return f"if(v_{utm} = '', '{NOT_SET}', v_{utm})"

    # --- filters ---------------------------------------------------------------------------------------

    def condition(self, c: Condition, expr: str) -> str:
        clauses = list(c.clauses)
        positive = c.op in ("is", "contains", "matches")
        if c.op in ("is", "is_not"):
            if not c.case_sensitive:
                expr, clauses = f"lowerUTF8({expr})", [v.lower() for v in clauses]
            sql = f"{expr} IN {self.bind(clauses, 'Array(String)')}"
        elif c.op in ("contains", "contains_not"):
            fn = "multiSearchAny" if c.case_sensitive else "multiSearchAnyCaseInsensitiveUTF8"
            sql = f"{fn}({expr}, {self.bind(clauses, 'Array(String)')})"
        else:
            prefix = "" if c.case_sensitive else "(?i)"
            sql = (
                "(" + " OR ".join(f"match({expr}, {self.bind(prefix + r, 'String')})" for r in clauses) + ")"
            )
        return sql if positive else f"NOT ({sql})"

    def filter_sql(self, f: Filter, leaf: Any) -> str:
        if isinstance(f, Condition):
            return str(leaf(f))
        parts = [self.filter_sql(c, leaf) for c in f.children]
        if f.op == "not":
            return f"NOT ({parts[0]})"
        return "(" + f" {f.op.upper()} ".join(parts) + ")"

    def event_leaf(self, c: Condition) -> str:
        """A condition over one event's columns (in ``events`` or an annotated event)."""
        return self.condition(c, self.dimension(c.dimension, "ts"))

    # --- relations -------------------------------------------------------------------------------------

    def events(self, start: str, end: str, where: list[str]) -> str:
        """``events`` of the site in ``[start, end)`` with the columns every plan reads."""
        props = "".join(
            f", if(mapContains(props, {k}), props[{k}], '(none)') AS prop_{i}"
            for i, k in enumerate(self.bind(key, "String") for key in self.props)
        )
        conds = " AND ".join(
            [f"site = {self.bind(self.q.site, 'String')}", f"ts >= {start}", f"ts < {end}", *where]
        )
        return f"SELECT {visits.event_columns_sql()}{props} FROM {self.db}.events WHERE {conds}"


def _pushdown(q: Query) -> tuple[list[Filter], list[Filter]]:
    """Top-level conditions on visitor attributes hold for all of a visitor's events, so they can filter
    events before visits are made: (pushed down, the rest)."""
    down: list[Filter] = []
    rest: list[Filter] = []
    for f in q.filters:
        (down if isinstance(f, Condition) and level(f.dimension) == "visitor" else rest).append(f)
    return down, rest


def build(
    q: Query,
    database: str,
    referrer_parameters: dict[str, list[str]],
    covered: Sequence[tuple[str, int]] = (),
) -> Statement:
    """``covered``: (UTC day, version) of the days whose visits are in the ``visits`` table
    (``proxy.stats.visit_store``); the visits plan reads those from there and makes the others."""
    b = _Build(q, database)
    how = plan(q)
    # Property keys first, so the events relation knows them.
    for d in (*q.dimensions, *(c.dimension for c in conditions(q.filters))):
        if d.startswith(PROPS_PREFIX):
            b.prop(d)
    start, end = b.bind(_ts(q.start), DT), b.bind(_ts(q.end), DT)
    down, rest = _pushdown(q)
    pushed = [b.filter_sql(f, b.event_leaf) for f in down]
    time_col = "vstart" if how == "visits" else "ts"
    dims = [b.dimension(d, time_col) for d in q.dimensions]
    needs_source = any(
        d in ("visit:source", "visit:referrer")
        for d in (*q.dimensions, *(c.dimension for c in conditions(rest)))
    )
    if how == "events":
        where = [*pushed, *(b.filter_sql(f, b.event_leaf) for f in rest)]
        relation = b.events(start, end, where)
        components = _event_components()
    else:
        # Whole UTC days around the range: visitor hashes change at UTC midnight, so every visit that
        # touches the range is read whole (and counted in the range its first event falls in).
        read_start = b.bind(_ts(_utc_day(q.start)), DT)
        read_end = b.bind(_ts(_utc_day(q.end - timedelta(milliseconds=1)) + timedelta(days=1)), DT)
        visit_cols: list[str] = [
            f"{visits.pageviews_sql()} AS v_pageviews",
            f"{visits.events_sql()} AS v_events",
            f"{visits.bounce_sql()} AS v_bounce",
            f"{visits.duration_sql()} AS v_duration",
        ]
        used = {*q.dimensions, *(c.dimension for c in conditions(rest))}
        if used & {"visit:entry_page", "visit:exit_page"}:
            pos = b.carry("page")
            visit_cols += [f"{visits.entry_sql(pos)} AS entry_page", f"{visits.exit_sql(pos)} AS exit_page"]
        if needs_source:
            visit_cols.append(f"{visits.first_sql(b.carry('ref_host'))} AS v_ref_host")
        for utm in UTM:
            if f"visit:{utm}" in used or (utm == "utm_source" and needs_source):
                visit_cols.append(f"{visits.first_sql(b.carry(utm))} AS v_{utm}")

        def visit_leaf(c: Condition) -> str:
            lv = level(c.dimension)
            if lv == "event" and how == "visits":
                # a visit matches an event condition when any of its events does
                alias = f"f_{len(b.flags)}"
                b.flags.append(alias)
                b.carried.append((alias, b.event_leaf(c)))
                visit_cols.append(f"{visits.any_event_sql(visits.field(len(b.carried) - 1))} AS {alias}")
                return alias
            return b.event_leaf(c) if lv == "event" else b.condition(c, b.dimension(c.dimension, time_col))

        if how == "annotated":
            event_fields = ["page", "name", *(f"prop_{i}" for i in range(len(b.props)))]
            positions = {a: b.carry(a) for a in event_fields}
        rest_sql = [b.filter_sql(f, visit_leaf) for f in rest]
        if how == "annotated":
            visit_cols.append("x")
        wanted = [c for d, c in VISITOR_DIMENSION_COLUMNS.items() if d in used]
        if how == "visits" and covered and not b.flags:
            # Rebuilt days from the visits table; the others (today, days not yet rebuilt) made here.
            pairs = b.bind([(d, v) for d, v in covered], "Array(Tuple(Date, UInt64))")
            stored_where = " AND ".join(
                [f"site = {b.bind(q.site, 'String')}", f"(day, version) IN {pairs}", *pushed]
            )
            aliases = [c.rsplit(" AS ", 1)[1] for c in visit_cols]
            vis = visit_store.read_sql(b.db, wanted, aliases, stored_where)
            runs = _uncovered(_utc_day(q.start), _utc_day(q.end - timedelta(milliseconds=1)), covered)
            if runs:
                spans = " OR ".join(
                    f"(ts >= {b.bind(_ts(a), DT)} AND ts < {b.bind(_ts(z), DT)})" for a, z in runs
                )
                events_rel = b.events(read_start, read_end, [*pushed, f"({spans})"])
                vis += f" UNION ALL {visits.visits_sql(events_rel, b.carried, visit_cols, wanted)}"
        else:
            events_rel = b.events(read_start, read_end, pushed)
            vis = visits.visits_sql(events_rel, b.carried, visit_cols, wanted)
        if how == "visits":
            conds = " AND ".join([f"vstart >= {start}", f"vstart < {end}", *rest_sql])
            relation = f"SELECT * FROM ({vis}) WHERE {conds}"
            components = _visit_components()
        else:
            cols = ", ".join(f"e.{p} AS {a}" for a, p in positions.items())
            conds = " AND ".join(["ts >= " + start, "ts < " + end, *rest_sql])
            relation = (
                f"SELECT *, fromUnixTimestamp64Milli(e.1, 'UTC') AS ts, e.2 AS is_pageview, "
                f"e.3 AS is_interactive, {cols} FROM ({vis}) ARRAY JOIN x AS e WHERE {conds}"
            )
            components = _event_components()
    # Only what the metrics need: every component read is columns scanned and values aggregated.
    components = {c: e for c, e in components.items() if c == "c_visitors" or set(q.metrics) & _NEEDED_BY[c]}
    if "visit:source" in q.dimensions:
        relation, dims, components = _name_sources_late(q, relation, dims, components)
    sql, metric_cols = suppress.fold_sql(q, relation, dims, components, b.bind)
    params = {**b.params, **(referrer_parameters if needs_source else {})}
    if q.bucket is not None:
        params["tz"] = q.timezone
        params["first_day"] = q.first_day.isoformat()
    return Statement(sql, params, [f"d{i}" for i in range(len(dims))], metric_cols)


def _ts(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _name_sources_late(
    q: Query, relation: str, dims: list[str], components: dict[str, str]
) -> tuple[str, list[str], dict[str, str]]:
    """Group by the raw referrer host and UTM source first and name the few distinct hosts afterwards,
    rather than looking a name up for every visit: the same answer, far less work."""
    raw = [
        f"{expr} AS p{i}"
        for i, (d, expr) in enumerate(zip(q.dimensions, dims, strict=True))
        if d != "visit:source"
    ]
    keys = [
        *(f"p{i}" for i, d in enumerate(q.dimensions) if d != "visit:source"),
        "v_utm_source",
        "v_ref_host",
    ]
    pre = ", ".join([*raw, "v_utm_source", "v_ref_host", *(f"{e} AS pre_{c}" for c, e in components.items())])
    relation = f"SELECT {pre} FROM ({relation}) GROUP BY {', '.join(keys)}"
    source = dims[q.dimensions.index("visit:source")]
    dims = [source if d == "visit:source" else f"p{i}" for i, d in enumerate(q.dimensions)]
    merged = {c: ("uniqMergeState" if c == "c_visitors" else "sum") + f"(pre_{c})" for c in components}
    return relation, dims, merged


def _uncovered(
    first: datetime, last: datetime, covered: Sequence[tuple[str, int]]
) -> list[tuple[datetime, datetime]]:
    """UTC ``[start, end)`` runs of the days ``first``..``last`` that are not ``covered``."""
    have = {d for d, _ in covered}
    runs: list[tuple[datetime, datetime]] = []
    day = first
    while day <= last:
        if day.date().isoformat() not in have:
            if runs and runs[-1][1] == day:
                runs[-1] = (runs[-1][0], day + timedelta(days=1))
            else:
                runs.append((day, day + timedelta(days=1)))
        day += timedelta(days=1)
    return runs


def _utc_day(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


_NEEDED_BY: dict[str, frozenset[str]] = {
    "c_pageviews": frozenset({"pageviews", "views_per_visit"}),
    "c_events": frozenset({"events"}),
    "c_visits": frozenset({"visits", "bounce_rate", "visit_duration", "views_per_visit"}),
    "c_bounces": frozenset({"bounce_rate"}),
    "c_duration": frozenset({"visit_duration"}),
}


def _event_components() -> dict[str, str]:
    return {
        "c_visitors": "uniqState(vh)",
        "c_pageviews": "countIf(is_pageview)",
        "c_events": "countIf(is_pageview OR is_interactive)",
    }


def _visit_components() -> dict[str, str]:
    return {
        "c_visitors": "uniqState(vh)",
        "c_visits": "count()",
        "c_pageviews": "sum(v_pageviews)",
        "c_events": "sum(v_events)",
        "c_bounces": "sum(v_bounce)",
        "c_duration": "sum(v_duration)",
    }
