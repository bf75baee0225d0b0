"""The statistics service's queries on its daily counts: the service asks here and decides."""
from sqlalchemy import func, select, update

from services.statistics.models import DailyCount


class DailyCounts:
    def __init__(self, session):
        self.session = session

    def add_one(self, key):
        """One more on the count of ``key`` (every column but the count): an UPDATE that adds one, so that two
        events counted at once both count, or the day's first count (the caller commits; two first counts at
        once make the commit fail, and the caller tries again)."""
        added = self.session.execute(update(DailyCount).where(
            *(getattr(DailyCount, column) == value for column, value in key.items())
        ).values(count=DailyCount.count + 1)).rowcount
        if not added:
            self.session.add(DailyCount(**key, count=1))

    def sums(self, tenant, since, until, group_by, libraries=None):
        """The counts of the period, summed per ``group_by`` columns and measure, in their order; of
        ``libraries`` only, when given."""
        columns = [getattr(DailyCount, name) for name in group_by] + [DailyCount.measure]
        conditions = [DailyCount.tenant == tenant, DailyCount.day.between(since, until)]
        if libraries is not None:
            conditions.append(DailyCount.library.in_(libraries))
        return self.session.execute(select(*columns, func.sum(DailyCount.count)).where(*conditions)
                                    .group_by(*columns).order_by(*columns)).all()
