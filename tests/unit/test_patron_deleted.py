"""The loans and notices services' handlers of ``patron_deleted``, with nameko.testing's worker_factory: a real
SQLite session, other services replaced. A second delivery of the same event changes nothing."""
from datetime import date, datetime, timezone
from types import SimpleNamespace

from nameko.testing.services import worker_factory

from services.loans.borrowers import Borrower, Borrowers, StoreBase, Suspension
from services.loans.models import Base as LoansBase, Hold
from services.loans.service import LoansService
from services.notices.models import Base as NoticesBase, Notice
from services.notices.service import NoticesService
from shiori.clock import LibraryTime
from shiori.config import load_config
from shiori.events import envelope
from shiori.rpc import CallerContext

TODAY = date(2026, 12, 2)


def hold(loans, patron_id, status, barcode=None, pickup="main"):
    """A hold on work 5, its patron recorded in the loans' store."""
    holder = Borrower(ref=f"{patron_id}-{pickup}", tenant="kaizu", patron_id=patron_id, held_work_id=5,
                      recorded_at=datetime.now(timezone.utc))
    loans.borrowers.session.add(holder)
    loans.borrowers.session.commit()
    return Hold(tenant="kaizu", borrower_ref=holder.ref, work_id=5, pickup_library=pickup, status=status,
                item_barcode=barcode, ready_until=TODAY if status == "ready" else None, placed_on=TODAY)


def holders(loans):
    """(patron, status, barcode) of every hold left."""
    patrons = {borrower.ref: borrower.patron_id for borrower in loans.borrowers.session.query(Borrower)}
    return [(patrons[held.borrower_ref], held.status, held.item_barcode) for held in loans.db.query(Hold)]


def test_a_deleted_patrons_ready_hold_passes_to_the_next_and_a_second_delivery_changes_nothing(sqlite_session):
    unsigned = SimpleNamespace(sign=dict)  # an event's worker starts with nobody, and acts as the service
    loans = worker_factory(LoansService, db=sqlite_session(LoansBase.metadata), caller=CallerContext({}, unsigned),
                           borrowers=Borrowers(sqlite_session(StoreBase.metadata)),
                           config=load_config("loans", environ={}), clock=LibraryTime())
    loans.catalog.get_item.return_value = {"library": "main"}
    loans.db.add_all([hold(loans, 7, "ready", "K1"), hold(loans, 8, "waiting")])
    loans.db.commit()
    loans.borrowers.suspend("kaizu", 7, TODAY)
    deleted = envelope("patron_deleted", 1, "kaizu", {"patron_id": 7})

    loans.on_patron_deleted(deleted)
    assert holders(loans) == [(8, "ready", "K1")]
    assert loans.borrowers.session.query(Suspension).count() == 0
    assert (loans.caller.tenant, loans.caller.actor) == ("kaizu", "system:loans:patron-deleted")
    told = [args[0] for args, _ in loans.publish.call_args_list]
    assert told == ["copy_status_changed", "hold_ready"]

    loans.db.add(hold(loans, 7, "waiting", pickup="east"))  # were the event applied again, this would end
    loans.db.commit()
    loans.on_patron_deleted(deleted)
    assert [patron for patron, _status, _barcode in holders(loans)].count(7) == 1
    assert loans.publish.call_count == 2


def test_a_deleted_patrons_notices_go_and_only_theirs(sqlite_session):
    notices = worker_factory(NoticesService, db=sqlite_session(NoticesBase.metadata), clock=LibraryTime())
    moment = datetime(2026, 12, 2, tzinfo=timezone.utc)
    for patron_id, channel in ((7, "email"), (7, "phone"), (8, "phone")):
        notices.db.add(Notice(tenant="kaizu", patron_id=patron_id, kind="hold_ready", facts={}, channel=channel,
                              attempts=1, next_attempt_at=moment, created_at=moment))
    notices.db.commit()
    notices.on_patron_deleted(envelope("patron_deleted", 1, "kaizu", {"patron_id": 7}))
    notices.on_patron_deleted(envelope("patron_deleted", 1, "elsewhere", {"patron_id": 8}))
    assert [(notice.patron_id, notice.channel) for notice in notices.db.query(Notice)] == [(8, "phone")]
