"""Small-count suppression: the one rule, applied to every answer (API v1 and v2, CSV, exports).

A breakdown row (any dimension other than time) counted from fewer than ``k`` distinct visitors is not
shown on its own: such rows are folded into one ``(other)`` row (per time bucket when a time dimension is
also asked for), whose visitors are counted again as a union, not added up; an ``(other)`` row itself below
``k`` is withheld. Totals and pure time series are not suppressed. ``k`` is ``analytics.min_visitors``
(default 5), per site ``sites.<id>.min_visitors``; 1 turns it off.

:func:`fold_sql` writes the folding into the query (the visitors of the union need the store);
:func:`withhold` drops withheld rows from what the store returned and says what was held back.
Differencing is the rule's known limit: two overlapping queries (a week and the same week minus a day)
can reveal a small count by subtraction; the README says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.stats.query import Query, level

OTHER = "(other)"

# How each metric is finished from the folded components.
_FINISH = {
    "visitors": "visitors",
    "visits": "c_visits",
    "pageviews": "c_pageviews",
    "events": "c_events",
    "bounce_rate": "toUInt32(if(c_visits > 0, round(100 * c_bounces / c_visits), 0))",
    "visit_duration": "toUInt32(if(c_visits > 0, round(c_duration / c_visits), 0))",
    "views_per_visit": "if(c_visits > 0, round(c_pageviews / c_visits, 2), 0)",
    "percentage": "if(total_visitors > 0, round(100 * visitors / total_visitors, 1), NULL)",
}


def fold_sql(
    q: Query,
    relation: str,
    dims: Sequence[str],
    components: dict[str, str],
    bind: Callable[[Any, str], str],
) -> tuple[str, list[str]]:
    """The query around ``relation``: group, fold small groups into (other), finish metrics, order, limit.

    Output columns: ``d0..``, ``m_<metric>..``, ``keep`` (0: a withheld (other) row), ``folded`` (groups
    folded into (other) rows, over the whole answer), ``withheld`` ((other) rows withheld), ``rows`` (rows
    shown, over the whole answer)."""
    k = bind(q.min_visitors, "UInt32")
    breakdown = [i for i, d in enumerate(q.dimensions) if level(d) != "time"]
    group_cols = [f"{expr} AS d{i}" for i, expr in enumerate(dims)]
    keys = ", ".join(f"d{i}" for i in range(len(dims)))
    group_by = f" GROUP BY {keys}" if dims else ""
    percent = "percentage" in q.metrics
    others = [f"{e} AS {c}" for c, e in components.items() if c != "c_visitors"]
    sums = [f"sum({c}) AS {c}" for c in components if c != "c_visitors"]
    if components["c_visitors"] == "uniqState(vh)" and not percent:
        # A group's visitors as a number, plus at most k of them: a group below k keeps all of its
        # visitors, so the union for (other) is exact, and big groups carry no sketch to merge.
        counted = ["uniq(vh) AS group_visitors", f"groupUniqArray({k})(vh) AS few"]
        union = "if(max(small), length(groupUniqArrayArray(few)), sum(group_visitors)) AS visitors"
        total = ""
    else:
        counted = [
            f"{components['c_visitors']} AS c_visitors",
            "finalizeAggregation(c_visitors) AS group_visitors",
        ]
        union = "uniqMerge(c_visitors) AS visitors"
        total = f", uniqMerge({components['c_visitors']}) OVER () AS total_visitors" if percent else ""
    level1 = f"SELECT {', '.join([*group_cols, *others, *counted])}{total} FROM ({relation}){group_by}"
    small = f"group_visitors < {k}" if breakdown else "0"
    folded_dims = [
        f"if(small, '{OTHER}', d{i}) AS d{i}" if i in breakdown else f"d{i}" for i in range(len(dims))
    ]
    any_total = ", any(total_visitors) AS total_visitors" if percent else ""
    level2 = (
        f"SELECT {', '.join([*folded_dims, union, *sums])}, count() AS groups, "
        f"max(small) AS is_other{any_total} "
        f"FROM (SELECT *, {small} AS small FROM ({level1})){group_by}"
    )
    metric_cols = [f"m_{m}" for m in q.metrics]
    finished = [f"{_FINISH[m]} AS m_{m}" for m in q.metrics]
    keep = f"NOT (is_other AND visitors < {k})"
    level3 = (
        f"SELECT {', '.join([*(f'd{i}' for i in range(len(dims))), *finished])}, {keep} AS keep, "
        f"sumIf(groups, is_other) OVER () AS folded, countIf(NOT keep) OVER () AS withheld, "
        f"countIf(keep) OVER () AS rows FROM ({level2})"
    )
    order = ["keep DESC"]
    for name, direction in q.order_by:
        col = f"m_{name}" if name in q.metrics else f"d{q.dimensions.index(name)}"
        order.append(f"{col} {direction.upper()}")
    order += [f"d{i} ASC" for i in range(len(dims))]
    limit = bind(q.offset + q.limit, "UInt64")
    return f"SELECT * FROM ({level3}) ORDER BY {', '.join(order)} LIMIT {limit}", metric_cols


@dataclass(frozen=True, slots=True)
class Withheld:
    min_visitors: int
    rows_folded: int  # breakdown rows not shown on their own (folded into (other))
    other_withheld: int  # (other) rows not shown because they too are below min_visitors
    total_rows: int  # rows shown over the whole answer (before pagination)

    def meta(self) -> dict[str, int]:
        return {
            "min_visitors": self.min_visitors,
            "rows_folded": self.rows_folded,
            "other_rows_withheld": self.other_withheld,
        }


def withhold(q: Query, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Withheld]:
    """The rows to show (this page of them) and what was held back. ``rows`` as :func:`fold_sql` gives."""
    first = rows[0] if rows else {}
    info = Withheld(
        q.min_visitors,
        int(first.get("folded", 0)),
        int(first.get("withheld", 0)),
        int(first.get("rows", 0)),
    )
    shown = [r for r in rows if r["keep"]]
    return shown[q.offset : q.offset + q.limit], info
