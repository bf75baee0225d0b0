"""HoldQueues on a real SQLite session: where a copy in hand goes next, and how a hold queue moves."""
from datetime import date, datetime, timedelta, timezone
from itertools import count

import pytest

from services.loans.borrowers import Borrower, Borrowers, StoreBase
from services.loans.holds import HOLD_SHELF, SHELVE, TRANSIT, HoldQueues
from services.loans.models import Base, Hold, Transit
from services.loans.rules import Calendar

TODAY = date(2026, 12, 2)  # a Wednesday
PICKUP_DAYS = 7
CALENDARS = {"main": Calendar([0]), "east": Calendar()}  # main is closed on Mondays
refs = count(1)


class Desk:
    """A tenant's hold queues, with the rows they work on."""

    def __init__(self, session, borrowers):
        self.session, self.borrowers = session, borrowers
        self.queues = HoldQueues(session, borrowers, "kaizu", CALENDARS.__getitem__, PICKUP_DAYS)

    def hold(self, patron_id, work_id=5, pickup="main", status="waiting", barcode=None, series=None, position=None):
        ref = f"ref{next(refs)}"
        self.borrowers.session.add(Borrower(ref=ref, tenant="kaizu", patron_id=patron_id, held_work_id=work_id,
                                            recorded_at=datetime.now(timezone.utc)))
        self.borrowers.session.commit()
        hold = Hold(tenant="kaizu", borrower_ref=ref, work_id=work_id, pickup_library=pickup, status=status,
                    item_barcode=barcode, series=series, series_position=position, placed_on=TODAY)
        self.session.add(hold)
        self.session.flush()
        return hold

    def travelling(self, barcode, to_library, from_library="east"):
        self.session.add(Transit(tenant="kaizu", item_barcode=barcode, from_library=from_library,
                                 to_library=to_library, since=TODAY - timedelta(days=1)))
        self.session.flush()

    def transit(self, barcode):
        self.session.flush()  # a transit deleted is gone only then
        transit = self.session.get(Transit, ("kaizu", barcode))
        return None if transit is None else (transit.from_library, transit.to_library, transit.since)

    def statuses(self):
        return [(hold.borrower_ref, hold.status) for hold in self.session.query(Hold).order_by(Hold.id)]


@pytest.fixture
def desk(sqlite_session):
    return Desk(sqlite_session(Base.metadata), Borrowers(sqlite_session(StoreBase.metadata)))


def copy_status(routing):
    return [data for event_type, data in routing.events if event_type == "copy_status_changed"]


def test_a_copy_checked_in_at_the_first_waiting_hold_s_pickup_library_goes_on_its_hold_shelf(desk):
    first, second = desk.hold(patron_id=1), desk.hold(patron_id=2)
    desk.travelling("K1", to_library="main")  # sent home, and a hold took it on arrival
    routing = desk.queues.route_copy("K1", 5, "east", "main", TODAY)
    assert (routing.action, routing.destination, routing.hold) == (HOLD_SHELF, "main", first)
    # A week from today is a Wednesday; main is open then.
    assert (first.status, first.item_barcode, first.ready_until) == ("ready", "K1", date(2026, 12, 9))
    assert second.status == "waiting" and desk.transit("K1") is None
    assert routing.events == [
        ("copy_status_changed", {"item_barcode": "K1", "status": "on_hold_shelf", "library": "main"}),
        ("hold_ready", {"patron_id": 1, "pickup_library": "main", "ready_until": date(2026, 12, 9)}),
    ]


def test_the_pickup_window_ends_on_an_open_day(desk):
    hold = desk.hold(patron_id=1)
    desk.queues.route_copy("K1", 5, "main", "main", date(2026, 11, 30) - timedelta(days=PICKUP_DAYS))
    assert hold.ready_until == date(2026, 12, 1)  # not Monday 30 November, when main is closed


def test_a_copy_checked_in_elsewhere_travels_to_the_hold_s_pickup_library(desk):
    hold = desk.hold(patron_id=1, pickup="main")
    routing = desk.queues.route_copy("K1", 5, "main", "east", TODAY)
    assert (routing.action, routing.destination, routing.hold) == (TRANSIT, "main", hold)
    assert (hold.status, hold.item_barcode, hold.ready_until) == ("in_transit", "K1", None)
    assert desk.transit("K1") == ("east", "main", TODAY)
    assert copy_status(routing) == [{"item_barcode": "K1", "status": "in_transit", "library": "main"}]
    assert [event_type for event_type, _data in routing.events] == ["copy_status_changed"]


def test_a_copy_no_hold_wants_goes_home(desk):
    desk.hold(patron_id=1, work_id=6)  # another work's
    away = desk.queues.route_copy("K1", 5, "main", "east", TODAY)
    assert (away.action, away.destination, away.hold) == (TRANSIT, "main", None)
    assert desk.transit("K1") == ("east", "main", TODAY)
    home = desk.queues.route_copy("K1", 5, "main", "main", TODAY + timedelta(days=1))
    assert (home.action, home.destination) == (SHELVE, "main") and desk.transit("K1") is None
    assert copy_status(home) == [{"item_barcode": "K1", "status": "available", "library": "main"}]


def test_a_copy_scanned_again_on_its_hold_shelf_stays_and_its_window_is_not_renewed(desk):
    kept = desk.hold(patron_id=1, status="ready", barcode="K1")
    kept.ready_until = TODAY + timedelta(days=2)
    desk.hold(patron_id=2)
    routing = desk.queues.route_copy("K1", 5, "main", "main", TODAY)
    assert (routing.action, routing.destination, routing.hold) == (HOLD_SHELF, "main", kept)
    assert kept.ready_until == TODAY + timedelta(days=2)
    assert [event_type for event_type, _data in routing.events] == ["copy_status_changed"]


def test_a_copy_travelling_for_a_hold_serves_that_hold_on_arrival_before_anyone_waiting(desk):
    desk.hold(patron_id=1)
    travelling_for = desk.hold(patron_id=2, status="in_transit", barcode="K1")
    desk.travelling("K1", to_library="main")
    routing = desk.queues.route_copy("K1", 5, "east", "main", TODAY)
    assert routing.hold is travelling_for and travelling_for.status == "ready"


def test_a_queue_position_counts_the_holds_waiting_before(desk):
    first, second, third = desk.hold(patron_id=1), desk.hold(patron_id=2), desk.hold(patron_id=3)
    other_work = desk.hold(patron_id=4, work_id=6)
    assert [desk.queues.position(hold) for hold in (first, second, third, other_work)] == [1, 2, 3, 1]
    desk.queues.route_copy("K1", 5, "main", "main", TODAY)  # the first is served
    assert [desk.queues.position(hold) for hold in (first, second, third)] == [0, 1, 2]
    later_volume = desk.hold(patron_id=1, work_id=7, status="pending", series="s", position=2)
    assert desk.queues.position(later_volume) is None


def test_a_ready_hold_that_ends_passes_its_copy_on_from_the_hold_shelf(desk):
    kept = desk.hold(patron_id=1, status="ready", barcode="K1")
    following = desk.hold(patron_id=2, pickup="east")
    homes = []
    routing = desk.queues.end(kept, TODAY, lambda barcode: homes.append(barcode) or "main")
    assert homes == ["K1"]
    assert (routing.action, routing.destination, routing.hold) == (TRANSIT, "east", following)
    assert desk.transit("K1") == ("main", "east", TODAY)
    assert desk.statuses() == [(following.borrower_ref, "in_transit")]


def test_a_ready_hold_that_ends_with_no_one_waiting_sends_its_copy_home(desk):
    kept = desk.hold(patron_id=1, pickup="east", status="ready", barcode="K1")
    routing = desk.queues.end(kept, TODAY, lambda barcode: "main")
    assert (routing.action, routing.destination) == (TRANSIT, "main") and desk.statuses() == []


def test_a_hold_that_ends_before_a_copy_reaches_it_decides_nothing_now(desk):
    travelling_for = desk.hold(patron_id=1, status="in_transit", barcode="K1")
    waiting = desk.hold(patron_id=2, work_id=6)

    def no_catalogue(barcode):
        raise AssertionError("the copy's home is asked when it arrives, not now")
    assert desk.queues.end(travelling_for, TODAY, no_catalogue) is None
    assert desk.queues.end(waiting, TODAY, no_catalogue) is None
    assert desk.statuses() == []


def test_the_next_volume_of_a_series_joins_the_queue_when_one_is_lent_or_its_hold_ends(desk):
    volumes = [desk.hold(patron_id=1, work_id=work_id, status="waiting" if position == 1 else "pending",
                         series="s", position=position) for position, work_id in ((1, 11), (2, 12), (3, 13))]
    other_series = desk.hold(patron_id=2, work_id=12, status="pending", series="t", position=2)
    desk.queues.fulfil(volumes[0])
    assert desk.statuses() == [(volumes[1].borrower_ref, "waiting"), (volumes[2].borrower_ref, "pending"),
                               (other_series.borrower_ref, "pending")]
    desk.queues.end(volumes[1], TODAY, lambda barcode: "main")
    assert desk.statuses() == [(volumes[2].borrower_ref, "waiting"), (other_series.borrower_ref, "pending")]


def test_a_fulfilled_hold_outside_a_series_only_ends(desk):
    mine, next_in_line = desk.hold(patron_id=1), desk.hold(patron_id=2)
    desk.queues.fulfil(mine)
    assert desk.statuses() == [(next_in_line.borrower_ref, "waiting")]
