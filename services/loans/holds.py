"""Where a copy goes next, and how a hold queue moves: the part of circulation that check-in, cancelling,
the pickup window and series holds share. Works in the caller's session and transaction; the caller publishes
the events it is handed, then commits."""
from dataclasses import dataclass, field
from datetime import timedelta

from services.loans.models import Hold, Transit
from services.loans.repository import LoansRepository

# What the desk does with a copy, and the copy's status as the catalogue shows it.
SHELVE, HOLD_SHELF, TRANSIT = "shelve", "hold_shelf", "transit"
COPY_STATUS = {SHELVE: "available", HOLD_SHELF: "on_hold_shelf", TRANSIT: "in_transit"}


@dataclass
class Routing:
    """The desk's instruction for one copy, and the events that tell it."""

    action: str
    destination: str
    hold: Hold | None = None
    events: list = field(default_factory=list)


class HoldQueues:
    def __init__(self, session, borrowers, tenant, calendar_of, pickup_days):
        self.session, self.borrowers, self.tenant = session, borrowers, tenant
        self.circulation = LoansRepository(session, tenant)
        self.calendar_of = calendar_of  # library code -> rules.Calendar
        self.pickup_days = pickup_days

    def route_copy(self, barcode, work_id, home_library, here, today):
        """A copy is in hand at ``here`` (checked in, or its hold ended on this hold shelf): it serves the
        hold it travels for, else the first waiting hold on its work, else it goes home."""
        hold = self.circulation.hold_for_copy(barcode)
        if hold is not None and hold.status == "ready" and hold.pickup_library == here:
            return self._routing(HOLD_SHELF, here, barcode, hold)  # scanned again on its hold shelf: nothing moves
        if hold is None:
            hold = self.circulation.first_waiting(work_id)
        if hold is not None:
            hold.item_barcode = barcode
            if hold.pickup_library == here:
                return self._on_hold_shelf(hold, barcode, here, today)
            self._send(barcode, here, hold.pickup_library, today)
            hold.status, hold.ready_until = "in_transit", None
            return self._routing(TRANSIT, hold.pickup_library, barcode, hold)
        if home_library == here:
            self._arrived(barcode)
            return self._routing(SHELVE, here, barcode)
        self._send(barcode, here, home_library, today)
        return self._routing(TRANSIT, home_library, barcode)

    def position(self, hold):
        """1 for the next in line; 0 once a copy is reserved; None for a series volume not yet active."""
        if hold.status in ("ready", "in_transit"):
            return 0
        if hold.status == "pending":
            return None
        return 1 + self.circulation.waiting_count(hold.work_id, before=hold.id)

    def end(self, hold, today, home_of):
        """A hold ends (cancelled, lapsed, not picked up): its row goes, and a copy it held passes on — from
        the hold shelf where it waits, or on arrival when it is still travelling. Answers the copy's routing
        when it is decided now. ``home_of(barcode)`` names a copy's own library (the catalogue knows it)."""
        barcode, status = hold.item_barcode, hold.status
        self.session.delete(hold)
        self.session.flush()
        self._activate_next_in_series(hold)
        if barcode and status == "ready":
            return self.route_copy(barcode, hold.work_id, home_of(barcode), hold.pickup_library, today)
        return None

    def fulfil(self, hold):
        """The reserved copy is lent to the patron: the hold is done, and the next volume of a series
        joins the queue."""
        self.session.delete(hold)
        self.session.flush()
        self._activate_next_in_series(hold)

    def _activate_next_in_series(self, hold):
        if hold.series is None:
            return
        following = self.circulation.next_in_series(hold.series)
        if following is not None:
            following.status = "waiting"

    def _on_hold_shelf(self, hold, barcode, here, today):
        hold.status = "ready"
        hold.ready_until = self.calendar_of(here).next_open(today + timedelta(days=self.pickup_days))
        self._arrived(barcode)
        routing = self._routing(HOLD_SHELF, here, barcode, hold)
        patron_id = self.borrowers.get(hold.borrower_ref).patron_id
        routing.events.append(("hold_ready", {"patron_id": patron_id, "pickup_library": here,
                                              "ready_until": hold.ready_until}))
        return routing

    def _send(self, barcode, here, destination, today):
        self.session.merge(Transit(tenant=self.tenant, item_barcode=barcode, from_library=here,
                                   to_library=destination, since=today))

    def _arrived(self, barcode):
        transit = self.circulation.transit(barcode)
        if transit is not None:
            self.session.delete(transit)

    @staticmethod
    def _routing(action, destination, barcode, hold=None):
        routing = Routing(action, destination, hold)
        routing.events.append(("copy_status_changed", {"item_barcode": barcode, "status": COPY_STATUS[action],
                                                       "library": destination}))
        return routing
