"""Who may see and do what (PRIVACY.md 7, 11): roles and libraries, patrons' own log-in, other tenants,
throttled log-ins. Every refusal reveals nothing about whether the other record exists."""
import pytest
import requests
from sqlalchemy import create_engine, text

from support import add_copy, check_out, patron_fields, patrons_know, register_patron, unique


def login(system, username, password, **tenant):
    response = requests.post(f"{system.url}/api/v1/auth/token", timeout=10,
                             json={"username": username, "password": password, **tenant})
    assert response.status_code == 200, response.text
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    session.base_url = system.url
    return session


def patron_login(system, card_number, pin):
    return requests.post(f"{system.url}/api/v1/auth/patron-token", json={"card_number": card_number, "pin": pin},
                         timeout=10)


@pytest.fixture(scope="module")
def school(system, staff):
    code = unique("s").lower()[:12]
    assert staff.post(f"{system.url}/api/v1/libraries", json={"code": code, "name": "試験小学校", "kind": "school"},
                      timeout=10).status_code == 201
    patrons_know(system, code)
    return code


@pytest.fixture(scope="module")
def accounts(system, staff, school):
    made = {}
    for role, libraries in (("librarian", ["main"]), ("school_librarian", [school])):
        username = unique(role.replace("_", "-") + "-")
        response = staff.post(f"{system.url}/api/v1/staff", timeout=10, json={
            "username": username, "password": "a-long-password-1", "role": role, "libraries": libraries})
        assert response.status_code == 201, response.text
        made[role] = login(system, username, "a-long-password-1")
    yield made
    for session in made.values():
        session.close()


@pytest.mark.privacy(7)
def test_a_patron_logs_in_with_card_and_pin_and_sees_only_themself(system, staff):
    patron = register_patron(staff, pin="2468")
    other = register_patron(staff)
    _work, item = add_copy(staff, title="自分の本")
    assert check_out(staff, patron["card_number"], item["barcode"]).status_code == 201

    token = patron_login(system, patron["card_number"], "2468")
    assert token.status_code == 200, token.text
    me = requests.Session()
    me.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    assert me.get(f"{system.url}/api/v1/me", timeout=10).json()["id"] == patron["id"]
    loans = me.get(f"{system.url}/api/v1/me/loans", timeout=10).json()["items"]
    assert [loan["title"] for loan in loans] == ["自分の本"]
    for method, path in (("GET", f"/api/v1/patrons/{other['id']}"), ("GET", f"/api/v1/patrons/{patron['id']}"),
                         ("GET", f"/api/v1/patrons/{other['id']}/loans"), ("POST", "/api/v1/checkouts"),
                         ("GET", "/api/v1/staff"), ("POST", "/api/v1/patrons")):
        response = me.request(method, f"{system.url}{path}", json={}, timeout=10)
        assert response.status_code == 403, (path, response.text)
    tampered = me.headers["Authorization"][:-4] + "AAAA"
    assert requests.get(f"{system.url}/api/v1/me", headers={"Authorization": tampered}, timeout=10).status_code == 401


def test_wrong_pin_unknown_card_and_no_pin_look_the_same(system, staff):
    with_pin = register_patron(staff, pin="1357")
    without_pin = register_patron(staff)
    answers = [patron_login(system, with_pin["card_number"], "0000"),
               patron_login(system, without_pin["card_number"], "0000"),
               patron_login(system, "100000000008", "0000")]
    assert {response.status_code for response in answers} == {401}
    assert len({response.text for response in answers}) == 1
    assert patron_login(system, "123", "0000").status_code == 400  # not a card number at all


@pytest.mark.privacy(11)
def test_staff_may_set_a_pin_but_never_read_it(system, staff):
    patron = register_patron(staff)
    changed = staff.patch(f"{system.url}/api/v1/patrons/{patron['id']}", json={"pin": "97531"}, timeout=10)
    assert changed.status_code == 200 and "pin" not in changed.json() and "pin_hash" not in changed.json()
    assert patron_login(system, patron["card_number"], "97531").status_code == 200
    refused = staff.patch(f"{system.url}/api/v1/patrons/{patron['id']}", json={"pin": "12"}, timeout=10)
    assert "pin" in refused.json()["error"]["details"]


@pytest.mark.privacy(7)
def test_a_school_librarian_sees_the_school_and_nobody_else(system, staff, accounts, school):
    city_patron = register_patron(staff)
    school_clerk, city_clerk = accounts["school_librarian"], accounts["librarian"]
    pupil = school_clerk.post(f"{system.url}/api/v1/patrons", json=patron_fields(home_library=school,
                                                                                   category="child"), timeout=10)
    assert pupil.status_code == 201, pupil.text
    pupil = pupil.json()

    assert school_clerk.get(f"{system.url}/api/v1/patrons/{pupil['id']}", timeout=10).status_code == 200
    assert school_clerk.get(f"{system.url}/api/v1/patrons/{city_patron['id']}", timeout=10).status_code == 404
    assert city_clerk.get(f"{system.url}/api/v1/patrons/{pupil['id']}", timeout=10).status_code == 404
    assert city_clerk.get(f"{system.url}/api/v1/patrons/{city_patron['id']}", timeout=10).status_code == 200
    assert staff.get(f"{system.url}/api/v1/patrons/{pupil['id']}", timeout=10).status_code == 200
    by_card = city_clerk.get(f"{system.url}/api/v1/patrons", params={"card_number": pupil["card_number"]}, timeout=10)
    assert by_card.json()["items"] == []
    refused = school_clerk.post(f"{system.url}/api/v1/patrons", json=patron_fields(), timeout=10)
    assert refused.status_code == 403


def test_desks_work_only_at_their_own_libraries(system, staff, accounts, school):
    patron = register_patron(staff)
    _work, item = add_copy(staff)
    city_clerk, school_clerk = accounts["librarian"], accounts["school_librarian"]
    assert check_out(city_clerk, patron["card_number"], item["barcode"], library="east").status_code == 403
    assert check_out(school_clerk, patron["card_number"], item["barcode"], library="main").status_code == 403
    assert check_out(city_clerk, patron["card_number"], item["barcode"], library="main").status_code == 201


def test_only_admins_manage_staff_and_nobody_escalates(system, staff, accounts, school):
    clerk = accounts["librarian"]
    body = {"username": unique("sneaky-"), "password": "a-long-password-2", "role": "admin", "libraries": []}
    assert clerk.post(f"{system.url}/api/v1/staff", json=body, timeout=10).status_code == 403
    assert clerk.get(f"{system.url}/api/v1/staff", timeout=10).status_code == 403
    escalate = staff.post(f"{system.url}/api/v1/patrons", json=patron_fields(role="admin"), timeout=10)
    assert "role" in escalate.json()["error"]["details"]
    other_tenant = staff.post(f"{system.url}/api/v1/staff", json=dict(body, tenant="othercity"), timeout=10)
    assert "tenant" in other_tenant.json()["error"]["details"]
    no_library = staff.post(f"{system.url}/api/v1/staff", json=dict(body, role="librarian"), timeout=10)
    assert "libraries" in no_library.json()["error"]["details"]
    two_schools = staff.post(f"{system.url}/api/v1/staff", timeout=10,
                             json=dict(body, role="school_librarian", libraries=[school, "main"]))
    assert "libraries" in two_schools.json()["error"]["details"]

    listed = staff.get(f"{system.url}/api/v1/staff", timeout=10).json()["items"]
    assert all("password" not in account and "password_hash" not in account for account in listed)


def only_admin_of_a_new_tenant(system, *libraries):
    """Logged in as the one admin of a tenant of its own, so that no other test's second admin can make a
    LAST_ADMIN refusal moot; the tenant has ``libraries`` (main libraries), and patrons have heard of them."""
    tenant, password = unique("lastadmin").lower()[:30], "the-only-admin-password"
    with system.rpc(tenant=tenant) as rpc:
        rpc.catalog.ensure_tenant({"code": tenant, "name": "一人町"})
        for code in libraries:
            rpc.catalog.add_library({"code": code, "name": "一人町図書館", "kind": "main"})
        rpc.patrons.ensure_staff_account({"username": "admin", "password": password, "role": "admin",
                                          "libraries": []})
    patrons_know(system, *libraries, tenant=tenant)
    return login(system, "admin", password, tenant=tenant)


def test_the_last_admin_of_a_tenant_cannot_be_deleted(system):
    session = only_admin_of_a_new_tenant(system)
    admins = [account for account in session.get(f"{system.url}/api/v1/staff", timeout=10).json()["items"]
              if account["role"] == "admin"]
    assert len(admins) == 1
    last = session.delete(f"{system.url}/api/v1/staff/{admins[0]['id']}", timeout=10)
    assert (last.status_code, last.json()["error"]["code"]) == (409, "LAST_ADMIN")


def test_the_last_admin_of_a_tenant_cannot_be_made_a_librarian_until_another_admin_is_there(system):
    first = only_admin_of_a_new_tenant(system, "main")
    [account] = first.get(f"{system.url}/api/v1/staff", timeout=10).json()["items"]
    demotion = {"role": "librarian", "libraries": ["main"]}
    refused = first.patch(f"{system.url}/api/v1/staff/{account['id']}", json=demotion, timeout=10)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "LAST_ADMIN")
    assert [kept["role"] for kept in first.get(f"{system.url}/api/v1/staff", timeout=10).json()["items"]] == ["admin"]

    tenant = account["tenant"]
    deputy = first.post(f"{system.url}/api/v1/staff", timeout=10, json={
        "username": "deputy", "password": "the-deputy-password", "role": "admin", "libraries": []})
    assert deputy.status_code == 201, deputy.text
    second = login(system, "deputy", "the-deputy-password", tenant=tenant)
    handed_on = second.patch(f"{system.url}/api/v1/staff/{account['id']}", json=demotion, timeout=10)
    assert (handed_on.status_code, handed_on.json()["role"]) == (200, "librarian")
    last = second.patch(f"{system.url}/api/v1/staff/{deputy.json()['id']}", json=demotion, timeout=10)
    assert (last.status_code, last.json()["error"]["code"]) == (409, "LAST_ADMIN")


def test_another_tenant_sees_nothing_of_this_one(system, staff):
    patron = register_patron(staff)
    with system.rpc(tenant="othercity") as rpc:
        rpc.catalog.ensure_tenant({"code": "othercity", "name": "他市"})
        rpc.patrons.ensure_staff_account({"username": "othercity-admin", "password": "other-city-password",
                                          "role": "admin", "libraries": []})
    outsider = login(system, "othercity-admin", "other-city-password", tenant="othercity")
    assert outsider.get(f"{system.url}/api/v1/patrons/{patron['id']}", timeout=10).status_code == 404
    lookup = outsider.get(f"{system.url}/api/v1/patrons", params={"card_number": patron["card_number"]}, timeout=10)
    assert lookup.json()["items"] == []
    assert outsider.patch(f"{system.url}/api/v1/patrons/{patron['id']}", json={"name": "x"},
                          timeout=10).status_code == 404
    assert staff.get(f"{system.url}/api/v1/patrons/{patron['id']}", timeout=10).json()["name"] == patron["name"]


@pytest.mark.privacy(11)
def test_repeated_failures_lock_the_account_for_a_while(system, staff):
    username = unique("locked-")
    assert staff.post(f"{system.url}/api/v1/staff", timeout=10, json={
        "username": username, "password": "the-right-password", "role": "admin", "libraries": []}).status_code == 201
    url = f"{system.url}/api/v1/auth/token"
    try:
        statuses = [requests.post(url, json={"username": username, "password": f"wrong-{n}"}, timeout=10).status_code
                    for n in range(5)]
        assert statuses == [401] * 5
        locked = requests.post(url, json={"username": username, "password": "the-right-password"}, timeout=10)
        assert locked.status_code == 429
        assert locked.json()["error"]["code"] == "TOO_MANY_ATTEMPTS"
        assert 0 < int(locked.headers["Retry-After"]) <= 900
    finally:  # every test here logs in from 127.0.0.1: leave no address lock behind for the others
        engine = create_engine(system.database_urls["patrons"])
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM login_failures"))
        engine.dispose()


@pytest.mark.privacy(5)
def test_refusals_are_logged_without_credentials(system, caplog):
    caplog.set_level("WARNING", logger="shiori.security")
    forged = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzdGFmZjoxIn0.c2lnbmF0dXJl"
    requests.get(f"{system.url}/api/v1/patrons/1", headers={"Authorization": forged}, timeout=10)
    requests.post(f"{system.url}/api/v1/auth/token", json={"username": "nobody", "password": "guess-1"}, timeout=10)
    refusals = [record.getMessage() for record in caplog.records if record.name == "shiori.security"]
    assert any("NOT_AUTHENTICATED: GET /api/v1/patrons/<int:patron_id> from 127.0.0.1" in line for line in refusals)
    assert any("INVALID_CREDENTIALS: POST /api/v1/auth/token" in line for line in refusals)
    assert not [line for line in refusals if "guess-1" in line or "c2lnbmF0dXJl" in line or "nobody" in line]


@pytest.mark.privacy(7)
def test_a_renewal_asks_patrons_once_and_still_sees_only_what_the_caller_may(system, staff, school):
    """Renew asks patrons one question (borrower_by_id), which refuses a patron the caller may not see as
    ensure_visible would: a librarian of the city's branches renews no pupil's loan; the pupil's school does."""
    from services.patrons.errors import PatronNotFound

    pupil = register_patron(staff, home_library=school, category="child")
    _work, item = add_copy(staff, library=school)
    loan = check_out(staff, pupil["card_number"], item["barcode"], library=school).json()
    with system.rpc_as({"actor": "staff:98", "role": "librarian", "libraries": "main"}) as rpc:
        with pytest.raises(PatronNotFound):
            rpc.loans.renew(loan["loan_id"])
    with system.rpc_as({"actor": "staff:97", "role": "school_librarian", "libraries": school}) as rpc:
        assert rpc.loans.renew(loan["loan_id"])["renewals"] == 1


@pytest.mark.privacy(7)
def test_the_services_enforce_scope_even_when_called_directly(system, staff, school):
    """A bug in the gateway alone must not leak: the services check the identity that comes with a call."""
    from services.patrons.errors import PatronNotFound
    from shiori.errors import Forbidden

    pupil = register_patron(staff, home_library=school, category="child")
    city = register_patron(staff)

    def as_caller(**identity):
        return system.rpc_as(identity)

    with as_caller(actor="staff:99", role="librarian", libraries="main") as rpc:
        with pytest.raises(PatronNotFound):
            rpc.patrons.get_patron(pupil["id"])
        assert rpc.patrons.get_patron(city["id"])["id"] == city["id"]
    with as_caller(actor="public", role="public") as rpc:
        with pytest.raises(Forbidden):  # refused by role before any record is looked at (docs/roles.md)
            rpc.patrons.get_patron(city["id"])
        with pytest.raises(Forbidden):
            rpc.catalog.add_work({"title": "公開の役では書けない"})
        with pytest.raises(Forbidden):
            rpc.loans.checkout({"card_number": city["card_number"], "item_barcode": "X", "library": "main"})
    with as_caller(actor="patron:%d" % city["id"], role="patron") as rpc:
        with pytest.raises(PatronNotFound):
            rpc.loans.patron_loans(pupil["id"])
