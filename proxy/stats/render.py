"""Answers in Plausible's shapes (v2 and v1 JSON) and as CSV; the whole-site export as a zip of CSVs.

Everything here formats a :class:`~proxy.stats.engine.Result`, which suppression has already passed.
"""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any

from proxy.stats import timezone
from proxy.stats.engine import Result
from proxy.stats.query import level

FLOAT_IN_V1 = frozenset({"bounce_rate", "visit_duration"})  # v1 shows these as 53.0


def _labels(result: Result) -> list[str]:
    q = result.query
    assert q.bucket is not None
    return timezone.time_labels(q.bucket, q.start, q.end, timezone.zone(q.timezone), q.first_day)


def v2(result: Result) -> dict[str, Any]:
    q = result.query
    meta: dict[str, Any] = {}
    if any(level(d) != "time" for d in q.dimensions):
        meta["suppression"] = result.withheld.meta()
    if q.total_rows:
        meta["total_rows"] = result.withheld.total_rows
    if q.time_labels:
        meta["time_labels"] = _labels(result)
    return {
        "results": [{"dimensions": dims, "metrics": metrics} for dims, metrics in result.rows],
        "meta": meta,
        "query": q.echo,
    }


def _v1_value(metric: str, value: Any) -> Any:
    return float(value) if metric in FLOAT_IN_V1 and value is not None else value


def v1_aggregate(result: Result) -> dict[str, Any]:
    metrics = result.rows[0][1] if result.rows else [0] * len(result.query.metrics)
    return {
        "results": {m: {"value": _v1_value(m, v)} for m, v in zip(result.query.metrics, metrics, strict=True)}
    }


def v1_breakdown(result: Result) -> dict[str, Any]:
    q = result.query
    name = q.dimensions[0].rsplit(":", 1)[1]
    rows = [
        {name: dims[0], **{m: _v1_value(m, v) for m, v in zip(q.metrics, metrics, strict=True)}}
        for dims, metrics in result.rows
    ]
    return {"results": rows, "meta": {"suppression": result.withheld.meta()}}


def v1_timeseries(result: Result) -> dict[str, Any]:
    """Every bucket of the period, zero where nothing happened (as v1 does)."""
    q = result.query
    found = {dims[0]: metrics for dims, metrics in result.rows}
    zero = [0 for _ in q.metrics]
    return {
        "results": [
            {
                "date": label,
                **{m: _v1_value(m, v) for m, v in zip(q.metrics, found.get(label, zero), strict=True)},
            }
            for label in _labels(result)
        ]
    }


def table(result: Result, v1: bool = False) -> tuple[list[str], list[list[Any]]]:
    """Header and rows: one column per dimension (v1: the property's short name), then per metric."""
    q = result.query
    header = [d.rsplit(":", 1)[1] if v1 and d.startswith(("event:", "visit:")) else d for d in q.dimensions]
    if v1 and q.dimensions and level(q.dimensions[0]) == "time":
        header = ["date"]
        found = {dims[0]: metrics for dims, metrics in result.rows}
        zero = [0 for _ in q.metrics]
        return header + list(q.metrics), [[label, *found.get(label, zero)] for label in _labels(result)]
    return header + list(q.metrics), [[*dims, *metrics] for dims, metrics in result.rows]


def csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow(["" if v is None else v for v in row])
    return out.getvalue().encode()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()
