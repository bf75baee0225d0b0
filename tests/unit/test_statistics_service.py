"""The statistics service with its neighbours replaced (nameko.testing's worker_factory): events handed to its
handlers as the broker would, a real SQLite session, the caller set per test."""
import pytest
from nameko.testing.services import worker_factory

from services.statistics.models import Base
from services.statistics.service import StatisticsService
from shiori.errors import Forbidden
from shiori.events import envelope
from shiori.rpc import CallerContext

COUNTED = {"patron_category": "adult", "age_band": "30-39", "item_type": "book", "ndc_class": "9"}
MONTH = {"from": "2026-12-01", "to": "2026-12-31", "group_by": "library"}


def statistics(session, caller):
    return worker_factory(StatisticsService, db=session, caller=CallerContext({"tenant": "kaizu", **caller}),
                          config={"MIN_CELL": "5"})


@pytest.fixture
def session(sqlite_session):
    return sqlite_session(Base.metadata)


def counts(answer):
    return {(row["library"], row["measure"]): row["count"] for row in answer["rows"]}


def fill(service):
    lent = envelope("loan_created", 1, "kaizu", {"library": "east", "loaned_on": "2026-12-03", **COUNTED})
    service.on_loan_created(lent)
    service.on_loan_created(lent)  # delivered again: counted once
    service.on_loan_created(envelope("loan_created", 1, "kaizu", {"library": "east", "loaned_on": "2026-12-04",
                                                                   **COUNTED}))
    service.on_loan_created(envelope("loan_created", 1, "kaizu", {"library": "main", "loaned_on": "2026-12-04",
                                                                   **COUNTED}))
    for reason in ("renewal", "closure"):  # a due date a typhoon moved is no renewal
        service.on_due_date_changed(envelope("loan_due_date_changed", 1, "kaizu", {
            "library": "main", "reason": reason, "changed_on": "2026-12-05", **COUNTED}))


def test_each_event_counts_once_on_its_day_and_library_and_only_renewals_count_as_renewals(session):
    admin = statistics(session, {"actor": "staff:1", "role": "admin"})
    fill(admin)
    assert counts(admin.aggregates(MONTH)) == {("east", "checkouts"): 2, ("main", "checkouts"): 1,
                                               ("main", "renewals"): 1}
    by_day = admin.aggregates({**MONTH, "group_by": "day,library"})  # finer than a month: protected
    assert by_day["disclosure_control"] == {"min_cell": 5, "rounded_to": 5}
    assert all(row["suppressed"] for row in by_day["rows"])  # every cell below five


def test_a_librarian_counts_their_own_libraries_only(session):
    fill(statistics(session, {"actor": "staff:1", "role": "admin"}))
    librarian = statistics(session, {"actor": "staff:2", "role": "librarian", "libraries": "east"})
    assert counts(librarian.aggregates(MONTH)) == {("east", "checkouts"): 2}
    with pytest.raises(Forbidden):
        librarian.aggregates({**MONTH, "library": "main"})
