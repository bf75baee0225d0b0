"""Holds (予約), the hold shelf and copies in transit, through the gateway, on SQLite and PostgreSQL.

Each test works on works and patrons of its own in the suite's tenant (testcity: libraries main and east, the
default loan rule). Where a pickup window must run out, the test moves the services' clocks past its end and
runs the daily pass as an operator would."""
from datetime import date, timedelta

import requests
from support import (
    add_copy, check_in, check_out, in_database, refused, register_patron, run_daily_pass, unique, wait_until,
)


def place_hold(staff, patron, work_ids, pickup="main", **extra):
    body = {"card_number": patron["card_number"], "pickup_library": pickup, **extra}
    body.update({"works": work_ids} if isinstance(work_ids, list) else {"work_id": work_ids})
    return staff.post(f"{staff.base_url}/api/v1/holds", json=body, timeout=10)


def holds_of(staff, patron):
    return staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}/holds", timeout=10).json()["items"]


def copy_status(staff, barcode):
    return staff.get(f"{staff.base_url}/api/v1/items/{barcode}", timeout=10).json()["status"]


def hold_shelf(staff, library):
    return staff.get(f"{staff.base_url}/api/v1/libraries/{library}/hold-shelf", timeout=10).json()


def test_a_returned_copy_serves_the_queue_in_order_through_transit_and_the_hold_shelf(system, staff):
    work, copy = add_copy(staff, library="main")
    reader, first, second = (register_patron(staff) for _ in range(3))
    loan = check_out(staff, reader["card_number"], copy["barcode"]).json()
    first_hold = place_hold(staff, first, work["id"], pickup="east")
    assert first_hold.status_code == 201, first_hold.text
    second_hold = place_hold(staff, second, work["id"], pickup="main").json()
    assert [(hold["position"], hold["title"]) for hold in holds_of(staff, first)] == [(1, work["title"])]
    assert (second_hold["position"], second_hold["status"]) == (2, "waiting")

    refused(staff.post(f"{staff.base_url}/api/v1/loans/{loan['loan_id']}/renew", timeout=10), "HOLDS_WAITING")

    returned = check_in(staff, copy["barcode"], library="main").json()
    assert (returned["action"], returned["destination"]) == ("transit", "east")
    assert returned["hold"]["patron_id"] == first["id"]
    wait_until(lambda: copy_status(staff, copy["barcode"]) == "in_transit", message="the copy's status")
    assert {"item_barcode": copy["barcode"], "to_library": "east", "since": system.today().isoformat()} in \
        hold_shelf(staff, "main")["to_send"]
    refused(check_out(staff, second["card_number"], copy["barcode"]), "ITEM_HELD_FOR_ANOTHER_PATRON")

    arrived = check_in(staff, copy["barcode"], library="east").json()
    ready_until = (system.today() + timedelta(days=7)).isoformat()
    assert (arrived["action"], arrived["hold"]["ready_until"]) == ("hold_shelf", ready_until)
    assert arrived["hold"] in hold_shelf(staff, "east")["on_shelf"]
    # Days later the copy is scanned again on the hold shelf: it stays, and its pickup window is not renewed.
    with system.travel(by=timedelta(days=4)):
        again = check_in(staff, copy["barcode"], library="east").json()
    assert (again["action"], again["hold"]["ready_until"]) == ("hold_shelf", ready_until)
    assert [(hold["status"], hold["position"]) for hold in holds_of(staff, first)] == [("ready", 0)]
    wait_until(lambda: copy_status(staff, copy["barcode"]) == "on_hold_shelf", message="the copy's status")

    lent = check_out(staff, first["card_number"], copy["barcode"], library="east")
    assert lent.status_code == 201, lent.text
    assert holds_of(staff, first) == []
    assert [hold["position"] for hold in holds_of(staff, second)] == [1]
    # The fulfilled hold left nothing that pairs the patron with the work (PRIVACY.md 2).
    assert in_database(system, "loan_borrowers", "SELECT ref FROM borrowers WHERE patron_id = :patron"
                       " AND held_work_id IS NOT NULL", patron=first["id"]) == []


def test_a_copy_on_the_shelf_is_checked_in_to_serve_a_hold_and_passes_on_when_a_hold_ends(system, staff):
    work, copy = add_copy(staff, library="main")
    first, second = register_patron(staff), register_patron(staff)
    first_hold = place_hold(staff, first, work["id"]).json()
    place_hold(staff, second, work["id"])
    wait_until(lambda: copy_status(staff, copy["barcode"]) == "available", message="the copy on the shelf")
    [pull] = [entry for entry in hold_shelf(staff, "main")["to_pull"] if entry["work_id"] == work["id"]]
    assert (pull["item_barcode"], pull["title"], pull["holds_waiting"]) == (copy["barcode"], work["title"], 2)
    assert work["id"] not in [entry["work_id"] for entry in hold_shelf(staff, "east")["to_pull"]]
    trapped = check_in(staff, copy["barcode"], library="main").json()
    assert (trapped["action"], trapped["hold"]["patron_id"]) == ("hold_shelf", first["id"])
    wait_until(lambda: work["id"] not in [entry["work_id"] for entry in hold_shelf(staff, "main")["to_pull"]],
               message="the pull list without the trapped copy")

    cancelled = staff.delete(f"{staff.base_url}/api/v1/holds/{first_hold['hold_id']}", timeout=10)
    assert cancelled.status_code == 204
    on_shelf = [slip["patron_id"] for slip in hold_shelf(staff, "main")["on_shelf"]]
    assert second["id"] in on_shelf and first["id"] not in on_shelf
    assert [hold["status"] for hold in holds_of(staff, second)] == ["ready"]
    assert staff.delete(f"{staff.base_url}/api/v1/holds/{first_hold['hold_id']}", timeout=10).json()["error"][
        "code"] == "HOLD_NOT_FOUND"

    # The second patron does not come: the pickup window ends, and the copy goes back to the shelf.
    window_end = date.fromisoformat(holds_of(staff, second)[0]["ready_until"])
    with system.travel(to=window_end + timedelta(days=1)):
        run_daily_pass(system)
    assert holds_of(staff, second) == []
    wait_until(lambda: copy_status(staff, copy["barcode"]) == "available", message="the copy back on the shelf")
    refused(check_in(staff, copy["barcode"]), "ITEM_NOT_ON_LOAN")


def test_series_holds_activate_volume_by_volume_and_a_hold_lapses_after_its_date(system, staff):
    volumes = [add_copy(staff, title=f"{unique('連作')} 第{n}巻") for n in (1, 2, 3)]
    patron = register_patron(staff)
    placed = place_hold(staff, patron, [work["id"] for work, _copy in volumes])
    assert placed.status_code == 201, placed.text
    assert [(hold["status"], hold["position"], hold["series_position"]) for hold in placed.json()["holds"]] == \
        [("waiting", 1, 1), ("pending", None, 2), ("pending", None, 3)]

    # Volume 2 on the shelf is nobody's yet: checking it in traps nothing (the patron waits for volume 1).
    assert check_in(staff, volumes[1][1]["barcode"]).status_code == 409
    assert check_in(staff, volumes[0][1]["barcode"]).json()["action"] == "hold_shelf"
    assert check_out(staff, patron["card_number"], volumes[0][1]["barcode"]).status_code == 201
    assert [hold["status"] for hold in holds_of(staff, patron)] == ["waiting", "pending"]

    other = register_patron(staff)
    lapsing = place_hold(staff, other, volumes[2][0]["id"], not_needed_after=system.today().isoformat())
    assert lapsing.status_code == 201
    run_daily_pass(system)
    assert len(holds_of(staff, other)) == 1  # not needed after today: still wanted today
    with system.travel(by=timedelta(days=1)):
        run_daily_pass(system)
    assert holds_of(staff, other) == []
    past = place_hold(staff, other, volumes[2][0]["id"],
                      not_needed_after=(system.today() - timedelta(days=1)).isoformat())
    assert past.status_code == 400


def test_hold_refusals_say_why_and_change_nothing(system, staff):
    work, copy = add_copy(staff)
    patron = register_patron(staff)
    assert place_hold(staff, patron, work["id"]).status_code == 201
    refused(place_hold(staff, patron, work["id"]), "HOLD_EXISTS")
    borrowed_work, borrowed_copy = add_copy(staff)
    check_out(staff, patron["card_number"], borrowed_copy["barcode"])
    refused(place_hold(staff, patron, borrowed_work["id"]), "WORK_ALREADY_ON_LOAN")

    school = unique("sch").lower()
    assert staff.post(f"{staff.base_url}/api/v1/libraries", timeout=10,
                      json={"code": school, "name": "試験市立小学校", "kind": "school"}).status_code == 201
    refused(place_hold(staff, patron, add_copy(staff)[0]["id"], pickup=school), "WRONG_PICKUP_LIBRARY")
    assert place_hold(staff, patron, 999999999).json()["error"]["code"] == "WORK_NOT_FOUND"
    assert place_hold(staff, patron, work["id"], pickup="nowhere").json()["error"]["code"] == "LIBRARY_NOT_FOUND"
    for body in ({"work_id": work["id"], "works": [1, 2], "pickup_library": "main"},
                 {"works": [work["id"], work["id"]], "pickup_library": "main"}, {"pickup_library": "main"},
                 {"work_id": "x", "pickup_library": "main"}):
        response = staff.post(f"{staff.base_url}/api/v1/holds", timeout=10,
                              json=dict(body, card_number=patron["card_number"]))
        assert response.status_code == 400, (body, response.text)
    assert staff.post(f"{staff.base_url}/api/v1/holds", json={"work_id": work["id"], "pickup_library": "main"},
                      timeout=10).status_code == 400  # staff name the patron

    limited = register_patron(staff, category="staff")
    rule = staff.post(f"{staff.base_url}/api/v1/loan-policies", timeout=10, json={
        "patron_category": "staff", "loan_days": 14, "max_items": 10, "renewals": 1, "max_holds": 2})
    try:
        refused(place_hold(staff, limited, [add_copy(staff)[0]["id"] for _ in range(3)]), "HOLD_LIMIT_REACHED")
        assert holds_of(staff, limited) == []  # no volume of the refused series was kept
    finally:
        staff.delete(f"{staff.base_url}/api/v1/loan-policies/{rule.json()['id']}", timeout=10)
    assert [hold["work_id"] for hold in holds_of(staff, patron)] == [work["id"]]


def test_a_patron_holds_and_cancels_for_themself_only(system, staff):
    work, _copy = add_copy(staff)
    patron, other = register_patron(staff, pin="1470"), register_patron(staff)
    others_hold = place_hold(staff, other, work["id"]).json()
    token = requests.post(f"{system.url}/api/v1/auth/patron-token", timeout=10,
                          json={"card_number": patron["card_number"], "pin": "1470"}).json()["access_token"]
    as_patron = {"Authorization": f"Bearer {token}"}

    own = requests.post(f"{system.url}/api/v1/holds", headers=as_patron, timeout=10,
                        json={"work_id": work["id"], "pickup_library": "east"})
    assert own.status_code == 201, own.text
    assert own.json()["position"] == 2
    mine = requests.get(f"{system.url}/api/v1/me/holds", headers=as_patron, timeout=10).json()["items"]
    assert [(hold["hold_id"], hold["title"]) for hold in mine] == [(own.json()["hold_id"], work["title"])]
    assert requests.delete(f"{system.url}/api/v1/holds/{others_hold['hold_id']}", headers=as_patron,
                           timeout=10).status_code == 404
    assert requests.delete(f"{system.url}/api/v1/holds/{own.json()['hold_id']}", headers=as_patron,
                           timeout=10).status_code == 204
    assert holds_of(staff, patron) == [] and len(holds_of(staff, other)) == 1


def test_a_copy_returned_elsewhere_travels_home(staff):
    home, returned_at = "main", "east"
    _work, copy = add_copy(staff, library=home)
    check_out(staff, register_patron(staff)["card_number"], copy["barcode"], library=home)
    assert check_in(staff, copy["barcode"], library=returned_at).json()["action"] == "transit"
    assert copy["barcode"] in [entry["item_barcode"] for entry in hold_shelf(staff, returned_at)["to_send"]]
    assert check_in(staff, copy["barcode"], library=home).json()["action"] == "shelve"
    assert copy["barcode"] not in [entry["item_barcode"] for entry in hold_shelf(staff, returned_at)["to_send"]]
    wait_until(lambda: copy_status(staff, copy["barcode"]) == "available", message="the copy back on the shelf")
