"""Deletion removes everything (PRIVACY.md 6): a patron deleted on request or by the retention pass leaves
no hold, suspension, pending notice or phone-list entry behind, and a copy kept for them goes to the next in
the queue, as when a hold is cancelled. On SQLite and PostgreSQL, through the running system."""
from datetime import date, timedelta

import pytest
from nameko.testing.services import entrypoint_hook

from support import TEN_YEARS, add_copy, check_in, check_out, in_database, register_patron, unique, wait_until

SETTINGS = {"renew_from": "today", "renewal_grace_days": 0}


@pytest.fixture
def late_returns_suspend(staff):
    url = f"{staff.base_url}/api/v1/circulation-settings"
    assert staff.put(url, json={**SETTINGS, "suspend_for_late_days": True}, timeout=10).status_code == 200
    yield
    assert staff.put(url, json={**SETTINGS, "suspend_for_late_days": False}, timeout=10).status_code == 200


def place_hold(staff, patron, work):
    response = staff.post(f"{staff.base_url}/api/v1/holds", timeout=10, json={
        "work_id": work["id"], "pickup_library": "main", "card_number": patron["card_number"]})
    assert response.status_code == 201, response.text
    return response.json()


def holds_of(staff, patron):
    return [(hold["work_id"], hold["status"], hold["position"], hold["item_barcode"]) for hold in staff.get(
        f"{staff.base_url}/api/v1/patrons/{patron['id']}/holds", timeout=10).json()["items"]]


def held_about(system, patron):
    """Whatever the loans and notices services still hold about the patron, row by row."""
    return {
        "holds": in_database(system, "loan_borrowers", "SELECT ref FROM borrowers WHERE patron_id = :p"
                             " AND held_work_id IS NOT NULL", p=patron["id"]),
        "suspensions": in_database(system, "loan_borrowers", "SELECT until FROM suspensions WHERE patron_id = :p",
                                   p=patron["id"]),
        "notices": in_database(system, "notices", "SELECT channel FROM notices WHERE patron_id = :p",
                               p=patron["id"]),
    }


def copy_status(staff, barcode):
    return staff.get(f"{staff.base_url}/api/v1/items/{barcode}", timeout=10).json()["status"]


@pytest.mark.privacy(6)
def test_deleting_a_patron_ends_their_holds_suspension_and_notices_and_the_queue_moves_on(
        system, staff, smtp_server, late_returns_suspend):
    leaving = register_patron(staff, email=None)
    next_in_line = register_patron(staff, email=f"{unique('next')}@example.jp".lower())
    ahead = register_patron(staff)

    # A copy on the hold shelf for the leaving patron, with another patron waiting behind them; as they have
    # no e-mail, the desk is to phone them.
    ready_work, ready_copy = add_copy(staff)
    place_hold(staff, leaving, ready_work)
    place_hold(staff, next_in_line, ready_work)
    assert check_in(staff, ready_copy["barcode"]).json()["hold"]["patron_id"] == leaving["id"]
    wait_until(lambda: held_about(system, leaving)["notices"] == [("phone",)], message="the phone-list entry")
    # A hold waiting behind another patron's.
    queued_work, _queued_copy = add_copy(staff)
    place_hold(staff, ahead, queued_work)
    place_hold(staff, leaving, queued_work)
    # A suspension, after a copy came back three days late.
    _late_work, late_copy = add_copy(staff)
    loan = check_out(staff, leaving["card_number"], late_copy["barcode"]).json()
    with system.travel(to=date.fromisoformat(loan["due_date"]) + timedelta(days=3)):
        assert check_in(staff, late_copy["barcode"]).json()["days_late"] == 3

    smtp_server.stop()
    try:
        # A notice not sent yet: the patron gave an address since, and the mail server does not answer.
        leaving_address = f"{unique('leaving')}@example.jp".lower()
        assert staff.patch(f"{staff.base_url}/api/v1/patrons/{leaving['id']}", json={"email": leaving_address},
                           timeout=10).status_code == 200
        waiting_work, waiting_copy = add_copy(staff)
        place_hold(staff, leaving, waiting_work)
        assert check_in(staff, waiting_copy["barcode"]).json()["action"] == "hold_shelf"
        wait_until(lambda: sorted(held_about(system, leaving)["notices"]) == [("email",), ("phone",)],
                   message="a phone-list entry and a pending notice")
        assert [len(held) for held in held_about(system, leaving).values()] == [3, 1, 2]

        assert staff.delete(f"{staff.base_url}/api/v1/patrons/{leaving['id']}", timeout=10).status_code == 204

        wait_until(lambda: held_about(system, leaving) == {"holds": [], "suspensions": [], "notices": []},
                   timeout=20, message="nothing left of the deleted patron")
    finally:
        smtp_server.start()
    assert holds_of(staff, next_in_line) == [(ready_work["id"], "ready", 0, ready_copy["barcode"])]
    assert holds_of(staff, ahead) == [(queued_work["id"], "waiting", 1, None)]
    shelf = staff.get(f"{staff.base_url}/api/v1/libraries/main/hold-shelf", timeout=10).json()["on_shelf"]
    assert next_in_line["id"] in [slip["patron_id"] for slip in shelf]
    assert leaving["id"] not in [slip["patron_id"] for slip in shelf]
    wait_until(lambda: copy_status(staff, waiting_copy["barcode"]) == "available",
               message="the copy nobody else waits for back on the shelf")
    wait_until(lambda: smtp_server.handler.to(next_in_line["email"]), timeout=30, message="the next patron told")
    assert smtp_server.handler.to(leaving_address) == []


@pytest.mark.privacy(6)
def test_the_retention_pass_ends_the_holds_of_the_patrons_it_deletes(system, staff):
    with system.travel(by=-TEN_YEARS):  # the idle patron last came ten years ago, to place a hold
        idle = register_patron(staff)
        work, copy = add_copy(staff)
        place_hold(staff, idle, work)
    next_in_line = register_patron(staff)
    place_hold(staff, next_in_line, work)
    assert check_in(staff, copy["barcode"]).json()["hold"]["patron_id"] == idle["id"]
    with system.rpc() as rpc:
        assert rpc.loans.apply_retention(False)["deleted"] == 1

    wait_until(lambda: held_about(system, idle)["holds"] == [], message="the deleted patron's holds ended")
    assert holds_of(staff, next_in_line) == [(work["id"], "ready", 0, copy["barcode"])]


@pytest.mark.privacy(6)
def test_the_hourly_retention_pass_deletes_the_long_unused_but_not_one_with_a_loan_out(system, staff):
    with system.travel(by=-TEN_YEARS):  # both last came ten years ago; one took a book and never returned it
        idle, borrower = register_patron(staff), register_patron(staff)
        _work, copy = add_copy(staff)
        assert check_out(staff, borrower["card_number"], copy["barcode"]).status_code == 201
    [patrons] = system.runners["patrons"].containers
    with entrypoint_hook(patrons, "retention_timer") as hourly_pass:
        hourly_pass()

    def found(patron):
        return staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10).status_code

    wait_until(lambda: found(idle) == 404, message="the idle patron deleted by the loans service")
    assert found(borrower) == 200
