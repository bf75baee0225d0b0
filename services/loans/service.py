"""Loans: check-out and check-in, and a patron's current loans."""
from nameko.dependency_providers import Config
from nameko.timer import timer
from sqlalchemy import func, select

from services.loans import errors
from services.loans.models import Base, Loan
from services.loans.rules import checkin_action, due_date
from services.loans.schemas import PUBLISHED_EVENTS, CheckinSchema, CheckoutSchema, LoanSchema
from shiori.clock import library_today, now
from shiori.db import Database, checkpoint, commit_unique
from shiori.errors import Forbidden, load
from shiori.roles import may_serve_at
from shiori.events import EventPublisher
from shiori.rpc import Caller, ServiceRpc, rpc


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

    @rpc
    def checkout(self, payload):
        data = load(CheckoutSchema(), payload)
        self._check_desk(data["library"])
        # Both owners are asked at once: the check-out waits for the slower of the two, not their sum.
        borrower_reply = self.patrons.borrower.call_async(data["card_number"])
        item_reply = self.catalog.item_for_circulation.call_async(data["item_barcode"], data["library"])
        borrower, item = borrower_reply.result(), item_reply.result()

        today = library_today()
        loan = Loan(
            tenant=self.caller.tenant, patron_id=borrower["id"], item_barcode=item["barcode"],
            work_id=item["work_id"], library=data["library"], loaned_on=today,
            due_date=due_date(today, int(self.config["LOAN_PERIOD_DAYS"])), created_at=now(),
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
        returned = {"loan_id": loan.id, "item_barcode": loan.item_barcode, "work_id": loan.work_id,
                    "library": data["library"], "returned_on": library_today()}
        # Deleted, not flagged: once returned, nothing links the patron to this copy (PRIVACY.md 2).
        self.db.delete(loan)
        self.db.commit()
        checkpoint(self.db)
        self.publish("loan_returned", self.caller.tenant, returned)
        action = checkin_action(item["library"], data["library"])
        return {
            "item_barcode": item["barcode"], "title": item["title"], "action": action,
            "destination": item["library"], "library": data["library"],
        }

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

    def _check_desk(self, library):
        if not may_serve_at(self.caller.role, self.caller.libraries, library):
            raise Forbidden("your account does not work at this library", {"library": library})

    @rpc
    def patrons_with_loans(self, patron_ids):
        """Which of these patrons have anything on loan (for deleting patrons in bulk)."""
        return sorted(set(self.db.scalars(select(Loan.patron_id).where(
            Loan.tenant == self.caller.tenant, Loan.patron_id.in_(list(patron_ids))))))

    @timer(interval=60)
    def fold_write_ahead_log(self):
        """A check-in's own checkpoint can be cut short by a concurrent reader; this one catches up."""
        checkpoint(self.db)
