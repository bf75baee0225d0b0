"""Every query of the loans database, in the library's words: a tenant's loans, holds, copies in transit and
circulation rules (``LoansRepository``), and what the daily pass and the sweep read across tenants
(``AllTenants``). Reads only: the service and the hold queues change rows through the session and commit."""
from sqlalchemy import and_, func, or_, select

from services.loans.models import CirculationSettings, Hold, LibraryCalendar, Loan, LoanPolicy, Transit
from services.loans.rules import Calendar
from services.loans.schemas import CirculationSettingsSchema

DEFAULT_SETTINGS = {"renew_from": "today", "renewal_grace_days": 0, "suspend_for_late_days": False}


class LoansRepository:
    """One tenant's rows. ``refs`` are the borrower refs of a patron's loans and holds (borrowers.refs_of)."""

    def __init__(self, session, tenant):
        self.session, self.tenant = session, tenant

    # --- loans ---------------------------------------------------------------------------------------

    def loan(self, loan_id):
        return self._own(self.session.get(Loan, loan_id))

    def loan_of_copy(self, barcode):
        return self.session.scalar(select(Loan).where(Loan.tenant == self.tenant, Loan.item_barcode == barcode))

    def loans_of(self, refs):
        """Oldest due first."""
        return self.session.scalars(select(Loan).where(Loan.tenant == self.tenant, Loan.borrower_ref.in_(refs))
                                    .order_by(Loan.due_date, Loan.id)).all()

    def loan_count(self, refs):
        return self.session.scalar(select(func.count()).select_from(Loan).where(
            Loan.tenant == self.tenant, Loan.borrower_ref.in_(refs)))

    def lent_refs(self, refs):
        """Those of ``refs`` that name a loan."""
        return self.session.scalars(select(Loan.borrower_ref).where(
            Loan.tenant == self.tenant, Loan.borrower_ref.in_(refs))).all()

    def overdue_count(self, refs, today):
        return self.session.scalar(select(func.count()).select_from(Loan).where(
            Loan.tenant == self.tenant, Loan.borrower_ref.in_(refs), Loan.due_date < today))

    def counts_by_item_type(self, refs):
        """Copies on loan by item type."""
        return dict(self.session.execute(
            select(Loan.item_type, func.count()).where(Loan.tenant == self.tenant, Loan.borrower_ref.in_(refs))
            .group_by(Loan.item_type)).all())

    def borrowed_works(self, refs, work_ids):
        """Those of ``work_ids`` on loan to ``refs``."""
        return set(self.session.scalars(select(Loan.work_id).where(
            Loan.tenant == self.tenant, Loan.borrower_ref.in_(refs), Loan.work_id.in_(work_ids))))

    def loans_due_between(self, library, first, last):
        return self.session.scalars(select(Loan).where(
            Loan.tenant == self.tenant, Loan.library == library, Loan.due_date.between(first, last))).all()

    # --- holds (予約) and copies in transit --------------------------------------------------------------

    def hold(self, hold_id):
        return self._own(self.session.get(Hold, hold_id))

    def holds_of(self, refs):
        return self.session.scalars(select(Hold).where(Hold.tenant == self.tenant, Hold.borrower_ref.in_(refs))
                                    .order_by(Hold.id)).all()

    def hold_count(self, refs):
        return self.session.scalar(select(func.count()).select_from(Hold).where(
            Hold.tenant == self.tenant, Hold.borrower_ref.in_(refs)))

    def hold_for_copy(self, barcode):
        """The hold a copy is kept or travelling for, if any."""
        return self.session.scalar(select(Hold).where(Hold.tenant == self.tenant, Hold.item_barcode == barcode))

    def unserved_hold(self, refs, work_id):
        """A hold of ``refs`` on the work that no copy is reserved for yet."""
        return self.session.scalar(select(Hold).where(
            Hold.tenant == self.tenant, Hold.borrower_ref.in_(refs), Hold.work_id == work_id,
            Hold.item_barcode.is_(None)))

    def first_waiting(self, work_id):
        return self.session.scalar(select(Hold).where(
            Hold.tenant == self.tenant, Hold.work_id == work_id, Hold.status == "waiting",
        ).order_by(Hold.id).limit(1))

    def waiting_count(self, work_id, before=None):
        """Holds waiting on the work (placed before the hold of id ``before``, if given)."""
        waiting = select(func.count()).select_from(Hold).where(
            Hold.tenant == self.tenant, Hold.work_id == work_id, Hold.status == "waiting")
        return self.session.scalar(waiting if before is None else waiting.where(Hold.id < before))

    def waiting_by_work(self):
        """How many holds wait on each work."""
        return dict(self.session.execute(select(Hold.work_id, func.count()).where(
            Hold.tenant == self.tenant, Hold.status == "waiting").group_by(Hold.work_id)).all())

    def next_in_series(self, series):
        """The series' first volume not yet in the queue."""
        return self.session.scalar(select(Hold).where(
            Hold.tenant == self.tenant, Hold.series == series, Hold.status == "pending",
        ).order_by(Hold.series_position).limit(1))

    def ready_holds(self, library):
        """On the library's hold shelf, the first to lapse first."""
        return self.session.scalars(select(Hold).where(
            Hold.tenant == self.tenant, Hold.pickup_library == library, Hold.status == "ready")
            .order_by(Hold.ready_until, Hold.id)).all()

    def transit(self, barcode):
        return self.session.get(Transit, (self.tenant, barcode))

    def transits_from(self, library):
        return self.session.scalars(select(Transit).where(
            Transit.tenant == self.tenant, Transit.from_library == library).order_by(Transit.since)).all()

    def transits_to(self, library):
        return self.session.scalars(select(Transit).where(
            Transit.tenant == self.tenant, Transit.to_library == library).order_by(Transit.since)).all()

    # --- the tenant's circulation rules ------------------------------------------------------------------

    def policies(self):
        return self.session.scalars(select(LoanPolicy).where(LoanPolicy.tenant == self.tenant)
                                    .order_by(LoanPolicy.id)).all()

    def policy(self, policy_id):
        return self._own(self.session.get(LoanPolicy, policy_id))

    def settings(self):
        row = self.session.get(CirculationSettings, self.tenant)
        return CirculationSettingsSchema().dump(row) if row else dict(DEFAULT_SETTINGS)

    def calendar_row(self, library):
        return self.session.get(LibraryCalendar, (self.tenant, library))

    def calendar(self, library):
        row = self.calendar_row(library)
        return Calendar(row.closed_weekdays, row.closures) if row else Calendar()

    def _own(self, row):
        """``row`` if it is this tenant's: another tenant's looks like none."""
        return row if row is not None and row.tenant == self.tenant else None


class AllTenants:
    """What the daily pass and the sweep read of every tenant at once."""

    def __init__(self, session):
        self.session = session

    def holds_ending(self, today):
        """Holds that lapse today (not needed any more) or were not picked up in time, by tenant."""
        return self.session.scalars(select(Hold).where(or_(
            and_(Hold.status.in_(("waiting", "pending")), Hold.not_needed_after < today),
            and_(Hold.status == "ready", Hold.ready_until < today),
        )).order_by(Hold.tenant, Hold.id)).all()

    def due_on(self, day):
        """(tenant, borrower ref, due date) of the loans due on ``day``."""
        return self._due(Loan.due_date == day)

    def overdue_on(self, today):
        return self._due(Loan.due_date < today)

    def live_refs(self):
        """Every borrower ref a loan or hold names."""
        loans, holds = select(Loan.borrower_ref), select(Hold.borrower_ref)
        return set(self.session.scalars(loans)) | set(self.session.scalars(holds))

    def _due(self, condition):
        return self.session.execute(select(Loan.tenant, Loan.borrower_ref, Loan.due_date).where(condition)).all()
