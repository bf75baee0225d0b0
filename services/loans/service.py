"""Loans: check-out, check-in and renewal under each tenant's loan rules and library calendars, holds and
copies in transit, a patron's current loans and holds, and the daily pass."""
import logging
import uuid
from datetime import timedelta

from nameko.dependency_providers import Config
from nameko.timer import timer
from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from services.catalog.errors import WorkNotFound
from services.loans import errors
from services.loans.borrowers import Borrower, BorrowerStore, new_ref
from services.loans.holds import HoldQueues
from services.loans.models import (
    Base, CirculationSettings, DailyPass, Hold, LibraryCalendar, Loan, LoanPolicy, ProcessedEvent, Transit,
)
from services.loans.rules import (
    Calendar, Policy, days_late, due_date, governing_policy, renewal_refusal, renewed_due_date,
)
from services.loans.schemas import (
    PUBLISHED_EVENTS, CalendarSchema, CheckinSchema, CheckoutSchema, CirculationSettingsSchema, HoldRequestSchema,
    HoldSchema, LoanPolicySchema, LoanSchema, PatronDeletedSchema, UnplannedClosureSchema,
)
from shiori.clock import Clock
from shiori.db import Database, checkpoint, commit_unique
from shiori.errors import Forbidden, InvalidInput, load
from shiori.events import EventPublisher, first_delivery, read_event, subscribe
from shiori.roles import OPERATOR, PATRON, STAFF_ROLES, WHOLE_TENANT, may_serve_at
from shiori.rpc import Caller, ServiceRpc, rpc

log = logging.getLogger(__name__)
DEFAULT_SETTINGS = {"renew_from": "today", "renewal_grace_days": 0, "suspend_for_late_days": False}
EVENT_VERSION = 1  # of the events this service reads


def counted(loan, borrower):
    """What statistics count a loan by: coarse enough that none of it tells who borrowed."""
    return {"patron_category": borrower.patron_category, "age_band": borrower.age_band,
            "item_type": loan.item_type, "ndc_class": loan.ndc_class}


class LoansService:
    name = "loans"

    db = Database(Base.metadata)
    borrowers = BorrowerStore()
    caller = Caller()
    clock = Clock()
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
        self.caller.require(STAFF_ROLES + (OPERATOR,))
        data = load(CheckoutSchema(), payload)
        self._check_desk(data["library"])
        # Both owners are asked at once: the check-out waits for the slower of the two, not their sum.
        borrower_reply = self.patrons.borrower.call_async(data["card_number"])
        item_reply = self.catalog.item_for_circulation.call_async(data["item_barcode"], data["library"])
        borrower, item = borrower_reply.result(), item_reply.result()
        item_type = item["item_type"]
        if item_type == "reference":
            raise errors.ItemNotForLoan(details={"item_barcode": item["barcode"]})

        today = self.clock.today()
        calendar = self._calendar(data["library"])
        if not calendar.is_open(today):
            raise errors.LibraryClosed(details={"library": data["library"], "date": today.isoformat()})
        mine = self.borrowers.refs_of(self.caller.tenant, [borrower["id"]])
        self._check_standing(borrower["id"], mine, today)
        policy = self._policy(borrower["category"], item_type, data["library"])
        self._check_limits(mine, item_type, policy)
        reserved = self.db.scalar(select(Hold).where(Hold.tenant == self.caller.tenant,
                                                     Hold.item_barcode == item["barcode"]))
        if reserved is not None and reserved.borrower_ref not in mine:
            raise errors.ItemHeldForAnotherPatron(details={"item_barcode": item["barcode"]})
        own_hold = reserved or self.db.scalar(select(Hold).where(
            Hold.tenant == self.caller.tenant, Hold.borrower_ref.in_(mine), Hold.work_id == item["work_id"],
            Hold.item_barcode.is_(None)))

        lent_to = Borrower(ref=new_ref(), tenant=self.caller.tenant, patron_id=borrower["id"],
                           patron_category=borrower["category"], age_band=borrower["age_band"], recorded_at=self.clock.now())
        loan = Loan(
            tenant=self.caller.tenant, borrower_ref=lent_to.ref, item_barcode=item["barcode"], item_type=item_type,
            ndc_class=item["ndc_class"], work_id=item["work_id"], library=data["library"],
            loaned_on=today, due_date=due_date(today, policy.loan_days, calendar), renewals=0, created_at=self.clock.now(),
        )
        if own_hold is not None:  # the hold is fulfilled: it ends as the loan starts
            self._queues().fulfil(own_hold)
        transit = self.db.get(Transit, (self.caller.tenant, item["barcode"]))
        if transit is not None:  # lent from here, so it travels no more
            self.db.delete(transit)
        self.db.add(loan)  # last: a second loan of the copy is refused at the commit, which undoes the rest
        with self.borrowers.recorded([lent_to]):
            commit_unique(self.db, errors.ItemAlreadyOnLoan(details={"item_barcode": item["barcode"]}))
        if own_hold is not None:
            checkpoint(self.db)  # the ended hold's bytes leave the write-ahead log too (PRIVACY.md 2)
            self._forget([own_hold.borrower_ref])

        self.publish("loan_created", loan.tenant, {
            "loan_id": loan.id, "item_barcode": loan.item_barcode, "work_id": loan.work_id, "library": loan.library,
            "loaned_on": loan.loaned_on, "due_date": loan.due_date, **counted(loan, lent_to),
        })
        self.publish("patron_card_used", loan.tenant,
                     {"patron_id": borrower["id"], "used_on": today, "library": loan.library})
        return dict(LoanSchema().dump(loan), title=item["title"])

    @rpc
    def checkin(self, payload):
        self.caller.require(STAFF_ROLES + (OPERATOR,))
        data = load(CheckinSchema(), payload)
        self._check_desk(data["library"])
        item = self.catalog.item_for_circulation(data["item_barcode"], data["library"])
        tenant, barcode, today = self.caller.tenant, item["barcode"], self.clock.today()
        loan = self.db.scalar(select(Loan).where(Loan.tenant == tenant, Loan.item_barcode == barcode))
        queues = self._queues()
        # A copy neither lent nor travelling is checked in to serve a hold (taken from the shelf for it), or
        # scanned again on the hold shelf.
        if loan is None and self.db.get(Transit, (tenant, barcode)) is None and \
                queues.held_for(barcode) is None and queues.first_waiting(item["work_id"]) is None:
            raise errors.ItemNotOnLoan(details={"item_barcode": barcode})
        late, returned = 0, None
        if loan is not None:
            lent_to = self.borrowers.get(loan.borrower_ref)
            late = days_late(loan.due_date, today, self._calendar(data["library"]))
            if late and self._settings()["suspend_for_late_days"]:
                # Before the return commits: should it fail, the copy is still overdue, which stops borrowing
                # as the suspension would.
                self.borrowers.suspend(tenant, lent_to.patron_id, today + timedelta(days=late))
            returned = {"loan_id": loan.id, "item_barcode": barcode, "work_id": loan.work_id,
                        "library": data["library"], "returned_on": today, **counted(loan, lent_to)}
            # Deleted, not flagged, and its borrower erased: once returned, nothing links the patron to this
            # copy (PRIVACY.md 2).
            self.db.delete(loan)
        routing = queues.route_copy(barcode, item["work_id"], item["library"], data["library"], today)
        answer = {"item_barcode": barcode, "title": item["title"], "action": routing.action,
                  "destination": routing.destination, "library": data["library"], "days_late": late,
                  "hold": self._hold_slip(routing.hold)}
        self.db.commit()
        checkpoint(self.db)
        if returned:
            self._forget([loan.borrower_ref])
            self.publish("loan_returned", tenant, returned)
        self._publish_all(tenant, routing.events)
        return answer

    @rpc
    def renew(self, loan_id):
        """Renew a loan (staff, or the patron their own): refused with the reason, else the new due date."""
        self.caller.require(STAFF_ROLES + (OPERATOR, PATRON))
        loan, lent_to = self._loan(loan_id)
        self.patrons.borrower_by_id(lent_to.patron_id)  # the card must still be valid and not suspended
        today = self.clock.today()
        self._check_suspension(lent_to.patron_id, today)
        policy = self._policy(lent_to.patron_category, loan.item_type, loan.library)
        settings = self._settings()
        refusal = renewal_refusal(loan, policy, settings["renewal_grace_days"], today)
        if refusal:
            raise refusal
        waiting = self.db.scalar(select(func.count()).select_from(Hold).where(
            Hold.tenant == self.caller.tenant, Hold.work_id == loan.work_id, Hold.status == "waiting"))
        if waiting:
            raise errors.HoldsWaiting(details={"holds": waiting})
        loan.due_date = renewed_due_date(loan, policy, settings["renew_from"], today, self._calendar(loan.library))
        loan.renewals += 1
        self.db.commit()
        self._announce_due_date(loan, lent_to, "renewal")
        return LoanSchema().dump(loan)

    # --- holds (予約) ----------------------------------------------------------------------------------

    @rpc
    def place_hold(self, payload):
        """A hold on a work for pickup at a library, answered with its queue position (API.md); or a series
        hold on several works in reading order, answered as {series, holds}."""
        self.caller.require(STAFF_ROLES + (OPERATOR, PATRON))
        data = load(HoldRequestSchema(), payload)
        if self.caller.role == PATRON:
            borrower = self.patrons.borrower_by_id(self.caller.patron_id)
        elif "card_number" in data:
            borrower = self.patrons.borrower(data["card_number"])
        else:
            raise InvalidInput(details={"card_number": ["staff name the patron by card number"]})
        today = self.clock.today()
        if data.get("not_needed_after") and data["not_needed_after"] < today:
            raise InvalidInput(details={"not_needed_after": ["is in the past"]})
        work_ids = data.get("works") or [data["work_id"]]
        pickup = self.catalog.get_library(data["pickup_library"])
        if pickup["kind"] == "school":
            raise errors.WrongPickupLibrary(details={"pickup_library": pickup["code"]})
        titles = self.catalog.describe_works(work_ids)
        missing = [work_id for work_id in work_ids if str(work_id) not in titles]
        if missing:
            raise WorkNotFound(details={"work_ids": missing})
        self._check_hold_limits(borrower, work_ids, pickup["code"])

        series = str(uuid.uuid4()) if len(work_ids) > 1 else None
        holders = [Borrower(ref=new_ref(), tenant=self.caller.tenant, patron_id=borrower["id"], held_work_id=work_id,
                            recorded_at=self.clock.now()) for work_id in work_ids]
        holds = [Hold(tenant=self.caller.tenant, borrower_ref=holder.ref, work_id=holder.held_work_id,
                      pickup_library=pickup["code"], status="waiting" if position == 0 else "pending",
                      not_needed_after=data.get("not_needed_after"), series=series,
                      series_position=position + 1 if series else None, placed_on=today)
                 for position, holder in enumerate(holders)]
        try:
            with self.borrowers.recorded(holders):
                self.db.add_all(holds)
                self.db.commit()
        except IntegrityError:  # the store's: the patron holds one of these works already
            self.db.rollback()
            raise errors.HoldExists(details={"work_ids": work_ids}) from None
        for hold in holds:
            self.publish("hold_placed", hold.tenant, {"work_id": hold.work_id, "pickup_library": hold.pickup_library,
                                                      "patron_category": borrower["category"],
                                                      "age_band": borrower["age_band"], "placed_on": today})
        dumped = [self._dump_hold(hold, titles) for hold in holds]
        return {"series": series, "holds": dumped} if series else dumped[0]

    def _check_hold_limits(self, borrower, work_ids, pickup_library):
        tenant, mine = self.caller.tenant, self.borrowers.refs_of(self.caller.tenant, [borrower["id"]])
        borrowed = self.db.scalars(select(Loan.work_id).where(
            Loan.tenant == tenant, Loan.borrower_ref.in_(mine), Loan.work_id.in_(work_ids))).all()
        if borrowed:
            raise errors.WorkAlreadyOnLoan(details={"work_ids": sorted(set(borrowed))})
        policy = self._policy(borrower["category"], None, pickup_library)
        held = self.db.scalar(select(func.count()).select_from(Hold).where(Hold.tenant == tenant,
                                                                           Hold.borrower_ref.in_(mine)))
        if held + len(work_ids) > policy.max_holds:
            raise errors.HoldLimitReached(f"予約は{policy.max_holds}件までです",
                                          {"max_holds": policy.max_holds, "holds": held})

    @rpc
    def cancel_hold(self, hold_id):
        """Cancel a hold at any time (the patron their own, or staff). A copy it held passes on."""
        self.caller.require(STAFF_ROLES + (OPERATOR, PATRON))
        hold = self.db.get(Hold, hold_id)
        holder = self.borrowers.get(hold.borrower_ref) if hold is not None else None
        if holder is None or hold.tenant != self.caller.tenant or (
                self.caller.role == PATRON and holder.patron_id != self.caller.patron_id):
            raise errors.HoldNotFound(details={"hold_id": hold_id})
        if self.caller.role != PATRON:
            self.patrons.ensure_visible(holder.patron_id)
        self._end_holds([hold], self.clock.today())

    @rpc
    def patron_holds(self, patron_id):
        """A patron's holds with titles and queue positions, if the caller may see that patron."""
        self.caller.require(STAFF_ROLES + (OPERATOR, PATRON))
        self.patrons.ensure_visible(patron_id)
        holds = self.db.scalars(select(Hold).where(
            Hold.tenant == self.caller.tenant, Hold.borrower_ref.in_(self.borrowers.refs_of(self.caller.tenant,
                                                                                            [patron_id])))
            .order_by(Hold.id)).all()
        titles = self.catalog.describe_works(sorted({hold.work_id for hold in holds})) if holds else {}
        return [self._dump_hold(hold, titles) for hold in holds]

    @rpc
    def hold_shelf(self, library):
        """For a library's desk: holds waiting on its shelf (pickup window), copies to send elsewhere, and
        copies on its open shelves that waiting holds want (to take down and check in: the pull list)."""
        self._check_desk(library)
        self.catalog.get_library(library)  # the library must exist
        tenant = self.caller.tenant
        ready = self.db.scalars(select(Hold).where(
            Hold.tenant == tenant, Hold.pickup_library == library, Hold.status == "ready")
            .order_by(Hold.ready_until, Hold.id)).all()
        sending = self.db.scalars(select(Transit).where(
            Transit.tenant == tenant, Transit.from_library == library).order_by(Transit.since)).all()
        wanted = dict(self.db.execute(select(Hold.work_id, func.count()).where(
            Hold.tenant == tenant, Hold.status == "waiting").group_by(Hold.work_id)).all())
        on_shelves = self.catalog.copies_on_shelf(sorted(wanted), library) if wanted else []
        pull = {}
        for copy in on_shelves:  # one copy a work is enough for its first hold; the next check-in serves on
            pull.setdefault(copy["work_id"], dict(copy, holds_waiting=wanted[copy["work_id"]]))
        return {"on_shelf": self._hold_slips(ready),
                "to_send": [{"item_barcode": transit.item_barcode, "to_library": transit.to_library,
                             "since": transit.since.isoformat()} for transit in sending],
                "to_pull": list(pull.values())}

    def _end_holds(self, holds, today):
        """End holds (cancelled, lapsed, not picked up) and pass on the copies they held, then announce."""
        queues, events = self._queues(), []
        for hold in holds:
            routing = queues.end(hold, today, lambda barcode: self.catalog.get_item(barcode)["library"])
            if routing is not None:
                events += routing.events
        self.db.commit()
        checkpoint(self.db)
        self._forget([hold.borrower_ref for hold in holds])
        self._publish_all(self.caller.tenant, events)

    def _forget(self, refs):
        """Erase the borrowers of rows whose deletion has committed. One that cannot be erased now stays
        until the sweep finds no row naming it."""
        try:
            self.borrowers.forget(refs)
        except SQLAlchemyError as error:
            log.warning("borrowers left for the sweep: %s", type(error).__name__)

    def _queues(self):
        return HoldQueues(self.db, self.borrowers, self.caller.tenant, self._calendar,
                          int(self.config["PICKUP_DAYS"]))

    def _dump_hold(self, hold, titles):
        title = titles.get(str(hold.work_id), {}).get("title")
        return dict(HoldSchema().dump(hold), position=self._queues().position(hold), title=title)

    def _hold_slip(self, hold):
        return self._hold_slips([hold])[0] if hold is not None else None

    def _hold_slips(self, holds):
        """What the desk writes on the slip of each copy for the hold shelf."""
        holders = self.borrowers.of(hold.borrower_ref for hold in holds)
        return [{"hold_id": hold.id, "patron_id": holders[hold.borrower_ref].patron_id,
                 "pickup_library": hold.pickup_library,
                 "ready_until": hold.ready_until.isoformat() if hold.ready_until else None} for hold in holds]

    def _publish_all(self, tenant, events):
        for event_type, data in events:
            self.publish(event_type, tenant, data)

    def _check_standing(self, patron_id, refs, today):
        """Overdue copies (among the loans and holds ``refs``) or a suspension after a late return stop
        borrowing."""
        overdue = self.db.scalar(select(func.count()).select_from(Loan).where(
            Loan.tenant == self.caller.tenant, Loan.borrower_ref.in_(refs), Loan.due_date < today))
        if overdue:
            raise errors.OverdueItems(details={"overdue_items": overdue})
        self._check_suspension(patron_id, today)

    def _check_suspension(self, patron_id, today):
        suspension = self.borrowers.suspension(self.caller.tenant, patron_id)
        if suspension and suspension.until >= today:
            raise errors.BorrowingSuspended(f"{suspension.until.isoformat()}まで貸出停止中です",
                                            {"until": suspension.until.isoformat()})

    def _check_limits(self, refs, item_type, policy):
        counts = dict(self.db.execute(
            select(Loan.item_type, func.count()).where(Loan.tenant == self.caller.tenant, Loan.borrower_ref.in_(refs))
            .group_by(Loan.item_type)).all())
        if sum(counts.values()) >= policy.max_items:
            raise errors.LoanLimitReached(f"貸出は{policy.max_items}点までです",
                                          {"max_items": policy.max_items, "on_loan": sum(counts.values())})
        if policy.max_items_of_type is not None and counts.get(item_type, 0) >= policy.max_items_of_type:
            raise errors.LoanLimitReached(
                f"この種類の資料の貸出は{policy.max_items_of_type}点までです",
                {"item_type": item_type, "max_items_of_type": policy.max_items_of_type,
                 "on_loan": counts.get(item_type, 0)})

    def _loan(self, loan_id):
        """The loan and its borrower, if the caller may see them."""
        loan = self.db.get(Loan, loan_id)
        lent_to = self.borrowers.get(loan.borrower_ref) if loan is not None else None
        if lent_to is None or loan.tenant != self.caller.tenant:
            raise errors.LoanNotFound(details={"loan_id": loan_id})
        if self.caller.role == PATRON and lent_to.patron_id != self.caller.patron_id:
            raise errors.LoanNotFound(details={"loan_id": loan_id})
        if self.caller.role != PATRON:
            self.patrons.ensure_visible(lent_to.patron_id)
        return loan, lent_to

    def _announce_due_date(self, loan, lent_to, reason):
        self.publish("loan_due_date_changed", loan.tenant, {
            "loan_id": loan.id, "item_barcode": loan.item_barcode, "library": loan.library,
            "due_date": loan.due_date, "reason": reason, "changed_on": self.clock.today(), **counted(loan, lent_to)})

    # --- a patron's loans --------------------------------------------------------------------------

    @rpc
    def patron_loans(self, patron_id):
        """A patron's current loans with titles, oldest due first, if the caller may see that patron."""
        self.caller.require(STAFF_ROLES + (OPERATOR, PATRON))
        self.patrons.ensure_visible(patron_id)
        loans = self.db.scalars(
            select(Loan).where(Loan.tenant == self.caller.tenant,
                               Loan.borrower_ref.in_(self.borrowers.refs_of(self.caller.tenant, [patron_id])))
            .order_by(Loan.due_date, Loan.id)
        ).all()
        works = self.catalog.describe_works(sorted({loan.work_id for loan in loans})) if loans else {}
        return [
            dict(LoanSchema().dump(loan), **works.get(str(loan.work_id), {"title": None, "authors": []}))
            for loan in loans
        ]

    @rpc
    def count_patron_loans(self, patron_id):
        return self.db.scalar(select(func.count()).select_from(Loan).where(
            Loan.tenant == self.caller.tenant,
            Loan.borrower_ref.in_(self.borrowers.refs_of(self.caller.tenant, [patron_id]))))

    @rpc
    def patrons_with_loans(self, patron_ids):
        """Which of these patrons have anything on loan (for deleting patrons in bulk)."""
        lent = self.db.scalars(select(Loan.borrower_ref).where(
            Loan.tenant == self.caller.tenant,
            Loan.borrower_ref.in_(self.borrowers.refs_of(self.caller.tenant, patron_ids)))).all()
        return sorted({borrower.patron_id for borrower in self.borrowers.of(lent).values()})

    # --- a patron deleted ---------------------------------------------------------------------------

    @subscribe("patrons", "patron_deleted")
    def on_patron_deleted(self, body):
        """A deleted patron leaves nothing here: their holds end as a cancelled hold does (a copy kept or
        travelling for them passes to the next in the queue) and their suspension goes. Loans there are
        none: the patrons service deletes nobody who has anything out."""
        event = read_event(body, EVENT_VERSION, PatronDeletedSchema())
        if event is None or not first_delivery(self.db, ProcessedEvent, event):
            return
        tenant, patron_id = event["tenant"], event["data"]["patron_id"]
        self.caller.act_as(tenant, "system:loans:patron-deleted", OPERATOR)
        self.borrowers.lift_suspension(tenant, patron_id)
        holds = self.db.scalars(select(Hold).where(
            Hold.tenant == tenant, Hold.borrower_ref.in_(self.borrowers.refs_of(tenant, [patron_id])))
            .order_by(Hold.id)).all()
        self._end_holds(holds, self.clock.today())  # commits it all, with the event's id, then announces

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
        self.catalog.get_library(library)  # the library must exist
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
        lent_to = self.borrowers.of(loan.borrower_ref for loan in moved)
        for loan in moved:
            self._announce_due_date(loan, lent_to[loan.borrower_ref], "closure")
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
        restart, finds the day taken): drop suspensions that have run out, end holds that lapsed or were
        not picked up (their copies pass on), and tell each patron's reminders to the notices: copies due
        soon, and overdue ones (on their first day overdue, then every few days)."""
        self._daily_pass()

    @rpc
    def run_daily_pass(self, again=False):
        """Operators: run today's pass now, unless it has run today; ``again``, even so (after a fault cut
        today's pass short: what it did already is not undone, and reminders it sent go out once more)."""
        self.caller.require((OPERATOR,))
        self._daily_pass(again)

    def _daily_pass(self, again=False):
        today = self.clock.today()
        if again:
            self.db.merge(DailyPass(day=today))
            self.db.commit()
        else:
            self.db.add(DailyPass(day=today))
            try:
                self.db.commit()
            except IntegrityError:
                self.db.rollback()
                return
        self.borrowers.lift_suspensions(today)
        ended = self.db.scalars(select(Hold).where(or_(
            and_(Hold.status.in_(("waiting", "pending")), Hold.not_needed_after < today),
            and_(Hold.status == "ready", Hold.ready_until < today),
        )).order_by(Hold.tenant, Hold.id)).all()
        for tenant in sorted({hold.tenant for hold in ended}):
            self.caller.act_as(tenant, "system:loans:daily-pass", OPERATOR)
            self._end_holds([hold for hold in ended if hold.tenant == tenant], today)
        soon = today + timedelta(days=int(self.config["DUE_SOON_DAYS"]))
        for (tenant, patron_id), due in self._loans_by_patron(Loan.due_date == soon):
            self.publish("loans_due_soon", tenant, {"patron_id": patron_id, "items": len(due), "due_date": soon})
        every = int(self.config["OVERDUE_REMINDER_EVERY_DAYS"])
        for (tenant, patron_id), overdue in self._loans_by_patron(Loan.due_date < today):
            items, oldest = len(overdue), min(overdue)
            days_overdue = (today - oldest).days
            if (days_overdue - 1) % every == 0:
                self.publish("loans_overdue", tenant, {"patron_id": patron_id, "items": items,
                                                       "oldest_due_date": oldest, "days_overdue": days_overdue})

    def _loans_by_patron(self, condition):
        """The due dates of the loans meeting ``condition``, by (tenant, patron), in that order."""
        loans = self.db.execute(select(Loan.tenant, Loan.borrower_ref, Loan.due_date).where(condition)).all()
        lent_to = self.borrowers.of(ref for _tenant, ref, _due in loans)
        grouped = {}
        for tenant, ref, due in loans:
            grouped.setdefault((tenant, lent_to[ref].patron_id), []).append(due)
        return sorted(grouped.items())

    @timer(interval=600, eager=True)
    def sweep_borrowers(self):
        """Erase borrowers that no loan or hold names any more: left by a commit that failed, or by an
        erase that did not happen after one that succeeded."""
        live = set(self.db.scalars(select(Loan.borrower_ref))) | set(self.db.scalars(select(Hold.borrower_ref)))
        if swept := self.borrowers.sweep(live, self.clock.now()):
            log.info("erased %d orphaned borrowers", swept)

    @timer(interval=60)
    def fold_write_ahead_log(self):
        """A check-in's own checkpoint can be cut short by a concurrent reader; this one catches up."""
        checkpoint(self.db)
