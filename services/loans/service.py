"""Loans: check-out, check-in and renewal under each tenant's loan rules and library calendars, a patron's
current loans, and the daily overdue pass."""
import logging
from datetime import timedelta

from nameko.dependency_providers import Config
from nameko.timer import timer
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from services.loans import errors
from services.loans.models import (
    Base, CirculationSettings, DailyPass, LibraryCalendar, Loan, LoanPolicy, Suspension,
)
from services.loans.rules import (
    Calendar, Policy, checkin_action, days_late, due_date, governing_policy, renewal_refusal, renewed_due_date,
)
from services.loans.schemas import (
    PUBLISHED_EVENTS, CalendarSchema, CheckinSchema, CheckoutSchema, CirculationSettingsSchema, LoanPolicySchema,
    LoanSchema, UnplannedClosureSchema,
)
from shiori.clock import library_today, now
from shiori.db import Database, checkpoint, commit_unique
from shiori.errors import Forbidden, load
from shiori.events import EventPublisher
from shiori.roles import OPERATOR, PATRON, STAFF_ROLES, WHOLE_TENANT, may_serve_at
from shiori.rpc import Caller, ServiceRpc, rpc

log = logging.getLogger(__name__)
DEFAULT_SETTINGS = {"renew_from": "today", "renewal_grace_days": 0, "suspend_for_late_days": False}


class LoansService:
    name = "loans"

    db = Database(Base.metadata)
    caller = Caller()
    config = Config()
    publish = EventPublisher(PUBLISHED_EVENTS)
    patrons = ServiceRpc("patrons")
    catalog = ServiceRpc("catalog")

    @rpc
    def health(self):
        self.db.execute(select(1))
        return "ok"

    # --- the desk ----------------------------------------------------------------------------------

    @rpc
    def checkout(self, payload):
        data = load(CheckoutSchema(), payload)
        self._check_desk(data["library"])
        # Both owners are asked at once: the check-out waits for the slower of the two, not their sum.
        borrower_reply = self.patrons.borrower.call_async(data["card_number"])
        item_reply = self.catalog.item_for_circulation.call_async(data["item_barcode"], data["library"])
        borrower, item = borrower_reply.result(), item_reply.result()
        item_type = item.get("item_type", "book")
        if item_type == "reference":
            raise errors.ItemNotForLoan(details={"item_barcode": item["barcode"]})

        today = library_today()
        calendar = self._calendar(data["library"])
        if not calendar.is_open(today):
            raise errors.LibraryClosed(details={"library": data["library"], "date": today.isoformat()})
        self._check_standing(borrower["id"], today)
        policy = self._policy(borrower["category"], item_type, data["library"])
        self._check_limits(borrower["id"], item_type, policy)

        loan = Loan(
            tenant=self.caller.tenant, patron_id=borrower["id"], item_barcode=item["barcode"], item_type=item_type,
            patron_category=borrower["category"], work_id=item["work_id"], library=data["library"],
            loaned_on=today, due_date=due_date(today, policy.loan_days, calendar), renewals=0, created_at=now(),
        )
        self.db.add(loan)
        commit_unique(self.db, errors.ItemAlreadyOnLoan(details={"item_barcode": item["barcode"]}))

        self.publish("loan_created", loan.tenant, {
            "loan_id": loan.id, "item_barcode": loan.item_barcode, "work_id": loan.work_id,
            "library": loan.library, "loaned_on": loan.loaned_on, "due_date": loan.due_date,
        })
        self.publish("patron_card_used", loan.tenant,
                     {"patron_id": borrower["id"], "used_on": today, "library": loan.library})
        return dict(LoanSchema().dump(loan), title=item["title"])

    @rpc
    def checkin(self, payload):
        data = load(CheckinSchema(), payload)
        self._check_desk(data["library"])
        item = self.catalog.item_for_circulation(data["item_barcode"], data["library"])
        loan = self.db.scalar(
            select(Loan).where(Loan.tenant == self.caller.tenant, Loan.item_barcode == item["barcode"])
        )
        if loan is None:
            raise errors.ItemNotOnLoan(details={"item_barcode": item["barcode"]})
        today = library_today()
        late = days_late(loan.due_date, today, self._calendar(data["library"]))
        if late and self._settings()["suspend_for_late_days"]:
            self._suspend(loan.patron_id, today + timedelta(days=late))
        returned = {"loan_id": loan.id, "item_barcode": loan.item_barcode, "work_id": loan.work_id,
                    "library": data["library"], "returned_on": today}
        # Deleted, not flagged: once returned, nothing links the patron to this copy (PRIVACY.md 2).
        self.db.delete(loan)
        self.db.commit()
        checkpoint(self.db)
        self.publish("loan_returned", self.caller.tenant, returned)
        action = checkin_action(item["library"], data["library"])
        return {
            "item_barcode": item["barcode"], "title": item["title"], "action": action,
            "destination": item["library"], "library": data["library"], "days_late": late,
        }

    @rpc
    def renew(self, loan_id):
        """Renew a loan (staff, or the patron their own): refused with the reason, else the new due date."""
        loan = self._loan(loan_id)
        self.patrons.borrower_by_id(loan.patron_id)  # the card must still be valid and not suspended
        today = library_today()
        self._check_suspension(loan.patron_id, today)
        policy = self._policy(loan.patron_category, loan.item_type, loan.library)
        settings = self._settings()
        refusal = renewal_refusal(loan, policy, settings["renewal_grace_days"], today)
        if refusal:
            raise refusal
        loan.due_date = renewed_due_date(loan, policy, settings["renew_from"], today, self._calendar(loan.library))
        loan.renewals += 1
        self.db.commit()
        self._announce_due_date(loan, "renewal")
        return LoanSchema().dump(loan)

    def _check_standing(self, patron_id, today):
        """Overdue copies or a suspension after a late return stop borrowing."""
        overdue = self.db.scalar(select(func.count()).select_from(Loan).where(
            Loan.tenant == self.caller.tenant, Loan.patron_id == patron_id, Loan.due_date < today))
        if overdue:
            raise errors.OverdueItems(details={"overdue_items": overdue})
        self._check_suspension(patron_id, today)

    def _check_suspension(self, patron_id, today):
        suspension = self.db.get(Suspension, (self.caller.tenant, patron_id))
        if suspension and suspension.until >= today:
            raise errors.BorrowingSuspended(f"{suspension.until.isoformat()}まで貸出停止中です",
                                            {"until": suspension.until.isoformat()})

    def _check_limits(self, patron_id, item_type, policy):
        counts = dict(self.db.execute(
            select(Loan.item_type, func.count()).where(Loan.tenant == self.caller.tenant, Loan.patron_id == patron_id)
            .group_by(Loan.item_type)).all())
        if sum(counts.values()) >= policy.max_items:
            raise errors.LoanLimitReached(f"貸出は{policy.max_items}点までです",
                                          {"max_items": policy.max_items, "on_loan": sum(counts.values())})
        if policy.max_items_of_type is not None and counts.get(item_type, 0) >= policy.max_items_of_type:
            raise errors.LoanLimitReached(
                f"この種類の資料の貸出は{policy.max_items_of_type}点までです",
                {"item_type": item_type, "max_items_of_type": policy.max_items_of_type,
                 "on_loan": counts.get(item_type, 0)})

    def _suspend(self, patron_id, until):
        suspension = self.db.get(Suspension, (self.caller.tenant, patron_id))
        if suspension is None:
            self.db.add(Suspension(tenant=self.caller.tenant, patron_id=patron_id, until=until))
        else:
            suspension.until = max(suspension.until, until)

    def _loan(self, loan_id):
        loan = self.db.get(Loan, loan_id)
        if loan is None or loan.tenant != self.caller.tenant:
            raise errors.LoanNotFound(details={"loan_id": loan_id})
        if self.caller.role == PATRON and loan.patron_id != self.caller.patron_id:
            raise errors.LoanNotFound(details={"loan_id": loan_id})
        if self.caller.role != PATRON:
            self.patrons.ensure_visible(loan.patron_id)
        return loan

    def _announce_due_date(self, loan, reason):
        self.publish("loan_due_date_changed", loan.tenant, {
            "loan_id": loan.id, "item_barcode": loan.item_barcode, "library": loan.library,
            "due_date": loan.due_date, "reason": reason})

    # --- a patron's loans --------------------------------------------------------------------------

    @rpc
    def patron_loans(self, patron_id):
        """A patron's current loans with titles, oldest due first, if the caller may see that patron."""
        self.patrons.ensure_visible(patron_id)
        loans = self.db.scalars(
            select(Loan).where(Loan.tenant == self.caller.tenant, Loan.patron_id == patron_id)
            .order_by(Loan.due_date, Loan.id)
        ).all()
        works = self.catalog.describe_works(sorted({loan.work_id for loan in loans})) if loans else {}
        return [
            dict(LoanSchema().dump(loan), **works.get(str(loan.work_id), {"title": None, "authors": []}))
            for loan in loans
        ]

    @rpc
    def count_patron_loans(self, patron_id):
        return self.db.scalar(
            select(func.count()).select_from(Loan)
            .where(Loan.tenant == self.caller.tenant, Loan.patron_id == patron_id)
        )

    @rpc
    def patrons_with_loans(self, patron_ids):
        """Which of these patrons have anything on loan (for deleting patrons in bulk)."""
        return sorted(set(self.db.scalars(select(Loan.patron_id).where(
            Loan.tenant == self.caller.tenant, Loan.patron_id.in_(list(patron_ids))))))

    def _check_desk(self, library):
        if not may_serve_at(self.caller.role, self.caller.libraries, library):
            raise Forbidden("your account does not work at this library", {"library": library})

    # --- loan rules and calendars (administered by the tenant's admins) ----------------------------

    @rpc
    def list_policies(self):
        self.caller.require(STAFF_ROLES + (OPERATOR,))
        policies = self.db.scalars(select(LoanPolicy).where(LoanPolicy.tenant == self.caller.tenant)
                                   .order_by(LoanPolicy.id)).all()
        return {"default": LoanPolicySchema().dump(self._default_policy()),
                "policies": LoanPolicySchema(many=True).dump(policies)}

    @rpc
    def add_policy(self, payload):
        self.caller.require(WHOLE_TENANT)
        policy = LoanPolicy(tenant=self.caller.tenant, **load(LoanPolicySchema(), payload))
        self.db.add(policy)
        commit_unique(self.db, errors.LoanPolicyExists())
        return LoanPolicySchema().dump(policy)

    @rpc
    def update_policy(self, policy_id, payload):
        self.caller.require(WHOLE_TENANT)
        policy = self._policy_row(policy_id)
        for field, value in load(LoanPolicySchema(), payload, partial=True).items():
            setattr(policy, field, value)
        commit_unique(self.db, errors.LoanPolicyExists())
        return LoanPolicySchema().dump(policy)

    @rpc
    def delete_policy(self, policy_id):
        self.caller.require(WHOLE_TENANT)
        self.db.delete(self._policy_row(policy_id))
        self.db.commit()

    @rpc
    def get_settings(self):
        self.caller.require(STAFF_ROLES + (OPERATOR,))
        return self._settings()

    @rpc
    def update_settings(self, payload):
        self.caller.require(WHOLE_TENANT)
        values = load(CirculationSettingsSchema(), payload)
        self.db.merge(CirculationSettings(tenant=self.caller.tenant, **values))
        self.db.commit()
        return values

    @rpc
    def get_calendar(self, library):
        self.caller.require(STAFF_ROLES + (OPERATOR,))
        row = self.db.get(LibraryCalendar, (self.caller.tenant, library))
        return {"closed_weekdays": row.closed_weekdays, "closures": row.closures} if row else \
            {"closed_weekdays": [], "closures": []}

    @rpc
    def set_calendar(self, library, payload):
        """Replace a library's weekly closing days and closed periods. Due dates already given stay; the
        next loans and renewals follow the new calendar."""
        self.caller.require(WHOLE_TENANT)
        self.catalog.get_library(library)  # the library must exist
        values = CalendarSchema().dump(load(CalendarSchema(), payload))  # dates as ISO strings, for JSON
        self.db.merge(LibraryCalendar(tenant=self.caller.tenant, library=library,
                                      closed_weekdays=sorted(set(values["closed_weekdays"])),
                                      closures=values["closures"]))
        self.db.commit()
        return self.get_calendar(library)

    @rpc
    def close_unexpectedly(self, payload):
        """Typhoon, earthquake, outage: the libraries are closed for the period, and every loan of theirs
        due within it is due on the library's next open day instead. Answers how many loans moved."""
        self.caller.require(WHOLE_TENANT)
        data = load(UnplannedClosureSchema(), payload)
        closure = {"first": data["first"].isoformat(), "last": data["last"].isoformat(), "reason": data["reason"]}
        libraries = sorted(set(data["libraries"]))
        for library in libraries:
            self.catalog.get_library(library)
        moved = []
        for library in libraries:
            row = self.db.get(LibraryCalendar, (self.caller.tenant, library)) or LibraryCalendar(
                tenant=self.caller.tenant, library=library, closed_weekdays=[], closures=[])
            row.closures = [*row.closures, closure]
            self.db.merge(row)
            calendar = Calendar(row.closed_weekdays, row.closures)
            loans = self.db.scalars(select(Loan).where(
                Loan.tenant == self.caller.tenant, Loan.library == library,
                Loan.due_date.between(data["first"], data["last"]))).all()
            for loan in loans:
                loan.due_date = calendar.next_open(loan.due_date)
            moved += loans
        self.db.commit()
        for loan in moved:
            self._announce_due_date(loan, "closure")
        return {"loans_moved": len(moved), "libraries": libraries}

    def _policy_row(self, policy_id):
        policy = self.db.get(LoanPolicy, policy_id)
        if policy is None or policy.tenant != self.caller.tenant:
            raise errors.LoanPolicyNotFound(details={"policy_id": policy_id})
        return policy

    def _default_policy(self):
        return Policy(loan_days=int(self.config["LOAN_PERIOD_DAYS"]), max_items=int(self.config["MAX_ITEMS"]),
                      max_items_of_type=None, renewals=int(self.config["RENEWALS"]),
                      max_holds=int(self.config["MAX_HOLDS"]))

    def _policy(self, category, item_type, library):
        policies = self.db.scalars(select(LoanPolicy).where(LoanPolicy.tenant == self.caller.tenant)).all()
        return governing_policy(policies, category, item_type, library, self._default_policy())

    def _settings(self):
        row = self.db.get(CirculationSettings, self.caller.tenant)
        return CirculationSettingsSchema().dump(row) if row else dict(DEFAULT_SETTINGS)

    def _calendar(self, library):
        row = self.db.get(LibraryCalendar, (self.caller.tenant, library))
        return Calendar(row.closed_weekdays, row.closures) if row else Calendar()

    # --- scheduled -----------------------------------------------------------------------------------

    @timer(interval=600)
    def daily_pass(self):
        """Once a day, at the first tick after midnight library time (a second replica, or this one after a
        restart, finds the day taken): drop suspensions that have run out, and tell each patron's reminders
        to the notices: copies due soon, and overdue ones (on their first day overdue, then every few days)."""
        today = library_today()
        self.db.add(DailyPass(day=today))
        try:
            self.db.commit()
        except IntegrityError:
            self.db.rollback()
            return
        self.db.execute(delete(Suspension).where(Suspension.until < today))
        self.db.commit()
        soon = today + timedelta(days=int(self.config["DUE_SOON_DAYS"]))
        for tenant, patron_id, items in self.db.execute(
            select(Loan.tenant, Loan.patron_id, func.count()).where(Loan.due_date == soon)
            .group_by(Loan.tenant, Loan.patron_id)
        ).all():
            self.publish("loans_due_soon", tenant, {"patron_id": patron_id, "items": items, "due_date": soon})
        every = int(self.config["OVERDUE_REMINDER_EVERY_DAYS"])
        for tenant, patron_id, items, oldest in self.db.execute(
            select(Loan.tenant, Loan.patron_id, func.count(), func.min(Loan.due_date)).where(Loan.due_date < today)
            .group_by(Loan.tenant, Loan.patron_id)
        ).all():
            days_overdue = (today - oldest).days
            if (days_overdue - 1) % every == 0:
                self.publish("loans_overdue", tenant, {"patron_id": patron_id, "items": items,
                                                       "oldest_due_date": oldest, "days_overdue": days_overdue})

    @timer(interval=60)
    def fold_write_ahead_log(self):
        """A check-in's own checkpoint can be cut short by a concurrent reader; this one catches up."""
        checkpoint(self.db)
