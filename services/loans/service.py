"""Loans: check-out, check-in and renewal under each tenant's loan rules and library calendars, holds and
copies in transit, a patron's current loans and holds, and the daily pass. Each entrypoint loads what it needs
(repository.py holds the queries), asks the named rules of rules.py, then publishes and persists: its events
go to the outbox in the transaction of the change they tell (shiori/outbox.py)."""
import logging
import uuid
from datetime import timedelta

from nameko.dependency_providers import Config
from nameko.timer import timer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from services.loans import errors
from services.loans.borrowers import Borrower, BorrowerStore, new_ref
from services.loans.holds import HoldQueues
from services.loans.models import Base, CirculationSettings, CommandRecord, DailyPass, Hold, LibraryCalendar, Loan, \
    LoanPolicy, OutboxEvent, ProcessedEvent
from services.loans.repository import AllTenants, LoansRepository
from services.loans.rules import (
    CHECKIN_RULES, CHECKOUT_RULES, HOLD_RULES, RENEWAL_RULES, Calendar, Checkin, Checkout, HoldRequest, Policy,
    Renewal, check, days_late, due_date, governing_policy, renewed_due_date,
)
from services.loans.schemas import (
    PUBLISHED_EVENTS, CalendarSchema, CheckinSchema, CheckoutSchema, CirculationSettingsSchema, HoldRequestSchema,
    HoldSchema, LoanPolicySchema, LoanSchema, PatronDeletedSchema, PatronsPastRetentionSchema, UnplannedClosureSchema,
)
from services.patrons.errors import PatronHasLoans, PatronNotFound
from shiori.clock import Clock
from shiori.db import Database, checkpoint, commit_unique, flush_unique
from shiori.errors import Forbidden, InvalidInput, load
from shiori.events import EventDelivery, EventPublisher, first_delivery, read_event, subscribe
from shiori.idempotency import idempotent
from shiori.roles import OPERATOR, PATRON, STAFF_ROLES, WHOLE_TENANT, may_serve_at
from shiori.rpc import Caller, ServiceRpc, rpc

log = logging.getLogger(__name__)
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
    # The envelopes wait in the erasing store: they name patrons and borrowers' age bands (shiori/outbox.py).
    publish = EventPublisher(PUBLISHED_EVENTS, OutboxEvent, envelopes_in="BORROWERS_DATABASE_URL")
    delivery = EventDelivery()
    patrons = ServiceRpc("patrons")
    catalog = ServiceRpc("catalog")

    @rpc
    def health(self):
        self.db.execute(select(1))
        return {"status": "ok", **self.delivery()}

    # --- the desk ----------------------------------------------------------------------------------

    @rpc
    @idempotent(CommandRecord, subject=lambda loan: f"loan:{loan['loan_id']}")
    def checkout(self, payload):
        self.caller.require(STAFF_ROLES + (OPERATOR,))
        data = load(CheckoutSchema(), payload)
        self._check_desk(data["library"])
        # Both owners are asked at once: the check-out waits for the slower of the two, not their sum.
        borrower_reply = self.patrons.borrower.call_async(data["card_number"])
        item_reply = self.catalog.item_for_circulation.call_async(data["item_barcode"], data["library"])
        borrower, item = borrower_reply.result(), item_reply.result()
        circulation = self._circulation()
        held = circulation.hold_for_copy(item["barcode"])
        facts = self._checkout_snapshot(borrower, item, data["library"], held)
        check(CHECKOUT_RULES, facts)

        own_hold = held or circulation.unserved_hold(list(facts.borrower_refs), item["work_id"])
        loan, lent_to = self._new_loan(borrower, item, facts)
        if own_hold is not None:  # the hold is fulfilled: it ends as the loan starts
            self._queues().fulfil(own_hold)
        transit = circulation.transit(item["barcode"])
        if transit is not None:  # lent from here, so it travels no more
            self.db.delete(transit)
        self.db.add(loan)  # last: a second loan of the copy is refused at the flush, which undoes the rest
        with self.borrowers.recorded([lent_to]):
            flush_unique(self.db, errors.ItemAlreadyOnLoan(details={"item_barcode": item["barcode"]}))
            self._announce_loan(loan, lent_to, borrower["id"])
            self.db.commit()
        if own_hold is not None:
            checkpoint(self.db)  # the ended hold's bytes leave the write-ahead log too (PRIVACY.md 2)
            self._forget([own_hold.borrower_ref])
        return dict(LoanSchema().dump(loan), title=item["title"])

    def _checkout_snapshot(self, borrower, item, library, held):
        """What the check-out rules decide on; ``held``, the hold the copy is kept or travelling for."""
        circulation, today = self._circulation(), self.clock.today()
        mine = self.borrowers.refs_of(self.caller.tenant, [borrower["id"]])
        return Checkout(
            item_barcode=item["barcode"], item_type=item["item_type"], library=library, today=today,
            calendar=circulation.calendar(library), borrower_refs=frozenset(mine),
            overdue_items=circulation.overdue_count(mine, today), suspended_until=self._suspended_until(borrower["id"]),
            on_loan=circulation.counts_by_item_type(mine),
            policy=self._policy(borrower["category"], item["item_type"], library),
            copy_held_by=held.borrower_ref if held is not None else None)

    def _new_loan(self, borrower, item, checkout):
        """The loan a check-out makes, and who it is lent to (for the erasing store)."""
        lent_to = Borrower(ref=new_ref(), tenant=self.caller.tenant, patron_id=borrower["id"],
                           patron_category=borrower["category"], age_band=borrower["age_band"],
                           recorded_at=self.clock.now())
        today = checkout.today
        loan = Loan(
            tenant=self.caller.tenant, borrower_ref=lent_to.ref, item_barcode=item["barcode"],
            item_type=item["item_type"], ndc_class=item["ndc_class"], work_id=item["work_id"],
            library=checkout.library, loaned_on=today,
            due_date=due_date(today, checkout.policy.loan_days, checkout.calendar), renewals=0,
            created_at=self.clock.now(),
        )
        return loan, lent_to

    def _announce_loan(self, loan, lent_to, patron_id):
        self.publish("loan_created", loan.tenant, {
            "loan_id": loan.id, "item_barcode": loan.item_barcode, "work_id": loan.work_id, "library": loan.library,
            "loaned_on": loan.loaned_on, "due_date": loan.due_date, **counted(loan, lent_to),
        })
        self.publish("patron_card_used", loan.tenant,
                     {"patron_id": patron_id, "used_on": loan.loaned_on, "library": loan.library})

    @rpc
    @idempotent(CommandRecord, subject=lambda answer: answer["hold"] and f"hold:{answer['hold']['hold_id']}")
    def checkin(self, payload):
        self.caller.require(STAFF_ROLES + (OPERATOR,))
        data = load(CheckinSchema(), payload)
        self._check_desk(data["library"])
        item = self.catalog.item_for_circulation(data["item_barcode"], data["library"])
        tenant, barcode, today = self.caller.tenant, item["barcode"], self.clock.today()
        circulation = self._circulation()
        loan, late, returned = circulation.loan_of_copy(barcode), 0, None
        if loan is not None:  # a returned copy is always taken in, and pays for no question about the others
            late, returned = self._end_loan(loan, data["library"], today)
        else:
            check(CHECKIN_RULES, Checkin(
                item_barcode=barcode, in_transit=circulation.transit(barcode) is not None,
                held=circulation.hold_for_copy(barcode) is not None,
                wanted=circulation.waiting_count(item["work_id"]) > 0))
        routing = self._queues().route_copy(barcode, item["work_id"], item["library"], data["library"], today)
        answer = {"item_barcode": barcode, "title": item["title"], "action": routing.action,
                  "destination": routing.destination, "library": data["library"], "days_late": late,
                  "hold": self._hold_slip(routing.hold)}
        if returned:
            self.publish("loan_returned", tenant, returned)
        self._publish_all(tenant, routing.events)
        self.db.commit()
        checkpoint(self.db)
        if returned:
            self._forget([loan.borrower_ref])
        return answer

    def _end_loan(self, loan, library, today):
        """A copy returned at ``library``: the loan is deleted (and a late return may suspend its borrower).
        Answers the days it was late and what ``loan_returned`` tells."""
        lent_to = self.borrowers.get(loan.borrower_ref)
        circulation = self._circulation()
        late = days_late(loan.due_date, today, circulation.calendar(library))
        if late and circulation.settings()["suspend_for_late_days"]:
            # Before the return commits: should it fail, the copy is still overdue, which stops borrowing
            # as the suspension would.
            self.borrowers.suspend(loan.tenant, lent_to.patron_id, today + timedelta(days=late))
        returned = {"loan_id": loan.id, "item_barcode": loan.item_barcode, "work_id": loan.work_id,
                    "library": library, "returned_on": today, **counted(loan, lent_to)}
        # Deleted, not flagged, and its borrower erased: once returned, nothing links the patron to this
        # copy (PRIVACY.md 2).
        self.db.delete(loan)
        return late, returned

    @rpc
    @idempotent(CommandRecord, subject=lambda loan: f"loan:{loan['loan_id']}")
    def renew(self, loan_id):
        """Renew a loan (staff, or the patron their own): refused with the reason, else the new due date."""
        self.caller.require(STAFF_ROLES + (OPERATOR, PATRON))
        loan, lent_to = self._loan(loan_id)
        # Patrons are asked once: whether the caller may see the patron, and whether the card is still valid and
        # not suspended (borrower_by_id refuses both).
        self.patrons.borrower_by_id(lent_to.patron_id)
        circulation, today = self._circulation(), self.clock.today()
        policy, settings = self._policy(lent_to.patron_category, loan.item_type, loan.library), circulation.settings()
        check(RENEWAL_RULES, Renewal(
            today=today, suspended_until=self._suspended_until(lent_to.patron_id), due_date=loan.due_date,
            renewals=loan.renewals, policy=policy, grace_days=settings["renewal_grace_days"],
            holds_waiting=circulation.waiting_count(loan.work_id)))
        calendar = circulation.calendar(loan.library)
        loan.due_date = renewed_due_date(loan, policy, settings["renew_from"], today, calendar)
        loan.renewals += 1
        self._announce_due_date(loan, lent_to, "renewal")
        self.db.commit()
        return LoanSchema().dump(loan)

    # --- holds (予約) ----------------------------------------------------------------------------------

    @rpc
    @idempotent(CommandRecord, subject=lambda held: f"series:{held['series']}" if "holds" in held
                else f"hold:{held['hold_id']}")
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
        titles = self.catalog.describe_works(work_ids)
        mine, circulation = self.borrowers.refs_of(self.caller.tenant, [borrower["id"]]), self._circulation()
        check(HOLD_RULES, HoldRequest(
            pickup_library=pickup["code"], pickup_kind=pickup["kind"], work_ids=tuple(work_ids),
            catalogued_work_ids=frozenset(int(work_id) for work_id in titles),
            borrowed_work_ids=frozenset(circulation.borrowed_works(mine, work_ids)),
            holds=circulation.hold_count(mine), policy=self._policy(borrower["category"], None, pickup["code"])))

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
                for hold in holds:
                    self.publish("hold_placed", hold.tenant, {
                        "work_id": hold.work_id, "pickup_library": hold.pickup_library,
                        "patron_category": borrower["category"], "age_band": borrower["age_band"], "placed_on": today})
                self.db.commit()
        except IntegrityError:  # the store's: the patron holds one of these works already
            self.db.rollback()
            raise errors.HoldExists(details={"work_ids": work_ids}) from None
        dumped = [self._dump_hold(hold, titles) for hold in holds]
        return {"series": series, "holds": dumped} if series else dumped[0]

    @rpc
    @idempotent(CommandRecord)
    def cancel_hold(self, hold_id):
        """Cancel a hold at any time (the patron their own, or staff). A copy it held passes on."""
        self.caller.require(STAFF_ROLES + (OPERATOR, PATRON))
        hold = self._circulation().hold(hold_id)
        holder = self.borrowers.get(hold.borrower_ref) if hold is not None else None
        if holder is None or (self.caller.role == PATRON and holder.patron_id != self.caller.patron_id):
            raise errors.HoldNotFound(details={"hold_id": hold_id})
        if self.caller.role != PATRON:
            self.patrons.ensure_visible(holder.patron_id)
        self._end_holds([hold], self.clock.today())

    @rpc
    def patron_holds(self, patron_id):
        """A patron's holds with titles and queue positions, if the caller may see that patron."""
        self.caller.require(STAFF_ROLES + (OPERATOR, PATRON))
        self.patrons.ensure_visible(patron_id)
        holds = self._circulation().holds_of(self.borrowers.refs_of(self.caller.tenant, [patron_id]))
        titles = self.catalog.describe_works(sorted({hold.work_id for hold in holds})) if holds else {}
        return [self._dump_hold(hold, titles) for hold in holds]

    @rpc
    def hold_shelf(self, library):
        """For a library's desk: holds waiting on its shelf (pickup window), copies to send elsewhere, copies
        on its open shelves that waiting holds want (to take down and check in: the pull list), and copies on
        their way to it."""
        self._check_desk(library)
        self.catalog.get_library(library)  # the library must exist
        circulation = self._circulation()
        ready, sending = circulation.ready_holds(library), circulation.transits_from(library)
        arriving = circulation.transits_to(library)
        wanted = circulation.waiting_by_work()
        on_shelves = self.catalog.copies_on_shelf(sorted(wanted), library) if wanted else []
        pull = {}
        for copy in on_shelves:  # one copy a work is enough for its first hold; the next check-in serves on
            pull.setdefault(copy["work_id"], dict(copy, holds_waiting=wanted[copy["work_id"]]))
        return {"on_shelf": self._hold_slips(ready),
                "to_send": [{"item_barcode": transit.item_barcode, "to_library": transit.to_library,
                             "since": transit.since.isoformat()} for transit in sending],
                "to_pull": list(pull.values()),
                "in_transit": [{"item_barcode": transit.item_barcode, "from_library": transit.from_library,
                                "since": transit.since.isoformat()} for transit in arriving]}

    def _end_holds(self, holds, today):
        """End holds (cancelled, lapsed, not picked up) and pass on the copies they held, announced."""
        queues = self._queues()
        for hold in holds:
            routing = queues.end(hold, today, lambda barcode: self.catalog.get_item(barcode)["library"])
            if routing is not None:
                self._publish_all(self.caller.tenant, routing.events)
        self.db.commit()
        checkpoint(self.db)
        self._forget([hold.borrower_ref for hold in holds])

    def _forget(self, refs):
        """Erase the borrowers of rows whose deletion has committed. One that cannot be erased now stays
        until the sweep finds no row naming it."""
        try:
            self.borrowers.forget(refs)
        except SQLAlchemyError as error:
            log.warning("borrowers left for the sweep: %s", type(error).__name__)

    def _queues(self):
        return HoldQueues(self.db, self.borrowers, self.caller.tenant, self._circulation().calendar,
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
                 "pickup_library": hold.pickup_library, "item_barcode": hold.item_barcode, "work_id": hold.work_id,
                 "ready_until": hold.ready_until.isoformat() if hold.ready_until else None} for hold in holds]

    def _publish_all(self, tenant, events):
        for event_type, data in events:
            self.publish(event_type, tenant, data)

    def _suspended_until(self, patron_id):
        """The last day of the patron's suspension after a late return, if one was given."""
        suspension = self.borrowers.suspension(self.caller.tenant, patron_id)
        return suspension.until if suspension is not None else None

    def _loan(self, loan_id):
        """The loan and its borrower, if the caller may see them: a patron sees their own only; whether staff may
        see the patron is for patrons to say (renew asks ``borrower_by_id``, which refuses what ``ensure_visible``
        refuses)."""
        loan = self._circulation().loan(loan_id)
        lent_to = self.borrowers.get(loan.borrower_ref) if loan is not None else None
        if lent_to is None or (self.caller.role == PATRON and lent_to.patron_id != self.caller.patron_id):
            raise errors.LoanNotFound(details={"loan_id": loan_id})
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
        loans = self._circulation().loans_of(self.borrowers.refs_of(self.caller.tenant, [patron_id]))
        works = self.catalog.describe_works(sorted({loan.work_id for loan in loans})) if loans else {}
        return [
            dict(LoanSchema().dump(loan), **works.get(str(loan.work_id), {"title": None, "authors": []}))
            for loan in loans
        ]

    @rpc
    def count_patron_loans(self, patron_id):
        return self._circulation().loan_count(self.borrowers.refs_of(self.caller.tenant, [patron_id]))

    @rpc
    def patrons_with_loans(self, patron_ids):
        """Which of these patrons have anything on loan (for deleting patrons in bulk)."""
        lent = self._circulation().lent_refs(self.borrowers.refs_of(self.caller.tenant, patron_ids))
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
        holds = self._circulation().holds_of(self.borrowers.refs_of(tenant, [patron_id]))
        self._end_holds(holds, self.clock.today())  # commits it all with the event's id

    def _check_desk(self, library):
        if not may_serve_at(self.caller.role, self.caller.libraries, library):
            raise Forbidden("your account does not work at this library", {"library": library})

    # --- loan rules and calendars (administered by the tenant's admins) ----------------------------

    @rpc
    def list_policies(self):
        self.caller.require(STAFF_ROLES + (OPERATOR,))
        return {"default": LoanPolicySchema().dump(self._default_policy()),
                "policies": LoanPolicySchema(many=True).dump(self._circulation().policies())}

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
        return self._circulation().settings()

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
        row = self._circulation().calendar_row(library)
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
        moved, circulation = [], self._circulation()
        for library in libraries:
            row = circulation.calendar_row(library) or LibraryCalendar(
                tenant=self.caller.tenant, library=library, closed_weekdays=[], closures=[])
            row.closures = [*row.closures, closure]
            self.db.merge(row)
            calendar = Calendar(row.closed_weekdays, row.closures)
            loans = circulation.loans_due_between(library, data["first"], data["last"])
            for loan in loans:
                loan.due_date = calendar.next_open(loan.due_date)
            moved += loans
        lent_to = self.borrowers.of(loan.borrower_ref for loan in moved)
        for loan in moved:
            self._announce_due_date(loan, lent_to[loan.borrower_ref], "closure")
        self.db.commit()
        return {"loans_moved": len(moved), "libraries": libraries}

    def _policy_row(self, policy_id):
        policy = self._circulation().policy(policy_id)
        if policy is None:
            raise errors.LoanPolicyNotFound(details={"policy_id": policy_id})
        return policy

    def _default_policy(self):
        return Policy(loan_days=int(self.config["LOAN_PERIOD_DAYS"]), max_items=int(self.config["MAX_ITEMS"]),
                      max_items_of_type=None, renewals=int(self.config["RENEWALS"]),
                      max_holds=int(self.config["MAX_HOLDS"]))

    def _policy(self, category, item_type, library):
        return governing_policy(self._circulation().policies(), category, item_type, library, self._default_policy())

    def _circulation(self):
        """The queries, within the caller's tenant (a daily pass acts for one tenant after another)."""
        return LoansRepository(self.db, self.caller.tenant)

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
        every_tenant = AllTenants(self.db)
        ended = every_tenant.holds_ending(today)
        for tenant in sorted({hold.tenant for hold in ended}):
            self.caller.act_as(tenant, "system:loans:daily-pass", OPERATOR)
            self._end_holds([hold for hold in ended if hold.tenant == tenant], today)
        soon = today + timedelta(days=int(self.config["DUE_SOON_DAYS"]))
        for (tenant, patron_id), due in self._by_patron(every_tenant.due_on(soon)):
            self.publish("loans_due_soon", tenant, {"patron_id": patron_id, "items": len(due), "due_date": soon})
        every = int(self.config["OVERDUE_REMINDER_EVERY_DAYS"])
        for (tenant, patron_id), overdue in self._by_patron(every_tenant.overdue_on(today)):
            items, oldest = len(overdue), min(overdue)
            days_overdue = (today - oldest).days
            if (days_overdue - 1) % every == 0:
                self.publish("loans_overdue", tenant, {"patron_id": patron_id, "items": items,
                                                       "oldest_due_date": oldest, "days_overdue": days_overdue})
        self.db.commit()

    def _by_patron(self, loans):
        """The due dates of ``loans`` (tenant, borrower ref, due date), by (tenant, patron), in that order."""
        lent_to = self.borrowers.of(ref for _tenant, ref, _due in loans)
        grouped = {}
        for tenant, ref, due in loans:
            grouped.setdefault((tenant, lent_to[ref].patron_id), []).append(due)
        return sorted(grouped.items())

    @timer(interval=600, eager=True)
    def sweep_borrowers(self):
        """Erase borrowers that no loan or hold names any more: left by a commit that failed, or by an
        erase that did not happen after one that succeeded."""
        if swept := self.borrowers.sweep(AllTenants(self.db).live_refs(), self.clock.now()):
            log.info("erased %d orphaned borrowers", swept)

    @timer(interval=60)
    def fold_write_ahead_log(self):
        """A check-in's own checkpoint can be cut short by a concurrent reader; this one catches up."""
        checkpoint(self.db)

    # --- a patron erased: on request, and by the retention pass ---------------------------------------

    @rpc
    def erase_patron(self, patron_id):
        """Erase a patron, on request or by the retention pass: refused while anything is on loan to them,
        which only this service knows, so the patrons service erases only when asked from here. Their holds
        end when it announces the deletion (``on_patron_deleted``)."""
        self.caller.require(STAFF_ROLES + WHOLE_TENANT)
        loans_out = self.count_patron_loans(patron_id)
        if loans_out:
            self.patrons.ensure_visible(patron_id)  # one the caller may not see is not found, loans or none
            raise PatronHasLoans(details={"loans": loans_out})
        self.patrons.erase_cleared_patron(patron_id)

    @rpc
    def apply_retention(self, dry_run=True):
        """Erase the tenant's patrons unused for the retention period who have nothing on loan (with
        ``dry_run`` only count them): the patrons service says who is unused, this service who has
        anything out. The patrons service's hourly pass asks the same of it by ``patrons_past_retention``."""
        self.caller.require(WHOLE_TENANT)
        unused = self.patrons.unused_patrons()
        return {"retention_years": unused["retention_years"], **self._erase_unused(unused["patron_ids"], dry_run)}

    @subscribe("patrons", "patrons_past_retention")
    def on_patrons_past_retention(self, body):
        event = read_event(body, EVENT_VERSION, PatronsPastRetentionSchema())
        if event is None or not first_delivery(self.db, ProcessedEvent, event):
            return
        self.db.commit()  # recorded first: a pass cut short is made good by the next hour's, naming who is left
        self.caller.act_as(event["tenant"], "system:loans:retention", OPERATOR)
        outcome = self._erase_unused(event["data"]["patron_ids"], dry_run=False)
        if outcome["deleted"]:
            log.info("retention erased %d patrons of %s", outcome["deleted"], event["tenant"])

    def _erase_unused(self, patron_ids, dry_run):
        with_loans = set(self.patrons_with_loans(patron_ids)) if patron_ids else set()
        deleted = 0
        for patron_id in [] if dry_run else [patron_id for patron_id in patron_ids if patron_id not in with_loans]:
            try:
                self.erase_patron(patron_id)
                deleted += 1
            except PatronHasLoans:  # borrowed since they were counted
                with_loans.add(patron_id)
            except PatronNotFound:  # erased meanwhile, on request or by another pass
                pass
        return {"due": len(patron_ids), "kept_with_loans": len(with_loans), "deleted": deleted}
