"""Figures from the real engine (chDB) over rows planted by hand, checked against sums done by hand.

Visitor 1: /a from Google 10:00, /b 10:05 (referred by the site itself), engagement 10:06, /c 10:40 (34
minutes later: a second visit, direct). Visitor 2: /a from t.co 11:00, a signup 11:10 (an interactive
event: no bounce). Visitor 3: /b from a newsletter (utm_source) 12:00, alone: a bounce.
Visits: 4; page views 5; events 6 (5 page views + the signup; engagement is not an event);
bounces 2 of 4 = 50%; durations 360 + 0 + 600 + 0 over 4 visits = 240 s; 5/4 = 1.25 views per visit.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.proxy.stats.conftest import Store, ev

DAY = {"site_id": "demo", "date_range": ["2026-03-02", "2026-03-02"]}


@pytest.fixture
def planted(store: Store) -> Store:
    site = "https://demo.example"
    store.insert(
        [
            ev("demo", "2026-03-02 10:00:00", 1, "/a", referrer="https://www.google.com"),
            ev("demo", "2026-03-02 10:05:00", 1, "/b", referrer=site),
            ev("demo", "2026-03-02 10:06:00", 1, "/b", type="event", name="engagement", engagement_ms=60000),
            ev("demo", "2026-03-02 10:40:00", 1, "/c"),
            ev(
                "demo", "2026-03-02 11:00:00", 2, "/a", referrer="https://t.co", country="US", device="mobile"
            ),
            ev(
                "demo",
                "2026-03-02 11:10:00",
                2,
                "/a",
                type="event",
                name="signup",
                country="US",
                device="mobile",
            ),
            ev("demo", "2026-03-02 12:00:00", 3, "/b", utm_source="newsletter", utm_medium="email"),
            # another site and another day: never counted here
            ev("shop", "2026-03-02 10:00:00", 9, "/a"),
            ev("demo", "2026-03-03 10:00:00", 4, "/a"),
        ]
    )
    return store


def test_totals_by_hand(planted: Store) -> None:
    rows = planted.run(
        {
            **DAY,
            "metrics": [
                "visitors",
                "visits",
                "pageviews",
                "events",
                "bounce_rate",
                "visit_duration",
                "views_per_visit",
            ],
        }
    )
    assert rows == [([], [3, 4, 5, 6, 50, 240, 1.25])]


def test_event_metrics_alone_read_events(planted: Store) -> None:
    assert planted.run({**DAY, "metrics": ["visitors", "pageviews", "events"]}) == [([], [3, 5, 6])]


def test_entry_and_exit_pages(planted: Store) -> None:
    entry = planted.run({**DAY, "metrics": ["visits", "bounce_rate"], "dimensions": ["visit:entry_page"]})
    assert entry == [(["/a"], [2, 0]), (["/b"], [1, 100]), (["/c"], [1, 100])]
    exit_ = planted.run({**DAY, "metrics": ["visits"], "dimensions": ["visit:exit_page"]})
    assert sorted(exit_) == [(["/a"], [1]), (["/b"], [2]), (["/c"], [1])]


def test_sources_are_named_from_the_referrer_data_and_self_referrals_are_direct(planted: Store) -> None:
    rows = planted.run(
        {**DAY, "metrics": ["visitors", "visits", "percentage"], "dimensions": ["visit:source"]}
    )
    assert sorted(rows) == [
        (["Direct / None"], [1, 1, 33.3]),
        (["Google"], [1, 1, 33.3]),
        (["Twitter"], [1, 1, 33.3]),
        (["newsletter"], [1, 1, 33.3]),
    ]
    refs = planted.run({**DAY, "metrics": ["visits"], "dimensions": ["visit:referrer"]})
    assert sorted(refs) == [(["Direct / None"], [2]), (["google.com"], [1]), (["t.co"], [1])]


def test_visitor_dimensions_and_filters(planted: Store) -> None:
    assert planted.run({**DAY, "metrics": ["visitors", "visits"], "dimensions": ["visit:device"]}) == [
        (["desktop"], [2, 3]),
        (["mobile"], [1, 1]),
    ]
    us = planted.run(
        {**DAY, "metrics": ["visitors", "pageviews"], "filters": [["is", "visit:country", ["US"]]]}
    )
    assert us == [([], [1, 1])]


def test_event_filter_on_visit_metrics_keeps_visits_with_a_matching_event(planted: Store) -> None:
    # visits that saw /b: visitor 1's first visit and visitor 3's
    rows = planted.run(
        {**DAY, "metrics": ["visits", "bounce_rate"], "filters": [["is", "event:page", ["/b"]]]}
    )
    assert rows == [([], [2, 50])]


def test_event_dimension_with_a_visit_filter(planted: Store) -> None:
    rows = planted.run(
        {
            **DAY,
            "metrics": ["visitors", "pageviews"],
            "dimensions": ["event:page"],
            "filters": [["is", "visit:source", ["Google"]]],
        }
    )
    assert rows == [(["/a"], [1, 1]), (["/b"], [1, 1])]


def test_operators_and_logic(planted: Store) -> None:
    def pv(filters: list[object]) -> int:
        rows = planted.run({**DAY, "metrics": ["pageviews"], "filters": filters})
        return int(rows[0][1][0])

    assert pv([["contains", "event:page", ["a"]]]) == 2
    assert pv([["contains_not", "event:page", ["a"]]]) == 3
    assert pv([["matches", "event:page", ["^/[bc]$"]]]) == 3
    assert pv([["matches_not", "event:page", ["^/[bc]$"]]]) == 2
    assert pv([["is_not", "event:page", ["/a", "/b"]]]) == 1
    assert pv([["is", "visit:country", ["us"], {"case_sensitive": False}]]) == 1
    assert pv([["or", [["is", "event:page", ["/c"]], ["is", "visit:country", ["US"]]]]]) == 2
    assert pv([["not", ["is", "event:page", ["/c"]]]]) == 4
    assert pv([["and", [["is", "event:page", ["/a"]], ["is", "visit:device", ["mobile"]]]]]) == 1


def test_custom_property_dimension(store: Store) -> None:
    store.insert(
        [
            ev("demo", "2026-03-02 10:00:00", 1, type="event", name="signup", props={"plan": "pro"}),
            ev("demo", "2026-03-02 10:01:00", 2, type="event", name="signup", props={"plan": "free"}),
            ev("demo", "2026-03-02 10:02:00", 3, type="event", name="signup"),
        ]
    )
    rows = store.run({**DAY, "metrics": ["visitors", "events"], "dimensions": ["event:props:plan"]})
    assert sorted(rows) == [(["(none)"], [1, 1]), (["free"], [1, 1]), (["pro"], [1, 1])]


def test_a_visit_counts_in_the_range_it_starts_in(store: Store) -> None:
    # 23:50 and 00:10 site time (New York, UTC-5): one visit, counted on the first day only
    store.insert([ev("ny", "2026-03-03 04:50:00", 5), ev("ny", "2026-03-03 05:10:00", 5)])
    first = store.run({"site_id": "ny", "date_range": ["2026-03-02", "2026-03-02"], "metrics": ["visits"]})
    second = store.run({"site_id": "ny", "date_range": ["2026-03-03", "2026-03-03"], "metrics": ["visits"]})
    both = store.run({"site_id": "ny", "date_range": ["2026-03-02", "2026-03-03"], "metrics": ["visits"]})
    assert (first, second, both) == ([([], [1])], [([], [0])], [([], [1])])


def test_time_buckets_in_the_site_zone_across_a_dst_change(store: Store) -> None:
    # New York: 2026-03-08 02:00 EST -> 03:00 EDT.
    # UTC times of local 23:30 (7th), 01:30, 03:30 (8th), 00:10 (9th)
    store.insert(
        [
            ev("ny", "2026-03-08 04:30:00", 1),
            ev("ny", "2026-03-08 06:30:00", 2),
            ev("ny", "2026-03-08 07:30:00", 3),
            ev("ny", "2026-03-09 04:10:00", 4),
        ]
    )
    days = store.run(
        {
            "site_id": "ny",
            "date_range": ["2026-03-07", "2026-03-09"],
            "metrics": ["pageviews"],
            "dimensions": ["time:day"],
        }
    )
    assert days == [(["2026-03-07"], [1]), (["2026-03-08"], [2]), (["2026-03-09"], [1])]
    doc = {
        "site_id": "ny",
        "date_range": "day",
        "date": "2026-03-08",
        "metrics": ["pageviews"],
        "dimensions": ["time:hour"],
        "include": {"time_labels": True},
    }
    hours = store.run(doc)
    assert hours == [(["2026-03-08 01:00:00"], [1]), (["2026-03-08 03:00:00"], [1])]
    result = store.engine.run(store.query(doc))
    from proxy.stats.render import v2

    labels = v2(result)["meta"]["time_labels"]
    assert len(labels) == 23 and "2026-03-08 02:00:00" not in labels  # the day has 23 hours
    assert labels[0] == "2026-03-08 00:00:00" and labels[-1] == "2026-03-08 23:00:00"


def test_stored_visits_give_the_same_figures_and_follow_late_events(planted: Store) -> None:
    from proxy.stats.visit_store import VisitStore

    docs = [
        {**DAY, "metrics": ["visitors", "visits", "pageviews", "events", "bounce_rate", "visit_duration"]},
        {**DAY, "metrics": ["visits", "bounce_rate"], "dimensions": ["visit:entry_page"]},
        {**DAY, "metrics": ["visitors", "percentage"], "dimensions": ["visit:source"]},
        {**DAY, "metrics": ["visits"], "dimensions": ["visit:exit_page", "visit:device"]},
        {
            "site_id": "demo",
            "date_range": ["2026-03-01", "2026-03-04"],
            "metrics": ["visits"],
            "dimensions": ["time:day"],
        },
        {**DAY, "metrics": ["visitors", "percentage"], "dimensions": ["visit:country"]},
        {**DAY, "metrics": ["visitors", "pageviews", "events"], "dimensions": ["event:page"]},
        {
            "site_id": "demo",
            "date_range": ["2026-03-01", "2026-03-04"],
            "metrics": ["visitors", "events", "percentage"],
            "dimensions": ["event:name"],
            "filters": [["contains", "event:page", ["a"]]],
        },
        {
            "site_id": "ny",
            "date_range": ["2026-03-02", "2026-03-03"],
            "metrics": ["visitors", "pageviews"],
            "dimensions": ["event:page"],
        },
    ]
    made_here = [sorted(planted.run(d)) for d in docs]
    store = VisitStore(planted.settings.clickhouse_dsn, planted.settings.clickhouse.database)
    try:
        assert store.refresh(full=True) == 3  # demo 2026-03-02 and 03-03, shop 03-02
        assert store.refresh(full=True) == 0  # nothing changed
        assert planted.engine.covered(planted.query(docs[0])) != []
        from proxy.stats import sql

        sourced = planted.query(docs[2])
        statement = sql.build(
            sourced, planted.settings.clickhouse.database, {}, planted.engine.covered(sourced)
        )
        assert f"{planted.settings.clickhouse.database}.visits" in statement.sql  # stored visits are read
        assert [sorted(planted.run(d)) for d in docs] == made_here
        # a late event (a replay from the spool): the day is stale until rebuilt, then counted
        planted.insert([ev("demo", "2026-03-02 12:10:00", 3, "/d")])
        assert store.refresh(now=datetime(2026, 3, 4, 8, 0, tzinfo=UTC), full=False) == 1
        assert planted.run(docs[0]) == [([], [3, 4, 6, 7, 25, 390])]
        versions = planted.sink.client.query(
            f"SELECT uniqExact(version) FROM {planted.settings.clickhouse.database}.visits "
            "WHERE site = 'demo' AND day = '2026-03-02'"
        ).result_rows
        assert versions == [(1,)]  # the older rebuild is gone
    finally:
        store.close()
