"""Log-in throttling (PRIVACY.md 11) under concurrency, blocks that grow, PINs too easy to guess, and staff
user names that are each tenant's own."""
from contextlib import ExitStack
from datetime import timedelta

import eventlet
import pytest
import requests

from support import in_database, register_patron, unique

MAX_FAILURES, BLOCK_SECONDS = 5, 900  # the defaults of services/patrons/config.yml


@pytest.fixture(autouse=True)
def no_failures_left(system):
    """Every test here fails log-ins from 127.0.0.1: leave no count or block behind, for each other or the
    modules after."""
    in_database(system, "patrons", "DELETE FROM login_failures")
    yield
    in_database(system, "patrons", "DELETE FROM login_failures")


def patron_login(system, card_number, pin):
    return requests.post(f"{system.url}/api/v1/auth/patron-token", json={"card_number": card_number, "pin": pin},
                         timeout=10)


def staff_login(system, username, password, **tenant):
    return requests.post(f"{system.url}/api/v1/auth/token", json={"username": username, "password": password,
                                                                   **tenant}, timeout=10)


def refused_for_a_while(response):
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "TOO_MANY_ATTEMPTS"
    return int(response.headers["Retry-After"])


@pytest.mark.privacy(11)
def test_fifty_wrong_pins_sent_at_once_get_five_tries(system, staff):
    patron = register_patron(staff, pin="8303")
    pool = eventlet.GreenPool(50)
    answers = list(pool.imap(lambda n: patron_login(system, patron["card_number"], f"{n:04d}"), range(100, 150)))
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {401, 429} and statuses.count(401) <= MAX_FAILURES, statuses
    for answer in answers:
        if answer.status_code == 429:
            assert 0 < refused_for_a_while(answer) <= BLOCK_SECONDS
    assert patron_login(system, patron["card_number"], "8303").status_code == 429  # the right PIN waits too


@pytest.mark.privacy(11)
def test_a_block_that_comes_again_lasts_twice_as_long(system, staff):
    patron = register_patron(staff, pin="8303")
    with ExitStack() as waited:
        for round_, longest in ((1, BLOCK_SECONDS), (2, 2 * BLOCK_SECONDS)):
            statuses = [patron_login(system, patron["card_number"], f"{n:04d}").status_code
                        for n in range(MAX_FAILURES)]
            assert statuses == [401] * MAX_FAILURES, (round_, statuses)
            retry_after = refused_for_a_while(patron_login(system, patron["card_number"], "8303"))
            assert longest - BLOCK_SECONDS < retry_after <= longest, (round_, retry_after)
            # The block ends: the clock moves a second past it. The card may try again.
            waited.enter_context(system.travel(by=timedelta(seconds=retry_after + 1)))
        assert patron_login(system, patron["card_number"], "8303").status_code == 200


def test_the_right_pin_wipes_the_count(system, staff):
    patron = register_patron(staff, pin="8303")
    for _attempt in range(3):
        for n in range(MAX_FAILURES - 1):
            assert patron_login(system, patron["card_number"], f"{n:04d}").status_code == 401
        assert patron_login(system, patron["card_number"], "8303").status_code == 200


@pytest.mark.privacy(11)
@pytest.mark.parametrize("pin", ["0000", "1234", "1111", "9876", "345678", "2580", "1212"])
def test_pins_anyone_would_try_first_are_refused(system, staff, pin):
    registering = staff.post(f"{system.url}/api/v1/patrons", timeout=10, json={
        "name": "試験 太郎", "name_kana": "シケン タロウ", "birth_date": "1990-04-01", "address": "試験市",
        "phone": "0584-12-3456", "home_library": "main", "category": "adult", "pin": pin})
    assert registering.status_code == 400, registering.text
    error = registering.json()["error"]
    assert error["code"] == "PIN_TOO_COMMON" and list(error["details"]) == ["pin"]
    patron = register_patron(staff, pin="8303")
    changing = staff.patch(f"{system.url}/api/v1/patrons/{patron['id']}", json={"pin": pin}, timeout=10)
    assert changing.status_code == 400 and changing.json()["error"]["code"] == "PIN_TOO_COMMON"
    assert patron_login(system, patron["card_number"], "8303").status_code == 200  # the old PIN stays


def test_a_pin_that_is_not_a_pattern_is_taken(system, staff):
    patron = register_patron(staff, pin="8303")
    assert staff.patch(f"{system.url}/api/v1/patrons/{patron['id']}", json={"pin": "30718"},
                       timeout=10).status_code == 200
    assert patron_login(system, patron["card_number"], "30718").status_code == 200


def test_each_tenant_has_its_own_admin_and_strangers_lock_out_only_the_one_they_guess(system, staff):
    username, other_tenant = unique("admin-").lower(), "lockcity"
    created = staff.post(f"{system.url}/api/v1/staff", timeout=10, json={
        "username": username, "password": "testcity-password", "role": "admin", "libraries": []})
    assert created.status_code == 201, created.text
    with system.rpc(tenant=other_tenant) as rpc:
        rpc.catalog.ensure_tenant({"code": other_tenant, "name": "錠前市"})
        assert rpc.patrons.ensure_staff_account({"username": username, "password": "lockcity-password",
                                                 "role": "admin", "libraries": []})["created"]

    ours = staff_login(system, username, "testcity-password")  # no tenant: the gateway's own
    theirs = staff_login(system, username, "lockcity-password", tenant=other_tenant)
    assert ours.status_code == 200 and theirs.status_code == 200, (ours.text, theirs.text)
    assert staff_login(system, username, "testcity-password", tenant=other_tenant).status_code == 401

    for n in range(MAX_FAILURES):
        assert staff_login(system, username, f"guess-{n}").status_code == 401
    refused_for_a_while(staff_login(system, username, "testcity-password"))
    assert staff_login(system, username, "lockcity-password", tenant=other_tenant).status_code == 200


def test_a_tenant_that_is_no_code_is_bad_input(system):
    answer = staff_login(system, "admin", "whatever-password", tenant="Not A Code!")
    assert answer.status_code == 400 and "tenant" in answer.json()["error"]["details"]
