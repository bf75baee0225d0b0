"""Time as a service sees it: the moment (UTC) and the calendar day in the library's own time zone
(Asia/Tokyo). Every service reads it from its one ``Clock`` dependency, so that a test can move a running
service's time (``get_extension(container, Clock).travel(...)``, nameko's own testing idiom) or hand a worker a
clock of its own (``worker_factory(Service, clock=...)``) instead of writing dates into the service's tables."""
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from nameko.extensions import DependencyProvider

LIBRARY_TIME_ZONE = ZoneInfo("Asia/Tokyo")


def token_time() -> datetime:
    """The wall clock, never moved: what tokens are issued and revoked by, as PyJWT checks them against it.
    A test that moves a service's ``Clock`` must not make every token look issued before a revocation."""
    return datetime.now(timezone.utc)


def library_day(moment: datetime) -> date:
    """The calendar day at the library when ``moment`` happened."""
    return moment.astimezone(LIBRARY_TIME_ZONE).date()


class LibraryTime:
    """The wall clock, moved by ``shift`` (zero outside tests)."""

    def __init__(self):
        self.shift = timedelta(0)

    def now(self) -> datetime:
        return token_time() + self.shift

    def today(self) -> date:
        return library_day(self.now())

    def travel(self, by=None, to=None):
        """Move this clock ``by`` a timedelta, or ``to`` a library day at the same time of day."""
        self.shift += by if to is None else timedelta(days=(to - self.today()).days)


class Clock(DependencyProvider):
    """One ``LibraryTime`` per service container: every worker of the container reads the same clock."""

    def setup(self):
        self.time = LibraryTime()

    def get_dependency(self, worker_ctx):
        return self.time

    def travel(self, by=None, to=None):
        self.time.travel(by, to)
