"""Parse a Stats API request (v2 JSON body, or v1 query parameters) into one :class:`Query`.

Parsing does no I/O except, for ``date_range: "all"``, asking the caller-supplied ``first_day`` when the
site's data starts. Every error is a :class:`QueryError` whose message names the field, in Plausible's
manner; v1 parameters map into the same value, so both versions share validation, SQL and suppression.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, cast

from proxy.stats import timezone
from proxy.stats.query import (
    METRICS,
    OPERATORS,
    TIME_DIMENSIONS,
    VISIT_METRICS,
    Bucket,
    Condition,
    Filter,
    Logic,
    Metric,
    Query,
    QueryError,
    level,
)

MAX_LIMIT = 10_000
MAX_CLAUSES = 100
MAX_CLAUSE_LENGTH = 1000
MAX_FILTER_DEPTH = 5
MAX_FILTERS = 50
V2_KEYS = frozenset(
    {"site_id", "metrics", "date_range", "date", "dimensions", "filters", "order_by", "include", "pagination"}
)
INCLUDE_KEYS = frozenset({"time_labels", "total_rows", "imports"})
DAYS_RANGES = {"7d": 7, "28d": 28, "30d": 30, "91d": 91}
_MONTHS_RANGES = {"6mo": 6, "12mo": 12}


@dataclass(frozen=True, slots=True)
class SiteContext:
    """What parsing needs to know about the site: its id, zone, suppression threshold, and (lazily)
    the first day it has data (for ``"all"``)."""

    site: str
    timezone: str
    min_visitors: int
    now: datetime
    first_day: Callable[[], date | None] = lambda: None


def _show(value: Any) -> str:
    """The caller's own value, shortened, for an error message."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- v2 --------------------------------------------------------------------------------------------------


def parse_v2(doc: Any, ctx: SiteContext) -> Query:
    if not isinstance(doc, dict):
        raise QueryError("Invalid query: the body must be a JSON object.")
    unknown = sorted(set(doc) - V2_KEYS)
    if unknown:
        raise QueryError(f"Invalid key '{_show(unknown[0])}': valid keys are {', '.join(sorted(V2_KEYS))}.")
    if "metrics" not in doc:
        raise QueryError("Missing metrics: 'metrics' is required (e.g. [\"visitors\"]).")
    if "date_range" not in doc:
        raise QueryError("Missing date_range: 'date_range' is required (e.g. \"7d\").")
    metrics = parse_metrics(doc["metrics"])
    dimensions = parse_dimensions(doc.get("dimensions", []))
    filters = parse_filters(doc.get("filters", []))
    ref = parse_date(doc.get("date"), ctx)
    start, end, first, last = parse_date_range(doc["date_range"], ref, ctx)
    include = doc.get("include", {})
    if not isinstance(include, dict):
        raise QueryError('Invalid include: must be an object such as {"total_rows": true}.')
    for key, value in include.items():
        if key not in INCLUDE_KEYS:
            raise QueryError(f"Invalid include.{_show(key)}: valid keys are time_labels, total_rows.")
        if not isinstance(value, bool):
            raise QueryError(f"Invalid include.{key}: must be true or false.")
    limit, offset = parse_pagination(doc.get("pagination", {}))
    order_by = parse_order_by(doc.get("order_by"), metrics, dimensions)
    echo: dict[str, object] = {
        "site_id": ctx.site,
        "metrics": list(metrics),
        "date_range": [timezone.iso_local(start, timezone.zone(ctx.timezone)), _last_second(end, ctx)],
        "filters": doc.get("filters", []),
        "dimensions": list(dimensions),
        "order_by": [[k, d] for k, d in order_by],
        "include": {k: v for k, v in include.items() if v},
        "pagination": {"limit": limit, "offset": offset},
    }
    return build(
        ctx,
        metrics,
        dimensions,
        filters,
        (start, end, first, last),
        order_by,
        limit,
        offset,
        time_labels=bool(include.get("time_labels")),
        total_rows=bool(include.get("total_rows")),
        echo=echo,
    )


def _last_second(end: datetime, ctx: SiteContext) -> str:
    return timezone.iso_local(end - timedelta(seconds=1), timezone.zone(ctx.timezone))


def build(
    ctx: SiteContext,
    metrics: tuple[Metric, ...],
    dimensions: tuple[str, ...],
    filters: tuple[Filter, ...],
    span: tuple[datetime, datetime, date, date],
    order_by: tuple[tuple[str, Literal["asc", "desc"]], ...],
    limit: int,
    offset: int,
    *,
    time_labels: bool = False,
    total_rows: bool = False,
    echo: dict[str, object] | None = None,
) -> Query:
    """The cross-field rules, then the query value (shared by v1 and v2)."""
    start, end, first, last = span
    levels = {level(d) for d in dimensions}
    visit_metrics = [m for m in metrics if m in VISIT_METRICS]
    if visit_metrics and "event" in levels:
        raise QueryError(
            f"Session metric(s) `{', '.join(visit_metrics)}` cannot be queried along with event dimensions."
        )
    if "percentage" in metrics and not [d for d in dimensions if level(d) != "time"]:
        raise QueryError("Metric `percentage` can only be queried with a non-time dimension.")
    if time_labels and "time" not in levels:
        raise QueryError("Invalid include.time_labels: requires a time dimension.")
    if not order_by:
        times = [d for d in dimensions if level(d) == "time"]
        order_by = (*((t, "asc") for t in times), (metrics[0], "desc"))
    if echo is not None:
        echo["order_by"] = [[k, d] for k, d in order_by]  # as answered, defaults included
    bucket: Bucket | None = None
    for d in dimensions:
        if d == "time":
            bucket = timezone.auto_bucket(start, end)
        elif d.startswith("time:"):
            bucket = cast(Bucket, d.split(":", 1)[1])
    return Query(
        site=ctx.site,
        metrics=metrics,
        start=start,
        end=end,
        first_day=first,
        last_day=last,
        timezone=ctx.timezone,
        dimensions=dimensions,
        filters=filters,
        order_by=order_by,
        limit=limit,
        offset=offset,
        time_labels=time_labels,
        total_rows=total_rows,
        bucket=bucket,
        min_visitors=ctx.min_visitors,
        echo=echo or {},
    )


def parse_metrics(value: Any, field: str = "metrics") -> tuple[Metric, ...]:
    if not isinstance(value, list) or not value:
        raise QueryError(f'Invalid {field}: must be a non-empty list such as ["visitors"].')
    out: list[Metric] = []
    for i, m in enumerate(value):
        if not isinstance(m, str) or m not in METRICS:
            raise QueryError(
                f"Unknown metric '{_show(m)}' in {field}[{i}]; valid metrics: {', '.join(METRICS)}."
            )
        if m in out:
            raise QueryError(f"Invalid {field}: metric '{m}' is listed twice.")
        out.append(m)
    return tuple(out)


def parse_dimensions(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise QueryError('Invalid dimensions: must be a list such as ["visit:source"].')
    out: list[str] = []
    for i, d in enumerate(value):
        if not isinstance(d, str) or level(d) is None:
            raise QueryError(
                f"Invalid dimensions[{i}] '{_show(d)}': use event:page, event:name, event:props:<key>, "
                "visit:* or time dimensions."
            )
        if d in out:
            raise QueryError(f"Invalid dimensions: '{d}' is listed twice.")
        out.append(d)
    if sum(1 for d in out if d in TIME_DIMENSIONS) > 1:
        raise QueryError("Invalid dimensions: at most one time dimension.")
    return tuple(out)


def parse_filters(value: Any) -> tuple[Filter, ...]:
    if not isinstance(value, list):
        raise QueryError('Invalid filters: must be a list such as [["is", "visit:country", ["DE"]]].')
    if len(value) > MAX_FILTERS:
        raise QueryError(f"Invalid filters: at most {MAX_FILTERS}.")
    return tuple(_filter(f, f"filters[{i}]", 1) for i, f in enumerate(value))


def _filter(f: Any, where: str, depth: int) -> Filter:
    if depth > MAX_FILTER_DEPTH:
        raise QueryError(f"Invalid filter {where}: nested more than {MAX_FILTER_DEPTH} deep.")
    if not isinstance(f, list) or not f or not isinstance(f[0], str):
        raise QueryError(f"Invalid filter {where}: expected [operator, dimension, clauses].")
    op = f[0]
    if op in ("and", "or"):
        if len(f) != 2 or not isinstance(f[1], list) or not f[1]:
            raise QueryError(f"Invalid filter {where}: '{op}' takes a non-empty list of filters.")
        children = tuple(_filter(c, f"{where}[1][{i}]", depth + 1) for i, c in enumerate(f[1]))
        return Logic("and" if op == "and" else "or", children)
    if op == "not":
        if len(f) != 2:
            raise QueryError(f"Invalid filter {where}: 'not' takes one filter.")
        return Logic("not", (_filter(f[1], f"{where}[1]", depth + 1),))
    if op not in OPERATORS:
        raise QueryError(
            f"Unknown operator '{_show(op)}' in filter {where}; valid: {', '.join(OPERATORS)}, and, or, not."
        )
    if len(f) not in (3, 4):
        raise QueryError(f"Invalid filter {where}: expected [operator, dimension, clauses].")
    dim = f[1]
    lv = level(dim) if isinstance(dim, str) else None
    if lv is None:
        raise QueryError(f"Invalid filter {where}: unknown dimension '{_show(dim)}'.")
    if lv == "time":
        raise QueryError(f"Invalid filter {where}: time dimensions cannot be filtered; set date_range.")
    clauses = f[2]
    if (
        not isinstance(clauses, list)
        or not clauses
        or len(clauses) > MAX_CLAUSES
        or not all(isinstance(c, str) and len(c) <= MAX_CLAUSE_LENGTH for c in clauses)
    ):
        raise QueryError(
            f"Invalid filter {where}: clauses must be a list of 1-{MAX_CLAUSES} strings "
            f"of at most {MAX_CLAUSE_LENGTH} characters."
        )
    case_sensitive = True
    if len(f) == 4:
        mods = f[3]
        if not isinstance(mods, dict) or set(mods) - {"case_sensitive"}:
            raise QueryError(f'Invalid filter {where}: modifiers must be {{"case_sensitive": false}}.')
        cs = mods.get("case_sensitive", True)
        if not isinstance(cs, bool):
            raise QueryError(f"Invalid filter {where}: case_sensitive must be true or false.")
        case_sensitive = cs
    return Condition(cast(Any, op), dim, tuple(clauses), case_sensitive)


def parse_order_by(
    value: Any, metrics: tuple[str, ...], dimensions: tuple[str, ...]
) -> tuple[tuple[str, Literal["asc", "desc"]], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise QueryError('Invalid order_by: must be a list such as [["visitors", "desc"]].')
    out: list[tuple[str, Literal["asc", "desc"]]] = []
    for i, entry in enumerate(value):
        if not (isinstance(entry, list) and len(entry) == 2 and entry[1] in ("asc", "desc")):
            raise QueryError(f'Invalid order_by[{i}]: expected [metric or dimension, "asc" or "desc"].')
        if entry[0] not in metrics and entry[0] not in dimensions:
            raise QueryError(
                f"Invalid order_by[{i}] '{_show(entry[0])}': entry is not a queried metric or dimension."
            )
        out.append((entry[0], entry[1]))
    return tuple(out)


def parse_pagination(value: Any) -> tuple[int, int]:
    if not isinstance(value, dict) or set(value) - {"limit", "offset"}:
        raise QueryError('Invalid pagination: must be {"limit": n, "offset": n}.')
    limit, offset = value.get("limit", MAX_LIMIT), value.get("offset", 0)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"Invalid pagination.limit: must be an integer from 1 to {MAX_LIMIT}.")
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= 10_000_000:
        raise QueryError("Invalid pagination.offset: must be a non-negative integer.")
    return limit, offset


def parse_date(value: Any, ctx: SiteContext) -> date:
    """The reference day (``date``), default today in the site's zone."""
    if value is None:
        return timezone.local_today(timezone.zone(ctx.timezone), ctx.now)
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise QueryError(f"Invalid date '{_show(value)}': use an ISO date such as 2024-01-31.")


def _month_shift(day: date, months: int) -> date:
    total = day.year * 12 + day.month - 1 + months
    return date(total // 12, total % 12 + 1, 1)


def _month_end(day: date) -> date:
    return _month_shift(day, 1) - timedelta(days=1)


def parse_date_range(value: Any, ref: date, ctx: SiteContext) -> tuple[datetime, datetime, date, date]:
    """``(start, end, first_day, last_day)``: UTC ``[start, end)`` and the local days it covers."""
    tz = timezone.zone(ctx.timezone)
    first: date
    last: date
    if isinstance(value, str):
        if value in ("realtime", "30m", "24h"):
            minutes = {"realtime": 5, "30m": 30, "24h": 24 * 60}[value]
            end = ctx.now.astimezone(UTC) + timedelta(seconds=5)
            start = end - timedelta(minutes=minutes, seconds=5)
            return start, end, start.astimezone(tz).date(), end.astimezone(tz).date()
        if value == "day":
            first = last = ref
        elif value in DAYS_RANGES:
            first, last = ref - timedelta(days=DAYS_RANGES[value] - 1), ref
        elif value == "month":
            first, last = ref.replace(day=1), _month_end(ref)
        elif value in _MONTHS_RANGES:
            first, last = _month_shift(ref, 1 - _MONTHS_RANGES[value]), _month_end(ref)
        elif value == "year":
            first, last = date(ref.year, 1, 1), date(ref.year, 12, 31)
        elif value == "all":
            first, last = ctx.first_day() or ref, ref
        else:
            raise QueryError(
                f"Invalid date_range '{_show(value)}': use day, 24h, 7d, 28d, 30d, 91d, month, 6mo, 12mo, "
                "year, all, or a pair of ISO dates or date-times."
            )
        start, end = timezone.day_range(first, last, tz)
        return start, end, first, last
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        try:
            first, last = date.fromisoformat(value[0]), date.fromisoformat(value[1])
        except ValueError:
            pass
        else:
            if last < first:
                raise QueryError("Invalid date_range: the end is before the start.")
            start, end = timezone.day_range(first, last, tz)
            return start, end, first, last
        try:
            a, b = (datetime.fromisoformat(v) for v in value)
        except ValueError:
            raise QueryError(
                f"Invalid date_range '{_show(value)}': not ISO 8601 dates or date-times."
            ) from None
        if a.tzinfo is None or b.tzinfo is None:
            raise QueryError("Invalid date_range: date-times need an offset, e.g. 2024-01-01T12:00:00+02:00.")
        start, end = a.astimezone(UTC), b.astimezone(UTC) + timedelta(seconds=1)  # the end second is included
        if end <= start:
            raise QueryError("Invalid date_range: the end is before the start.")
        return start, end, start.astimezone(tz).date(), b.astimezone(tz).date()
    raise QueryError(
        f"Invalid date_range '{_show(value)}': a named range or a pair of ISO dates or date-times."
    )


# --- v1 --------------------------------------------------------------------------------------------------

V1Endpoint = Literal["aggregate", "breakdown", "timeseries", "realtime"]
V1_PERIODS = ("day", "7d", "28d", "30d", "91d", "month", "6mo", "12mo", "year", "all", "custom", "realtime")
V1_INTERVALS: dict[str, Bucket] = {
    "hour": "hour",
    "date": "day",
    "day": "day",
    "week": "week",
    "month": "month",
}
_V1_FILTER = re.compile(r"^([a-z_:]+(?::[^=!]+)?)\s*(==|!=)\s*(.*)$", re.DOTALL)


def _v1_values(raw: str) -> list[str]:
    """``a|b\\|c`` -> ``["a", "b|c"]``."""
    parts, cur, i = [], [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw) and raw[i + 1] == "|":
            cur.append("|")
            i += 2
            continue
        if ch == "|":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _glob_regex(pattern: str) -> str:
    return "^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$"


def parse_v1_filters(raw: str) -> tuple[Filter, ...]:
    """v1's ``event:page==/blog*;visit:country!=FR`` syntax (``|`` for any of, ``*`` wildcard)."""
    out: list[Filter] = []
    for i, expr in enumerate(e for e in raw.split(";") if e.strip()):
        m = _V1_FILTER.match(expr.strip())
        if not m:
            raise QueryError(f"Invalid filters: expression {i + 1} '{_show(expr)}' is not property==value.")
        dim, op, rest = m.group(1), m.group(2), m.group(3)
        if level(dim) in (None, "time"):
            raise QueryError(f"Invalid filters: unknown property '{_show(dim)}'.")
        values = _v1_values(rest)
        if len(values) > MAX_CLAUSES or any(len(v) > MAX_CLAUSE_LENGTH for v in values):
            raise QueryError("Invalid filters: too many or too long values.")
        if any("*" in v for v in values):
            regexes = tuple(_glob_regex(v) for v in values)
            out.append(Condition("matches" if op == "==" else "matches_not", dim, regexes))
        else:
            out.append(Condition("is" if op == "==" else "is_not", dim, tuple(values)))
    return tuple(out)


def parse_v1(params: Mapping[str, str], endpoint: V1Endpoint, ctx: SiteContext) -> Query:
    if endpoint == "realtime":
        return build(
            ctx,
            ("visitors",),
            (),
            (),
            parse_date_range("realtime", timezone.local_today(timezone.zone(ctx.timezone), ctx.now), ctx),
            (),
            1,
            0,
        )
    metrics = parse_metrics(params.get("metrics", "visitors").split(","), "metrics")
    period = params.get("period", "30d")
    if period not in V1_PERIODS:
        raise QueryError(f"Invalid period '{_show(period)}': use one of {', '.join(V1_PERIODS)}.")
    raw_date = params.get("date")
    if period == "custom":
        if not raw_date or raw_date.count(",") != 1:
            raise QueryError("Invalid date: period=custom needs date=YYYY-MM-DD,YYYY-MM-DD.")
        span = parse_date_range(raw_date.split(","), date.today(), ctx)
    else:
        span = parse_date_range(period, parse_date(raw_date, ctx), ctx)
    filters = parse_v1_filters(params.get("filters", ""))
    dimensions: tuple[str, ...] = ()
    limit, offset = MAX_LIMIT, 0
    if endpoint == "breakdown":
        prop = params.get("property")
        if not prop:
            raise QueryError("Missing property: breakdown needs property=event:page (or another property).")
        if level(prop) in (None, "time"):
            raise QueryError(f"Invalid property '{_show(prop)}': use event:page, visit:source and so on.")
        dimensions = (prop,)
        limit = _v1_int(params, "limit", 100, 1, 1000)
        offset = (_v1_int(params, "page", 1, 1, 1_000_000) - 1) * limit
    elif endpoint == "timeseries":
        interval = params.get("interval")
        if interval is None:
            bucket: Bucket = (
                "hour" if period in ("day", "realtime") else "month" if period in ("6mo", "12mo") else "day"
            )
        elif interval in V1_INTERVALS:
            bucket = V1_INTERVALS[interval]
        else:
            raise QueryError(f"Invalid interval '{_show(interval)}': use hour, date, week or month.")
        dimensions = (f"time:{bucket}",)
    return build(ctx, metrics, dimensions, filters, span, (), limit, offset)


def _v1_int(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise QueryError(f"Invalid {name}: must be an integer from {low} to {high}.")
    return int(raw)
