"""Dates as the library sees them: the calendar day in the library's own time zone (Asia/Tokyo)."""
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

LIBRARY_TIME_ZONE = ZoneInfo("Asia/Tokyo")


def now():
    return datetime.now(timezone.utc)


def library_today(at=None) -> date:
    return (at or now()).astimezone(LIBRARY_TIME_ZONE).date()
