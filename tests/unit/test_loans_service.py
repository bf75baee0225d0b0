"""The loans service with its neighbours replaced (nameko.testing's worker_factory: patrons and the catalogue
are MagicMocks, the databases real SQLite): what a refusal leaves behind, and whom a renewal asks."""
from datetime import datetime, timedelta, timezone
from unittest.mock import call

import pytest
from nameko.testing.services import worker_factory

from services.loans.borrowers import Borrower, Borrowers, StoreBase, Suspension
from services.loans.models import Base, Hold, LibraryCalendar, Loan, LoanPolicy, Transit
from services.loans.service import LoansService
from services.patrons.errors import PatronNotFound
from shiori.clock import LibraryTime
from shiori.config import load_config
from shiori.errors import DomainError
from shiori.rpc import CallerContext

LIBRARIAN = CallerContext({"tenant": "kaizu", "actor": "staff:3", "role": "librarian", "libraries": "main"})
BORROWER = {"id": 42, "category": "adult", "age_band": "30-39", "home_library": "main"}
COPY = {"barcode": "K1", "work_id": 5, "library": "main", "title": "こころ", "item_type": "book", "ndc_class": "9"}
CHECKOUT = {"card_number": "100000000008", "item_barcode": "K1", "library": "main"}


def desk_worker(sqlite_session, caller=LIBRARIAN):
    worker = worker_factory(LoansService, db=sqlite_session(Base.metadata), caller=caller,
                            borrowers=Borrowers(sqlite_session(StoreBase.metadata)),
                            config=load_config("loans", environ={}), clock=LibraryTime())
    worker.patrons.borrower.call_async.return_value.result.return_value = BORROWER
    worker.patrons.borrower.return_value = worker.patrons.borrower_by_id.return_value = BORROWER
    worker.catalog.item_for_circulation.call_async.return_value.result.return_value = COPY
    worker.catalog.item_for_circulation.return_value = COPY
    return worker


@pytest.fixture
def loans(sqlite_session):
    return desk_worker(sqlite_session)


def lend(loans, patron_id, barcode, due_in_days=14, work_id=8):
    """A loan already out (as a check-out would have left it)."""
    ref = f"loan-{barcode}"
    loans.borrowers.session.add(Borrower(ref=ref, tenant="kaizu", patron_id=patron_id, patron_category="adult",
                                         age_band="30-39", recorded_at=datetime.now(timezone.utc)))
    loans.borrowers.session.commit()
    today = loans.clock.today()
    loan = Loan(tenant="kaizu", borrower_ref=ref, item_barcode=barcode, work_id=work_id, item_type="book",
                library="main", loaned_on=today - timedelta(days=7), due_date=today + timedelta(days=due_in_days),
                renewals=0, created_at=datetime.now(timezone.utc))
    loans.db.add(loan)
    loans.db.commit()
    return loan


def hold(loans, patron_id, work_id=5, barcode=None, status="waiting"):
    ref = f"hold-{patron_id}-{work_id}"
    loans.borrowers.session.add(Borrower(ref=ref, tenant="kaizu", patron_id=patron_id, held_work_id=work_id,
                                         recorded_at=datetime.now(timezone.utc)))
    loans.borrowers.session.commit()
    loans.db.add(Hold(tenant="kaizu", borrower_ref=ref, work_id=work_id, pickup_library="main", status=status,
                      item_barcode=barcode, placed_on=loans.clock.today()))
    loans.db.commit()


def rows(loans):
    """Everything a circulation change could touch, as plain values."""
    return ([(loan.item_barcode, loan.due_date, loan.renewals) for loan in loans.db.query(Loan).order_by(Loan.id)],
            [(held.borrower_ref, held.status, held.item_barcode) for held in loans.db.query(Hold).order_by(Hold.id)],
            sorted(ref for (ref,) in loans.borrowers.session.query(Borrower.ref)))


def reference_copy(loans):
    loans.catalog.item_for_circulation.call_async.return_value.result.return_value = dict(COPY, item_type="reference")


def closed_today(loans):
    loans.db.add(LibraryCalendar(tenant="kaizu", library="main", closed_weekdays=[loans.clock.today().weekday()],
                                 closures=[]))
    loans.db.commit()


def overdue(loans):
    lend(loans, 42, "K9", due_in_days=-1)


def suspended(loans):
    loans.borrowers.session.add(Suspension(tenant="kaizu", patron_id=42, until=loans.clock.today()))
    loans.borrowers.session.commit()


def at_the_loan_limit(loans):
    loans.db.add(LoanPolicy(tenant="kaizu", loan_days=14, max_items=1, renewals=1, max_holds=5))
    loans.db.commit()
    lend(loans, 42, "K9")


def kept_for_another(loans):
    hold(loans, patron_id=7, barcode="K1", status="ready")


@pytest.mark.parametrize("arrange, code", [
    (reference_copy, "ITEM_NOT_FOR_LOAN"), (closed_today, "LIBRARY_CLOSED"), (overdue, "OVERDUE_ITEMS"),
    (suspended, "BORROWING_SUSPENDED"), (at_the_loan_limit, "LOAN_LIMIT_REACHED"),
    (kept_for_another, "ITEM_HELD_FOR_ANOTHER_PATRON"),
])
def test_a_checkout_a_rule_refuses_changes_nothing_and_announces_nothing(loans, arrange, code):
    arrange(loans)
    before = rows(loans)
    with pytest.raises(DomainError) as refused:
        loans.checkout(CHECKOUT)
    assert refused.value.code == code
    assert rows(loans) == before
    assert loans.publish.call_args_list == []


def test_a_checkout_of_the_copy_kept_for_the_borrower_ends_their_hold_and_erases_its_borrower(loans):
    hold(loans, patron_id=42, barcode="K1", status="ready")
    loans.checkout(CHECKOUT)
    loans_out, holds, borrowers = rows(loans)
    assert holds == [] and [barcode for barcode, _due, _renewals in loans_out] == ["K1"]
    assert borrowers == [loans.db.query(Loan).one().borrower_ref]
    assert [args[0] for args, _ in loans.publish.call_args_list] == ["loan_created", "patron_card_used"]


def test_the_hold_shelf_lists_the_copies_in_transit_to_the_desk_s_library_and_none_of_those_leaving_it(loans):
    today = loans.clock.today()
    loans.db.add_all([Transit(tenant="kaizu", item_barcode="K7", from_library="east", to_library="main", since=today),
                      Transit(tenant="kaizu", item_barcode="K8", from_library="main", to_library="east", since=today),
                      Transit(tenant="other", item_barcode="K9", from_library="east", to_library="main", since=today)])
    loans.db.commit()
    lists = loans.hold_shelf("main")
    assert lists["in_transit"] == [{"item_barcode": "K7", "from_library": "east", "since": today.isoformat()}]
    assert [copy["item_barcode"] for copy in lists["to_send"]] == ["K8"]


def test_a_renewal_asks_patrons_once(loans):
    loan = lend(loans, 42, "K1")
    renewed = loans.renew(loan.id)
    assert loans.patrons.mock_calls == [call.borrower_by_id(42)]
    assert renewed["renewals"] == 1
    assert [args[0] for args, _ in loans.publish.call_args_list] == ["loan_due_date_changed"]


def test_staff_renew_no_loan_of_a_patron_they_may_not_see(loans):
    loan = lend(loans, 42, "K1")
    loans.patrons.borrower_by_id.side_effect = PatronNotFound(details={"patron_id": 42})
    before = rows(loans)
    with pytest.raises(PatronNotFound):
        loans.renew(loan.id)
    assert rows(loans) == before and loans.publish.call_args_list == []


def test_a_patron_renews_their_own_loans_only_and_patrons_is_not_asked_about_another_s(sqlite_session):
    reader = desk_worker(sqlite_session, CallerContext({"tenant": "kaizu", "actor": "patron:42", "role": "patron"}))
    own, others = lend(reader, 42, "K1"), lend(reader, 43, "K2")
    with pytest.raises(DomainError) as refused:
        reader.renew(others.id)
    assert refused.value.code == "LOAN_NOT_FOUND" and reader.patrons.mock_calls == []
    assert reader.renew(own.id)["renewals"] == 1
    assert reader.patrons.mock_calls == [call.borrower_by_id(42)]


def test_a_renewal_a_hold_waits_against_is_refused_and_changes_nothing(loans):
    loan = lend(loans, 42, "K1", work_id=5)
    hold(loans, patron_id=7, work_id=5)
    before = rows(loans)
    with pytest.raises(DomainError) as refused:
        loans.renew(loan.id)
    assert (refused.value.code, refused.value.details) == ("HOLDS_WAITING", {"holds": 1})
    assert rows(loans) == before and loans.publish.call_args_list == []


def test_a_hold_refused_for_a_school_pickup_records_no_borrower(loans):
    loans.catalog.get_library.return_value = {"code": "s1", "kind": "school"}
    loans.catalog.describe_works.return_value = {"5": {"title": "こころ", "authors": []}}
    with pytest.raises(DomainError) as refused:
        loans.place_hold({"card_number": "100000000008", "work_id": 5, "pickup_library": "s1"})
    assert refused.value.code == "WRONG_PICKUP_LIBRARY"
    assert rows(loans) == ([], [], []) and loans.publish.call_args_list == []


def test_a_copy_circulation_does_not_expect_is_not_checked_in(loans):
    with pytest.raises(DomainError) as refused:
        loans.checkin({"item_barcode": "K1", "library": "main"})
    assert refused.value.code == "ITEM_NOT_ON_LOAN" and loans.publish.call_args_list == []


# --- the retention pass: the patrons service names who is unused, this service erases who has nothing out ---

ADMIN = CallerContext({"tenant": "kaizu", "actor": "staff:1", "role": "admin"})


def unused(loans, patron_ids, years=5):
    loans.patrons.unused_patrons.return_value = {"retention_years": years, "patron_ids": patron_ids}


def test_the_retention_pass_erases_the_unused_but_for_those_with_anything_on_loan(sqlite_session):
    loans = desk_worker(sqlite_session, caller=ADMIN)
    lend(loans, 2, "K2")
    unused(loans, [1, 2, 3])
    assert loans.apply_retention(dry_run=False) == {"retention_years": 5, "due": 3, "kept_with_loans": 1,
                                                    "deleted": 2}
    assert loans.patrons.erase_cleared_patron.call_args_list == [call(1), call(3)]


def test_a_dry_run_only_counts_and_no_period_erases_nobody(sqlite_session):
    loans = desk_worker(sqlite_session, caller=ADMIN)
    lend(loans, 1, "K2")
    unused(loans, [1, 2])
    assert loans.apply_retention() == {"retention_years": 5, "due": 2, "kept_with_loans": 1, "deleted": 0}
    unused(loans, [], years=0)
    assert loans.apply_retention(dry_run=False) == {"retention_years": 0, "due": 0, "kept_with_loans": 0,
                                                    "deleted": 0}
    assert not loans.patrons.erase_cleared_patron.called


def test_the_hourly_pass_announced_by_the_patrons_service_erases_as_the_system_once_per_event(sqlite_session):
    from types import SimpleNamespace

    from shiori.events import envelope

    loans = desk_worker(sqlite_session, caller=CallerContext({}, SimpleNamespace(sign=dict)))
    lend(loans, 2, "K2")
    loans.patrons.erase_cleared_patron.side_effect = [None, PatronNotFound()]  # 3 was erased meanwhile
    past = envelope("patrons_past_retention", 1, "kaizu", {"patron_ids": [1, 2, 3], "retention_years": 5})
    loans.on_patrons_past_retention(past)
    loans.on_patrons_past_retention(past)  # delivered again: nothing more
    assert loans.patrons.erase_cleared_patron.call_args_list == [call(1), call(3)]
    assert (loans.caller.tenant, loans.caller.actor) == ("kaizu", "system:loans:retention")
