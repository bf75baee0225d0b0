"""The desk finds a patron who forgot their card by name reading and birth date (a keyed look-up, recorded like
the others), and a logged-in patron changes their own e-mail address and PIN (my page): what is refused, what
the access record says, and which tokens end."""
import re
import secrets
import unicodedata

import pytest
import requests

from support import in_database, register_patron, wait_until

MAX_FAILURES = 5  # services/patrons/config.yml
KATAKANA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワ"


@pytest.fixture(autouse=True)
def no_failures_left(system):
    """Wrong PINs are tried from 127.0.0.1 here: leave no count or block behind, for each other or the modules
    after."""
    in_database(system, "patrons", "DELETE FROM login_failures")
    yield
    in_database(system, "patrons", "DELETE FROM login_failures")


def unique_reading():
    """A family and given name in katakana that no other test's patron has."""
    return " ".join("".join(secrets.choice(KATAKANA) for _ in range(5)) for _name in range(2))


def found_ids(staff, **query):
    response = staff.get(f"{staff.base_url}/api/v1/patrons", params=query, timeout=10)
    assert response.status_code == 200, response.text
    return sorted(patron["id"] for patron in response.json()["items"])


def as_hiragana_half_width_and_run_together(reading):
    """What a desk may type for ``reading`` (registered in katakana with a space): the family name in
    hiragana, the given name in half-width katakana, no space between them."""
    family, given = reading.split(" ")
    half_width = {unicodedata.normalize("NFKC", chr(code)): chr(code) for code in range(0xff66, 0xff9e)}
    return ("".join(chr(ord(char) - 0x60) for char in family)
            + "".join(half_width.get(char, char) for char in given))


def patron_session(system, card_number, pin):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {log_in(system, card_number, pin).json()['access_token']}"
    return session


def log_in(system, card_number, pin):
    return requests.post(f"{system.url}/api/v1/auth/patron-token", json={"card_number": card_number, "pin": pin},
                         timeout=10)


def audit(staff, patron):
    """The access record's entries about ``patron``, oldest first."""
    response = staff.get(f"{staff.base_url}/api/v1/audit", params={"patron_id": patron["id"]}, timeout=10)
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["items"]))


def refused(response, status, code):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return error


# --- the desk's look-up by name reading and birth date ----------------------------------------------------

@pytest.mark.privacy(10)
def test_a_patron_who_forgot_their_card_is_found_by_reading_and_birth_date_however_the_desk_types_it(system, staff):
    reading = unique_reading()
    patron = register_patron(staff, name_kana=reading, birth_date="1984-07-15")
    namesake = register_patron(staff, name_kana=reading, birth_date="1984-07-15", name="同姓 同名")
    register_patron(staff, name_kana=reading, birth_date="1984-07-16")

    typed = as_hiragana_half_width_and_run_together(reading)
    assert typed != reading.replace(" ", "")
    assert found_ids(staff, name_reading=typed, birth_date="1984-07-15") == sorted([patron["id"], namesake["id"]])
    assert found_ids(staff, name_reading=reading.replace(" ", "・"), birth_date="1984-07-15") == sorted(
        [patron["id"], namesake["id"]])
    assert found_ids(staff, name_reading=reading, birth_date="1984-07-14") == []
    assert found_ids(staff, name_reading=reading[:-1], birth_date="1984-07-15") == []

    looked_up = [entry for entry in audit(staff, patron) if entry["route"] == "GET /api/v1/patrons"]
    assert len(looked_up) == 2  # the two look-ups that found them; those that found nobody recorded nothing
    assert all(entry["action"] == "read" and entry["role"] == "admin" and "name_kana" in entry["fields"]
               for entry in looked_up)
    # what the database keeps to find them by is a keyed hash, not the reading
    [(kept,)] = in_database(system, "patrons", "SELECT reading_hash FROM patrons WHERE id = :id", id=patron["id"])
    assert re.fullmatch("[0-9a-f]{64}", kept)


def test_the_reading_look_up_follows_a_change_of_the_reading_or_the_birth_date(staff):
    before, after = unique_reading(), unique_reading()
    patron = register_patron(staff, name_kana=before, birth_date="1971-01-31")
    changed = staff.patch(f"{staff.base_url}/api/v1/patrons/{patron['id']}", json={"name_kana": after}, timeout=10)
    assert changed.status_code == 200, changed.text
    assert found_ids(staff, name_reading=before, birth_date="1971-01-31") == []
    assert found_ids(staff, name_reading=after, birth_date="1971-01-31") == [patron["id"]]

    changed = staff.patch(f"{staff.base_url}/api/v1/patrons/{patron['id']}", json={"birth_date": "1971-03-01"},
                          timeout=10)
    assert changed.status_code == 200, changed.text
    assert found_ids(staff, name_reading=after, birth_date="1971-01-31") == []
    assert found_ids(staff, name_reading=after, birth_date="1971-03-01") == [patron["id"]]


def test_a_reading_without_a_birth_date_or_in_latin_letters_is_a_clear_400(staff):
    error = refused(staff.get(f"{staff.base_url}/api/v1/patrons", params={"name_reading": "シケンハナコ"},
                              timeout=10), 400, "VALIDATION_ERROR")
    assert list(error["details"]) == ["birth_date"]
    error = refused(staff.get(f"{staff.base_url}/api/v1/patrons", params={"birth_date": "1990-04-01"},
                              timeout=10), 400, "VALIDATION_ERROR")
    assert list(error["details"]) == ["name_reading"]
    error = refused(staff.get(f"{staff.base_url}/api/v1/patrons", timeout=10,
                              params={"name_reading": "Shiken Hanako", "birth_date": "1990-04-01"}),
                    400, "VALIDATION_ERROR")
    assert error["details"] == {"name_reading": ["kana only"]}


def test_a_patron_is_not_found_by_reading_outside_the_desks_scope(system, staff):
    reading = unique_reading()
    register_patron(staff, name_kana=reading, birth_date="2001-09-09")
    patron = patron_session(system, register_patron(staff, pin="2468")["card_number"], "2468")
    refused(patron.get(f"{system.url}/api/v1/patrons", params={"name_reading": reading, "birth_date": "2001-09-09"},
                       timeout=10), 403, "FORBIDDEN")


# --- my page: the patron's own e-mail address ---------------------------------------------------------------

@pytest.mark.privacy(8)
def test_a_patron_changes_their_own_email_and_the_access_record_says_they_did(system, staff):
    patron = register_patron(staff, pin="2468")
    me = patron_session(system, patron["card_number"], "2468")
    changed = me.patch(f"{system.url}/api/v1/me", json={"email": "atarashii@example.jp"}, timeout=10)
    assert changed.status_code == 200, changed.text
    assert changed.json()["email"] == "atarashii@example.jp"
    assert me.get(f"{system.url}/api/v1/me", timeout=10).json()["email"] == "atarashii@example.jp"

    [change] = [entry for entry in audit(staff, patron) if entry["action"] == "change"]
    assert (change["actor"], change["role"], change["fields"], change["route"]) == (
        f"patron:{patron['id']}", "patron", ["email"], "PATCH /api/v1/me")

    removed = me.patch(f"{system.url}/api/v1/me", json={"email": None}, timeout=10)
    assert removed.status_code == 200 and removed.json()["email"] is None, removed.text


def test_my_page_changes_nothing_but_the_email_and_says_so(system, staff):
    patron = register_patron(staff, pin="2468")
    me = patron_session(system, patron["card_number"], "2468")
    error = refused(me.patch(f"{system.url}/api/v1/me", timeout=10, json={
        "email": "atarashii@example.jp", "name": "別人", "address": "どこか", "pin": "30718", "status": "active"}),
        400, "VALIDATION_ERROR")
    assert set(error["details"]) == {"name", "address", "pin", "status"}
    assert "desk" in error["details"]["address"][0] and "/api/v1/me/pin" in error["details"]["pin"][0]
    error = refused(me.patch(f"{system.url}/api/v1/me", json={"email": "not-an-address"}, timeout=10),
                    400, "VALIDATION_ERROR")
    assert list(error["details"]) == ["email"]
    assert refused(me.patch(f"{system.url}/api/v1/me", json={}, timeout=10), 400, "VALIDATION_ERROR")["details"] == {
        "email": ["Missing data for required field."]}
    unchanged = me.get(f"{system.url}/api/v1/me", timeout=10).json()
    assert (unchanged["email"], unchanged["name"]) == (patron["email"], patron["name"])
    assert [entry["action"] for entry in audit(staff, patron)].count("change") == 0


# --- my page: the PIN -----------------------------------------------------------------------------------

@pytest.mark.privacy(11)
def test_a_patron_changes_their_pin_with_the_current_one_and_their_older_tokens_end(system, staff):
    patron = register_patron(staff, pin="8303")
    me, elsewhere = (patron_session(system, patron["card_number"], "8303") for _session in range(2))
    changed = me.put(f"{system.url}/api/v1/me/pin", json={"current_pin": "8303", "new_pin": "30718"}, timeout=10)
    assert changed.status_code == 200, changed.text
    assert set(changed.json()) == {"access_token", "token_type", "expires_in"}

    for ended in (me, elsewhere):  # the token that asked ends too: the page goes on with the new one
        wait_until(lambda: ended.get(f"{system.url}/api/v1/me", timeout=10).status_code == 401, timeout=5,
                   message="the older token to be refused")
    fresh = requests.get(f"{system.url}/api/v1/me", timeout=10,
                         headers={"Authorization": f"Bearer {changed.json()['access_token']}"})
    assert fresh.status_code == 200 and fresh.json()["id"] == patron["id"], fresh.text
    assert log_in(system, patron["card_number"], "8303").status_code == 401
    assert log_in(system, patron["card_number"], "30718").status_code == 200

    [change] = [entry for entry in audit(staff, patron) if entry["action"] == "change"]
    assert (change["actor"], change["fields"], change["route"]) == (
        f"patron:{patron['id']}", ["pin"], "PUT /api/v1/me/pin")


@pytest.mark.privacy(11)
def test_a_wrong_current_pin_is_refused_and_counted_as_a_failed_log_in(system, staff):
    patron = register_patron(staff, pin="8303")
    me = patron_session(system, patron["card_number"], "8303")
    for attempt in range(MAX_FAILURES):
        error = refused(me.put(f"{system.url}/api/v1/me/pin", json={"current_pin": f"{attempt:04d}9",
                                                                     "new_pin": "30718"}, timeout=10),
                        400, "CURRENT_PIN_WRONG")
        assert list(error["details"]) == ["current_pin"]
    blocked = me.put(f"{system.url}/api/v1/me/pin", json={"current_pin": "8303", "new_pin": "30718"}, timeout=10)
    refused(blocked, 429, "TOO_MANY_ATTEMPTS")
    assert int(blocked.headers["Retry-After"]) > 0
    assert log_in(system, patron["card_number"], "8303").status_code == 429  # the card's log-in waits as well
    in_database(system, "patrons", "DELETE FROM login_failures")
    assert log_in(system, patron["card_number"], "8303").status_code == 200  # the PIN never changed
    assert me.get(f"{system.url}/api/v1/me", timeout=10).status_code == 200


def test_a_common_new_pin_is_refused_and_the_old_one_stays(system, staff):
    patron = register_patron(staff, pin="8303")
    me = patron_session(system, patron["card_number"], "8303")
    for common in ("1234", "0000", "2580"):
        error = refused(me.put(f"{system.url}/api/v1/me/pin", json={"current_pin": "8303", "new_pin": common},
                               timeout=10), 400, "PIN_TOO_COMMON")
        assert list(error["details"]) == ["new_pin"]
    error = refused(me.put(f"{system.url}/api/v1/me/pin", timeout=10,
                           json={"current_pin": "8303", "new_pin": "12", "card_number": patron["card_number"]}),
                    400, "VALIDATION_ERROR")
    assert set(error["details"]) == {"new_pin", "card_number"}
    assert me.get(f"{system.url}/api/v1/me", timeout=10).status_code == 200  # nothing was revoked
    assert log_in(system, patron["card_number"], "8303").status_code == 200


def test_staff_change_a_patron_on_the_patrons_routes_not_on_my_page(system, staff):
    for method, path in (("PATCH", "/api/v1/me"), ("PUT", "/api/v1/me/pin")):
        refused(staff.request(method, f"{system.url}{path}", json={"email": "x@example.jp"}, timeout=10),
                403, "FORBIDDEN")
