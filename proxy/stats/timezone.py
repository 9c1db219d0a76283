"""The site's time zone: the one place that turns local days into UTC instants and buckets time.

Every date range, time bucket and time label of the stats API goes through here, with the site's
``timezone`` setting (IANA name, default UTC). SQL buckets read the zone as the bound ``{tz:String}``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from proxy.stats.query import Bucket


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_today(tz: ZoneInfo, now: datetime) -> date:
    return now.astimezone(tz).date()


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant at which ``day`` begins in ``tz`` (23, 24 or 25 hours before the next)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def day_range(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Local days ``first``..``last`` (inclusive) as UTC ``[start, end)``."""
    return day_start(first, tz), day_start(last + timedelta(days=1), tz)


def iso_local(instant: datetime, tz: ZoneInfo) -> str:
    """An instant as ISO 8601 in the site's zone, seconds precision: ``2024-09-04T00:00:00+02:00``."""
    return instant.astimezone(tz).replace(microsecond=0).isoformat()


def auto_bucket(start: datetime, end: datetime) -> Bucket:
    """What the ``time`` dimension means: hours for a day or less, days up to ~3 months, else months."""
    span = end - start
    if span <= timedelta(hours=25):
        return "hour"
    if span <= timedelta(days=100):
        return "day"
    return "month"


def bucket_sql(bucket: Bucket, column: str) -> str:
    """ClickHouse expression labelling ``column`` (a UTC DateTime64) with its local bucket, as text.

    Weeks start on Monday but never before the range's first day (``{first_day:Date}``), as Plausible's."""
    local_day = f"toDate({column}, {{tz:String}})"
    if bucket == "hour":
        return f"formatDateTime(toTimeZone({column}, {{tz:String}}), '%Y-%m-%d %H:00:00')"
    if bucket == "day":
        return f"toString({local_day})"
    if bucket == "week":
        return f"toString(greatest(toMonday({local_day}), {{first_day:Date}}))"
    return f"toString(toStartOfMonth({local_day}))"


def time_labels(bucket: Bucket, start: datetime, end: datetime, tz: ZoneInfo, first_day: date) -> list[str]:
    """Every bucket label of ``[start, end)``, in order (for ``include.time_labels`` and zero-filling)."""
    labels: list[str] = []
    if bucket == "hour":
        # 15-minute steps: zones with :30 and :45 offsets start their hours off the UTC hour; the hour
        # repeated when clocks go back is one label, as in SQL.
        step = start
        while step < end:
            label = step.astimezone(tz).strftime("%Y-%m-%d %H:00:00")
            if not labels or labels[-1] != label:
                labels.append(label)
            step += timedelta(minutes=15)
        return labels
    last = (end - timedelta(microseconds=1)).astimezone(tz).date()
    day = start.astimezone(tz).date()
    if bucket == "day":
        while day <= last:
            labels.append(day.isoformat())
            day += timedelta(days=1)
        return labels
    if bucket == "week":
        monday = day - timedelta(days=day.weekday())
        labels.append(max(monday, first_day).isoformat())
        monday += timedelta(days=7)
        while monday <= last:
            labels.append(monday.isoformat())
            monday += timedelta(days=7)
        return labels
    month = day.replace(day=1)
    while month <= last:
        labels.append(month.isoformat())
        month = (month + timedelta(days=32)).replace(day=1)
    return labels
