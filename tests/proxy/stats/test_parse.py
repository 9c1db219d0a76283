"""The query parser alone: every field, every error naming its field; v1 parameters into the same value."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from proxy.stats.parse import SiteContext, parse_v1, parse_v2
from proxy.stats.query import Condition, Logic, QueryError

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
CTX = SiteContext("shop", "Europe/Berlin", 5, NOW, lambda: date(2026, 1, 15))
BASE: dict[str, Any] = {"site_id": "shop", "metrics": ["visitors"], "date_range": "7d"}


def v2(**over: Any) -> Any:
    return parse_v2({**BASE, **over}, CTX)


@pytest.mark.parametrize(
    ("date_range", "first", "last"),
    [
        ("day", "2026-03-20", "2026-03-20"),
        ("7d", "2026-03-14", "2026-03-20"),
        ("30d", "2026-02-19", "2026-03-20"),
        ("month", "2026-03-01", "2026-03-31"),
        ("6mo", "2025-10-01", "2026-03-31"),
        ("12mo", "2025-04-01", "2026-03-31"),
        ("year", "2026-01-01", "2026-12-31"),
        ("all", "2026-01-15", "2026-03-20"),
        (["2026-02-01", "2026-02-03"], "2026-02-01", "2026-02-03"),
    ],
)
def test_named_and_custom_ranges_in_the_site_zone(date_range: Any, first: str, last: str) -> None:
    q = v2(date_range=date_range)
    assert (q.first_day.isoformat(), q.last_day.isoformat()) == (first, last)
    berlin = ZoneInfo("Europe/Berlin")  # local midnight: 23:00 UTC in winter, 22:00 in summer
    assert q.start == datetime.combine(date.fromisoformat(first), time(0), berlin)
    assert q.end == datetime.combine(date.fromisoformat(last) + timedelta(days=1), time(0), berlin)


def test_date_time_range_is_exact() -> None:
    q = v2(date_range=["2026-03-01T12:00:00+02:00", "2026-03-01T12:59:59+02:00"])
    assert q.start == datetime(2026, 3, 1, 10, 0, tzinfo=UTC) and q.end == datetime(
        2026, 3, 1, 11, 0, tzinfo=UTC
    )


def test_every_field_parses() -> None:
    q = v2(
        metrics=["visitors", "pageviews"],
        dimensions=["time:day", "event:props:plan"],
        filters=[
            ["is", "visit:country", ["DE"]],
            ["or", [["contains", "event:page", ["/a"], {"case_sensitive": False}]]],
        ],
        order_by=[["pageviews", "asc"]],
        pagination={"limit": 5, "offset": 10},
        include={"time_labels": True, "total_rows": True},
        date="2026-02-01",
    )
    assert q.metrics == ("visitors", "pageviews") and q.bucket == "day"
    assert q.filters[0] == Condition("is", "visit:country", ("DE",))
    assert isinstance(q.filters[1], Logic) and q.filters[1].children[0] == Condition(
        "contains", "event:page", ("/a",), False
    )
    assert (q.limit, q.offset, q.time_labels, q.total_rows) == (5, 10, True, True)
    assert q.order_by == (("pageviews", "asc"),) and q.last_day == date(2026, 2, 1)
    default = v2(dimensions=["time"])
    assert default.order_by == (("time", "asc"), ("visitors", "desc")) and default.bucket == "day"


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"metrics": []}, "metrics"),
        ({"metrics": ["visitors", "visitors"]}, "metrics"),
        ({"metrics": ["nope"]}, "metrics[0]"),
        ({"date_range": "fortnight"}, "date_range"),
        ({"date_range": ["2026-03-02", "2026-03-01"]}, "date_range"),
        ({"date_range": ["2026-03-01T00:00:00", "2026-03-02T00:00:00"]}, "date_range"),
        ({"date": "yesterday"}, "date"),
        ({"dimensions": ["visit:nope"]}, "dimensions[0]"),
        ({"dimensions": ["time:day", "time:hour"]}, "dimensions"),
        ({"filters": [["equals", "event:page", ["/"]]]}, "filters[0]"),
        ({"filters": [["is", "time:day", ["x"]]]}, "filters[0]"),
        ({"filters": [["is", "event:page", []]]}, "filters[0]"),
        ({"filters": [["and", [["is", "event:nope", ["x"]]]]]}, "filters[0][1][0]"),
        ({"filters": [["is", "event:page", ["/"], {"case": 1}]]}, "filters[0]"),
        ({"order_by": [["pageviews", "desc"]]}, "order_by[0]"),
        ({"pagination": {"limit": 10_001}}, "pagination.limit"),
        ({"pagination": {"offset": -1}}, "pagination.offset"),
        ({"include": {"time_labels": True}}, "include.time_labels"),
        ({"include": {"colours": True}}, "include.colours"),
        ({"metrics": ["bounce_rate"], "dimensions": ["event:page"]}, "bounce_rate"),
        ({"metrics": ["percentage"]}, "percentage"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_errors_name_the_field(over: dict[str, Any], field: str) -> None:
    with pytest.raises(QueryError) as err:
        v2(**over)
    assert field in str(err.value)


def test_v1_maps_into_the_same_query() -> None:
    q = parse_v1(
        {
            "site_id": "shop",
            "period": "7d",
            "metrics": "visitors,bounce_rate",
            "property": "visit:source",
            "filters": r"event:page==/blog*;visit:country!=FR|DE;visit:utm_campaign==a\|b",
            "limit": "10",
            "page": "3",
        },
        "breakdown",
        CTX,
    )
    assert q.dimensions == ("visit:source",) and (q.limit, q.offset) == (10, 20)
    assert q.filters == (
        Condition("matches", "event:page", ("^/blog.*$",)),
        Condition("is_not", "visit:country", ("FR", "DE")),
        Condition("is", "visit:utm_campaign", ("a|b",)),
    )
    assert parse_v1({"period": "6mo"}, "timeseries", CTX).bucket == "month"
    assert parse_v1({"period": "day"}, "timeseries", CTX).bucket == "hour"
    custom = parse_v1({"period": "custom", "date": "2026-01-01,2026-01-31"}, "aggregate", CTX)
    assert (custom.first_day, custom.last_day) == (date(2026, 1, 1), date(2026, 1, 31))
    for params, field in (
        ({"period": "decade"}, "period"),
        ({"period": "custom"}, "date"),
        ({"interval": "minute"}, "interval"),
        ({"filters": "nonsense"}, "filters"),
    ):
        with pytest.raises(QueryError, match=field):
            parse_v1(params, "timeseries", CTX)
    with pytest.raises(QueryError, match="property"):
        parse_v1({}, "breakdown", CTX)
