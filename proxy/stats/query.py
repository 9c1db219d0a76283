"""The typed query every analyst request becomes, and the closed tables of metric and dimension names.

Nothing a caller wrote reaches SQL as text: metrics and dimensions are looked up in these tables, and
values (filter clauses, property keys, dates) travel as bound parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, get_args

Metric = Literal[
    "visitors",
    "visits",
    "pageviews",
    "events",
    "views_per_visit",
    "bounce_rate",
    "visit_duration",
    "percentage",
]
METRICS: tuple[Metric, ...] = get_args(Metric)  # in the order the Literal names them
# Metrics that need visits (a visitor's events split at 30-minute gaps).
VISIT_METRICS: frozenset[str] = frozenset({"visits", "views_per_visit", "bounce_rate", "visit_duration"})

# Where a dimension's value comes from:
#   event   - the event itself (page, name, a custom property)
#   visitor - the same for all of a daily visitor's events (geo from the IP, browser/OS/device from the UA)
#   visit   - the visit: its first event (source, referrer, UTM tags) or its first/last page view
EVENT_DIMENSIONS = ("event:page", "event:name")
VISITOR_DIMENSIONS = (
    "visit:country",
    "visit:region",
    "visit:city",
    "visit:device",
    "visit:browser",
    "visit:browser_version",
    "visit:os",
    "visit:os_version",
)
VISIT_DIMENSIONS = (
    "visit:entry_page",
    "visit:exit_page",
    "visit:source",
    "visit:referrer",
    "visit:utm_medium",
    "visit:utm_source",
    "visit:utm_campaign",
    "visit:utm_content",
    "visit:utm_term",
)
TIME_DIMENSIONS = ("time", "time:hour", "time:day", "time:week", "time:month")
PROPS_PREFIX = "event:props:"
MAX_PROP_KEY = 64  # as the ingestion side stores them

Level = Literal["event", "visitor", "visit", "time"]
Bucket = Literal["hour", "day", "week", "month"]
Operator = Literal["is", "is_not", "contains", "contains_not", "matches", "matches_not"]
OPERATORS: tuple[Operator, ...] = ("is", "is_not", "contains", "contains_not", "matches", "matches_not")


def level(dimension: str) -> Level | None:
    """The level of a known dimension, None for an unknown one."""
    if dimension in EVENT_DIMENSIONS:
        return "event"
    if dimension.startswith(PROPS_PREFIX):
        key = dimension[len(PROPS_PREFIX) :]
        return "event" if 0 < len(key) <= MAX_PROP_KEY else None
    if dimension in VISITOR_DIMENSIONS:
        return "visitor"
    if dimension in VISIT_DIMENSIONS:
        return "visit"
    if dimension in TIME_DIMENSIONS:
        return "time"
    return None


@dataclass(frozen=True, slots=True)
class Condition:
    """``[operator, dimension, clauses, {"case_sensitive": …}]``: true when any clause matches."""

    op: Operator
    dimension: str
    clauses: tuple[str, ...]
    case_sensitive: bool = True


@dataclass(frozen=True, slots=True)
class Logic:
    """``["and", [...]]``, ``["or", [...]]`` or ``["not", filter]``."""

    op: Literal["and", "or", "not"]
    children: tuple[Filter, ...]


Filter = Condition | Logic


def conditions(filters: Sequence[Filter]) -> list[Condition]:
    out: list[Condition] = []
    for f in filters:
        if isinstance(f, Condition):
            out.append(f)
        else:
            out.extend(conditions(f.children))
    return out


@dataclass(frozen=True, slots=True)
class Query:
    """One validated analyst query. Times are UTC; ``start`` inclusive, ``end`` exclusive."""

    site: str
    metrics: tuple[Metric, ...]
    start: datetime
    end: datetime
    first_day: date  # the range's first local day (week buckets start no earlier)
    last_day: date
    timezone: str
    dimensions: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = ()  # combined with "and"
    order_by: tuple[tuple[str, Literal["asc", "desc"]], ...] = ()
    limit: int = 10_000
    offset: int = 0
    time_labels: bool = False
    total_rows: bool = False
    bucket: Bucket | None = None  # what the "time" dimension means for this range
    min_visitors: int = 5
    echo: dict[str, object] = field(default_factory=dict, compare=False)  # the query as answered

    def levels(self) -> set[Level]:
        return {lv for d in self.dimensions if (lv := level(d)) is not None}

    def filter_levels(self) -> set[Level]:
        return {lv for c in conditions(self.filters) if (lv := level(c.dimension)) is not None}


class QueryError(ValueError):
    """A bad request; the message names the field (and never quotes more than the caller sent)."""
