"""Loan rules, library calendars, renewals, overdue and card blocks, through the gateway, on SQLite and
PostgreSQL. The rules live in a tenant of their own (rulecity), reset after every test, so that they never
meet the other modules' loans.

Where a loan must be overdue or a card expired, the test moves the services' clocks on, as the days would
have passed."""
from datetime import date, timedelta

import pytest
import requests
from shiori.commands.calls import wait_for_libraries
from support import add_copy, check_out, patron_fields, refused, register_patron, unique, wait_until

TENANT = "rulecity"
ADMIN = {"username": "rules-admin", "password": "a-long-rules-password", "role": "admin", "libraries": []}
BOOK_RULE = {"loan_days": 14, "max_items": 10, "renewals": 1, "max_holds": 10}


@pytest.fixture(scope="module")
def desk(system):
    """An HTTP session of rulecity's admin, with helpers for the desk's everyday calls."""
    with system.rpc(tenant=TENANT) as rpc:
        rpc.catalog.ensure_tenant({"code": TENANT, "name": "規則市"})
        rpc.patrons.ensure_staff_account(ADMIN)
        if not rpc.catalog.list_libraries():
            for code, kind in (("main", "main"), ("east", "branch")):
                rpc.catalog.add_library({"code": code, "name": f"規則市立図書館 {code}", "kind": kind})
        wait_for_libraries(rpc, ["main", "east"])
    session = requests.Session()
    token = session.post(f"{system.url}/api/v1/auth/token", timeout=10,
                         json={"username": ADMIN["username"], "password": ADMIN["password"],
                               "tenant": TENANT}).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    session.base_url = system.url
    yield Desk(session, system)
    session.close()


@pytest.fixture(autouse=True)
def fresh_rules(desk):
    yield
    policies = desk.get("/loan-policies").json()["policies"]
    for policy in policies:
        assert desk.delete(f"/loan-policies/{policy['id']}").status_code == 204
    for library in ("main", "east"):
        assert desk.put(f"/libraries/{library}/calendar", {}).status_code == 200
    assert desk.put("/circulation-settings", {"renew_from": "today", "renewal_grace_days": 0,
                                              "suspend_for_late_days": False}).status_code == 200


class Desk:
    def __init__(self, session, system):
        self.session, self.system = session, system

    def get(self, path, **params):
        return self.session.get(f"{self.system.url}/api/v1{path}", params=params, timeout=10)

    def post(self, path, body=None):
        return self.session.post(f"{self.system.url}/api/v1{path}", json=body, timeout=10)

    def put(self, path, body):
        return self.session.put(f"{self.system.url}/api/v1{path}", json=body, timeout=10)

    def patch(self, path, body):
        return self.session.patch(f"{self.system.url}/api/v1{path}", json=body, timeout=10)

    def delete(self, path):
        return self.session.delete(f"{self.system.url}/api/v1{path}", timeout=10)

    def patron(self, **fields):
        response = self.post("/patrons", patron_fields(**fields))
        assert response.status_code == 201, response.text
        return response.json()

    def copy(self, item_type="book", library="main"):
        work = self.post("/works", {"title": unique("規則の本 ")}).json()
        item = self.post("/items", {"barcode": unique("R"), "work_id": work["id"], "library": library,
                                    "item_type": item_type})
        assert item.status_code == 201, item.text
        return item.json()

    def check_out(self, card_number, barcode, library="main"):
        return self.post("/checkouts", {"card_number": card_number, "item_barcode": barcode, "library": library})

    def check_in(self, barcode, library="main"):
        return self.post("/checkins", {"item_barcode": barcode, "library": library})

    def loans(self, patron_id):
        return self.get(f"/patrons/{patron_id}/loans").json()["items"]

    def days_from_today(self, days):
        """A day counted from the services' today (moved while a test travels)."""
        return (self.system.today() + timedelta(days=days)).isoformat()


def test_loan_policies_are_administered_and_the_most_specific_governs(desk):
    assert desk.get("/loan-policies").json()["default"]["loan_days"] == 14
    av_rule = desk.post("/loan-policies", dict(BOOK_RULE, item_type="av", loan_days=7))
    assert av_rule.status_code == 201, av_rule.text
    assert desk.post("/loan-policies", dict(BOOK_RULE, item_type="av")).json()["error"]["code"] == \
        "LOAN_POLICY_EXISTS"
    for bad in (dict(BOOK_RULE, loan_days=0), dict(BOOK_RULE, patron_category="dragon"),
                dict(BOOK_RULE, item_type="scroll"), {"loan_days": 7}, dict(BOOK_RULE, loan_days="7")):
        response = desk.post("/loan-policies", bad)
        assert response.status_code == 400 and response.json()["error"]["code"] == "VALIDATION_ERROR", bad
    east_av = desk.post("/loan-policies", dict(BOOK_RULE, item_type="av", library="east", loan_days=10)).json()

    patron = desk.patron()
    dvd, book, east_dvd = desk.copy("av"), desk.copy("book"), desk.copy("av", library="east")
    assert desk.check_out(patron["card_number"], dvd["barcode"]).json()["due_date"] == desk.days_from_today(7)
    assert desk.check_out(patron["card_number"], book["barcode"]).json()["due_date"] == desk.days_from_today(14)
    assert desk.check_out(patron["card_number"], east_dvd["barcode"], "east").json()["due_date"] == \
        desk.days_from_today(10)

    assert desk.patch(f"/loan-policies/{av_rule.json()['id']}", {"loan_days": 8}).json()["loan_days"] == 8
    assert desk.delete(f"/loan-policies/{east_av['id']}").status_code == 204
    assert desk.delete(f"/loan-policies/{east_av['id']}").json()["error"]["code"] == "LOAN_POLICY_NOT_FOUND"


def test_limits_refuse_with_their_own_code_and_leave_nothing_half_done(desk):
    assert desk.post("/loan-policies", dict(BOOK_RULE, patron_category="child", max_items=2)).status_code == 201
    assert desk.post("/loan-policies", dict(BOOK_RULE, patron_category="child", item_type="magazine", max_items=2,
                                            max_items_of_type=1)).status_code == 201
    child = desk.patron(category="child", birth_date="2016-05-05")
    magazines, books = [desk.copy("magazine") for _ in range(2)], [desk.copy() for _ in range(2)]

    assert desk.check_out(child["card_number"], magazines[0]["barcode"]).status_code == 201
    error = refused(desk.check_out(child["card_number"], magazines[1]["barcode"]), "LOAN_LIMIT_REACHED")
    assert error["details"] == {"item_type": "magazine", "max_items_of_type": 1, "on_loan": 1}
    assert desk.check_out(child["card_number"], books[0]["barcode"]).status_code == 201
    refused(desk.check_out(child["card_number"], books[1]["barcode"]), "LOAN_LIMIT_REACHED")
    reference = desk.copy("reference")
    refused(desk.check_out(desk.patron()["card_number"], reference["barcode"]), "ITEM_NOT_FOR_LOAN")

    # Nothing of the refused check-outs happened anywhere.
    assert sorted(loan["item_barcode"] for loan in desk.loans(child["id"])) == \
        sorted([magazines[0]["barcode"], books[0]["barcode"]])
    wait_until(lambda: desk.get(f"/items/{books[0]['barcode']}").json()["status"] == "on_loan")
    for copy in (magazines[1], books[1], reference):
        assert desk.get(f"/items/{copy['barcode']}").json()["status"] == "available"


def test_calendars_close_the_desk_and_move_due_dates_to_the_next_open_day(desk):
    today = desk.system.today()
    assert desk.put("/libraries/main/calendar", {"closed_weekdays": [today.weekday()]}).status_code == 200
    due_day = today + timedelta(days=14)
    calendar = {"closed_weekdays": [(due_day + timedelta(days=1)).weekday()],
                "closures": [{"first": due_day.isoformat(), "last": due_day.isoformat(), "reason": "蔵書点検"}]}
    assert desk.put("/libraries/east/calendar", calendar).json() == dict(calendar, closed_weekdays=sorted(
        calendar["closed_weekdays"]))

    patron = desk.patron()
    refused(desk.check_out(patron["card_number"], desk.copy()["barcode"]), "LIBRARY_CLOSED")
    loan = desk.check_out(patron["card_number"], desk.copy(library="east")["barcode"], "east")
    assert loan.json()["due_date"] == desk.days_from_today(16)  # the 蔵書点検 day, then the weekly closing day

    for bad in ({"closed_weekdays": list(range(7))}, {"closed_weekdays": [7]},
                {"closures": [{"first": "2027-01-05", "last": "2027-01-04"}]},
                {"closures": [{"first": "2027-01-05", "last": "2029-01-04"}]}, {"closures": "always"}):
        response = desk.put("/libraries/east/calendar", bad)
        assert response.status_code == 400, (bad, response.text)
    assert desk.put("/libraries/nowhere/calendar", {}).json()["error"]["code"] == "LIBRARY_NOT_FOUND"
    assert desk.get("/libraries/east/calendar").json()["closures"][0]["reason"] == "蔵書点検"


def test_a_patron_renews_their_own_loans_and_no_one_elses(system, staff):
    """In the public tenant (testcity), where patrons log in; its default rule: one renewal, from today."""
    patron = register_patron(staff, pin="8642")
    loan = check_out(staff, patron["card_number"], add_copy(staff)[1]["barcode"]).json()
    other = check_out(staff, register_patron(staff)["card_number"], add_copy(staff)[1]["barcode"]).json()
    token = requests.post(f"{system.url}/api/v1/auth/patron-token", timeout=10,
                          json={"card_number": patron["card_number"], "pin": "8642"}).json()["access_token"]

    def renew(loan_id):
        return requests.post(f"{system.url}/api/v1/loans/{loan_id}/renew", timeout=10,
                             headers={"Authorization": f"Bearer {token}"})
    own = renew(loan["loan_id"])
    assert own.status_code == 200, own.text
    assert (own.json()["due_date"], own.json()["renewals"]) == (loan["due_date"], 1)  # today + 14 again
    assert renew(loan["loan_id"]).json()["error"]["code"] == "RENEWAL_LIMIT_REACHED"
    assert renew(other["loan_id"]).json()["error"]["code"] == "LOAN_NOT_FOUND"


def test_renewals_follow_the_settings_and_are_refused_with_the_reason(desk):
    copy = desk.copy()
    loan = desk.check_out(desk.patron()["card_number"], copy["barcode"]).json()
    assert desk.put("/circulation-settings", {"renew_from": "due_date", "renewal_grace_days": 0,
                                              "suspend_for_late_days": False}).status_code == 200
    renewed = desk.post(f"/loans/{loan['loan_id']}/renew").json()
    assert (renewed["due_date"], renewed["renewals"]) == (desk.days_from_today(28), 1)
    wait_until(lambda: desk.get(f"/items/{copy['barcode']}").json()["due_date"] == desk.days_from_today(28),
               message="the catalogue's due date")
    refused(desk.post(f"/loans/{loan['loan_id']}/renew"), "RENEWAL_LIMIT_REACHED")
    assert desk.post("/loans/999999999/renew").json()["error"]["code"] == "LOAN_NOT_FOUND"

    other = desk.check_out(desk.patron()["card_number"], desk.copy()["barcode"]).json()

    with desk.system.travel(to=date.fromisoformat(other["due_date"]) + timedelta(days=2)):
        refused(desk.post(f"/loans/{other['loan_id']}/renew"), "LOAN_OVERDUE")
        desk.put("/circulation-settings", {"renew_from": "today", "renewal_grace_days": 3,
                                           "suspend_for_late_days": False})
        assert desk.post(f"/loans/{other['loan_id']}/renew").json()["due_date"] == desk.days_from_today(14)
    bad = desk.put("/circulation-settings", {"renew_from": "tomorrow", "renewal_grace_days": -1})
    assert bad.status_code == 400 and set(bad.json()["error"]["details"]) >= {"renew_from", "renewal_grace_days"}


def test_overdue_copies_stop_borrowing_and_a_late_return_suspends_for_as_many_days(desk):
    desk.put("/circulation-settings", {"renew_from": "today", "renewal_grace_days": 0,
                                       "suspend_for_late_days": True})
    patron = desk.patron()
    late_copy, next_copy = desk.copy(), desk.copy()
    loan = desk.check_out(patron["card_number"], late_copy["barcode"]).json()
    with desk.system.travel(to=date.fromisoformat(loan["due_date"]) + timedelta(days=5)):
        assert refused(desk.check_out(patron["card_number"], next_copy["barcode"]), "OVERDUE_ITEMS")["details"] \
            == {"overdue_items": 1}
        assert desk.check_in(late_copy["barcode"]).json()["days_late"] == 5
        error = refused(desk.check_out(patron["card_number"], next_copy["barcode"]), "BORROWING_SUSPENDED")
        assert error["details"] == {"until": desk.days_from_today(5)}
    assert desk.get(f"/items/{next_copy['barcode']}").json()["status"] == "available"


def test_expired_suspended_and_lost_cards(desk):
    patron = desk.patron()
    copies = [desk.copy() for _ in range(3)]
    with desk.system.travel(to=date.fromisoformat(patron["expires_on"]) + timedelta(days=1)):
        refused(desk.check_out(patron["card_number"], copies[0]["barcode"]), "CARD_EXPIRED")
        renewed = desk.post(f"/patrons/{patron['id']}/card-renewal").json()
        assert date.fromisoformat(renewed["expires_on"]) > desk.system.today()
    assert desk.check_out(patron["card_number"], copies[0]["barcode"]).status_code == 201

    assert desk.put(f"/patrons/{patron['id']}/status", {"status": "suspended"}).json()["status"] == "suspended"
    refused(desk.check_out(patron["card_number"], copies[1]["barcode"]), "PATRON_SUSPENDED")
    loan_id = desk.loans(patron["id"])[0]["loan_id"]
    refused(desk.post(f"/loans/{loan_id}/renew"), "PATRON_SUSPENDED")
    assert desk.put(f"/patrons/{patron['id']}/status", {"status": "lost"}).status_code == 400
    assert desk.put(f"/patrons/{patron['id']}/status", {"status": "active"}).json()["status"] == "active"

    replaced = desk.post(f"/patrons/{patron['id']}/lost-card").json()
    assert replaced["card_number"] != patron["card_number"] and replaced["id"] == patron["id"]
    refused(desk.check_out(patron["card_number"], copies[1]["barcode"]), "CARD_REPORTED_LOST")
    assert [loan["item_barcode"] for loan in desk.loans(patron["id"])] == [copies[0]["barcode"]]
    assert desk.check_out(replaced["card_number"], copies[1]["barcode"]).status_code == 201
    assert desk.get("/patrons", card_number=patron["card_number"]).json()["total"] == 0


def test_an_unplanned_closure_moves_every_due_date_in_the_period(desk):
    coast = unique("coast").lower()  # a branch of this test's own: the closure moves its loans only
    assert desk.post("/libraries", {"code": coast, "name": "規則市 海岸分館", "kind": "branch"}).status_code == 201
    patron = desk.patron()
    at_coast, at_east = desk.copy(library=coast), desk.copy(library="east")
    coast_loans = [desk.check_out(patron["card_number"], at_coast["barcode"], coast).json(),
                   desk.check_out(desk.patron()["card_number"], desk.copy(library=coast)["barcode"], coast).json()]
    east_loan = desk.check_out(patron["card_number"], at_east["barcode"], "east").json()
    typhoon = {"first": desk.days_from_today(13), "last": desk.days_from_today(15), "reason": "台風", "libraries": [coast]}

    assert desk.post("/closures", typhoon).json() == {"loans_moved": 2, "libraries": [coast]}
    due = {loan["loan_id"]: loan["due_date"] for loan in desk.loans(patron["id"])}
    assert due == {coast_loans[0]["loan_id"]: desk.days_from_today(16), east_loan["loan_id"]: desk.days_from_today(14)}
    wait_until(lambda: desk.get(f"/items/{at_coast['barcode']}").json()["due_date"] == desk.days_from_today(16),
               message="the catalogue's due date")
    assert desk.get(f"/libraries/{coast}/calendar").json()["closures"][-1]["reason"] == "台風"

    assert desk.post("/closures", dict(typhoon, libraries=["nowhere"])).json()["error"]["code"] == "LIBRARY_NOT_FOUND"
    assert desk.post("/closures", dict(typhoon, last=desk.days_from_today(12))).status_code == 400
    assert desk.post("/closures", dict(typhoon, libraries=[])).status_code == 400
