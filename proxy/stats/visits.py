"""The one definition of a visit, as SQL over stored events.

A visit is a visitor's run of events with no gap longer than 30 minutes (Plausible's definition). The
visitor is the daily ``visitor_hash``; its salt changes at UTC midnight, so a visitor's events never span
two UTC days and a visit is always complete within the UTC days around it. Visits are derived from the
stored events alone at query time (no per-process session state): every worker and replica, and the
embedded and remote stores, get the same visits from the same rows.

Per visitor, the events are sorted by (time, then every carried field, so ties sort the same everywhere)
and split where the gap exceeds ``GAP_MS``. A visit's source, referrer and UTM tags are its first event's;
its entry and exit pages are its first and last page view's (its first and last event's when it has no
page view); it bounces when it has at most one page view and no interactive event; its duration is the
time from its first to its last event (an engagement event sent when the page is hidden extends it).
"""

from __future__ import annotations

from collections.abc import Sequence

GAP_MS = 30 * 60 * 1000
# Events that report on a page view rather than an action of the visitor: not counted as events and do not
# stop a bounce (our tracker's and Plausible's "engagement", PostHog's "$pageleave").
NON_INTERACTIVE = ("engagement", "$pageleave")
# Visitor attributes: the same for every event of a daily visitor (geo from the IP, the rest from the UA),
# which the hash is made from.
VISITOR_COLUMNS = ("country", "region", "city", "device", "browser", "browser_version", "os", "os_version")


UTM_COLUMNS = ("utm_medium", "utm_source", "utm_campaign", "utm_content", "utm_term")


def event_columns_sql() -> str:
    """The columns every events relation of the stats queries has (custom properties are added by the
    query builder): a referrer from the page's own host counts as none."""
    return (
        f"visitor_hash AS vh, ts, type = 'pageview' AS is_pageview, {interactive_sql()} AS is_interactive, "
        "page, name, if(domain(referrer) = domain(url), '', domain(referrer)) AS ref_host, "
        f"{', '.join(UTM_COLUMNS)}, {', '.join(VISITOR_COLUMNS)}"
    )


def interactive_sql() -> str:
    names = ", ".join(f"'{n}'" for n in NON_INTERACTIVE)
    return f"(type = 'event' AND name NOT IN ({names}))"


def visits_sql(
    events: str,
    carried: Sequence[tuple[str, str]],
    visit_columns: Sequence[str],
    visitor_columns: Sequence[str] = VISITOR_COLUMNS,
) -> str:
    """One row per visit: ``vh``, the ``visitor_columns`` asked for, ``vstart``, ``x`` (the visit's
    events), and ``visit_columns`` (expressions over ``x`` built with :func:`field`).

    ``events`` is a subquery with ``vh``, ``ts``, ``is_pageview``, ``is_interactive``, the visitor columns
    and the ``carried`` columns; ``carried`` names (alias, type-free expression) what each event keeps."""
    fields = ", ".join(
        ["toUnixTimestamp64Milli(ts)", "is_pageview", "is_interactive", *(c for _, c in carried)]
    )
    visitor = "".join(f"min({c}) AS {c}, " for c in visitor_columns)
    extra = "".join(f",\n    {c}" for c in visit_columns)
    names = "".join(f"{c}, " for c in visitor_columns)
    return f"""SELECT vh, {names}fromUnixTimestamp64Milli(x[1].1, 'UTC') AS vstart{extra}
FROM (
    SELECT vh, {visitor}arraySort(groupArray(({fields}))) AS evs
    FROM ({events})
    GROUP BY vh
)
ARRAY JOIN arraySplit((e, gap) -> gap > {GAP_MS}, evs, arrayDifference(arrayMap(e -> e.1, evs))) AS x"""


def field(index: int) -> str:
    """Tuple position of carried column ``index`` (after time, page-view and interactive flags)."""
    return str(4 + index)


def pageviews_sql() -> str:
    return "arrayCount(e -> e.2, x)"


def events_sql() -> str:
    return "arrayCount(e -> e.2 OR e.3, x)"


def bounce_sql() -> str:
    return "toUInt8(arrayCount(e -> e.2, x) <= 1 AND NOT arrayExists(e -> e.3, x))"


def duration_sql() -> str:
    return "intDiv(x[-1].1 - x[1].1, 1000)"


def entry_sql(pos: str) -> str:
    return f"if(arrayExists(e -> e.2, x), arrayFirst(e -> e.2, x).{pos}, x[1].{pos})"


def exit_sql(pos: str) -> str:
    return f"if(arrayExists(e -> e.2, x), arrayLast(e -> e.2, x).{pos}, x[-1].{pos})"


def first_sql(pos: str) -> str:
    return f"x[1].{pos}"


def any_event_sql(pos: str) -> str:
    return f"arrayExists(e -> e.{pos}, x)"
