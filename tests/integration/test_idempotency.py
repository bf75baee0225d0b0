"""Idempotency-Key (API.md, issue 14): a write sent again with its key answers the first answer and changes
nothing, through the gateway against the real broker and databases."""
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.loans.errors import ItemAlreadyOnLoan
from shiori.idempotency import DeadlinePassed
from support import add_copy, check_in, in_database, register_patron, patron_fields, refused, wait_until


def post(staff, path, body, key):
    return staff.post(f"{staff.base_url}/api/v1/{path}", json=body, headers={"Idempotency-Key": key}, timeout=10)


def checkout_body(patron, item, library="main"):
    return {"card_number": patron["card_number"], "item_barcode": item["barcode"], "library": library}


def loans_of(staff, patron):
    return staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}/loans", timeout=10).json()["items"]


def test_a_check_out_sent_twice_with_one_key_lends_once_and_answers_the_first_answer_again(staff):
    """The reproduction from the issue: the second try answered 409 ITEM_ALREADY_ON_LOAN, so a desk that
    retried after a timeout could not tell whether its first try happened."""
    patron = register_patron(staff)
    _work, item = add_copy(staff, title="銀河鉄道の夜")
    key = str(uuid.uuid4())

    first = post(staff, "checkouts", checkout_body(patron, item), key)
    again = post(staff, "checkouts", checkout_body(patron, item), key)

    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json()
    assert [loan["item_barcode"] for loan in loans_of(staff, patron)] == [item["barcode"]]
    record = staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10).json
    wait_until(lambda: record()["total_uses"] == 1, message="the card's use counted")
    time.sleep(0.5)  # a second use, had the repeat made one, would have been counted by now too
    assert record()["total_uses"] == 1


def test_the_same_key_with_another_request_is_refused_and_changes_nothing(staff):
    patron, other = register_patron(staff), register_patron(staff)
    _work, item = add_copy(staff)
    key = str(uuid.uuid4())
    assert post(staff, "checkouts", checkout_body(patron, item), key).status_code == 201

    reused = post(staff, "checkouts", checkout_body(other, item), key)

    assert reused.status_code == 422, reused.text
    assert reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert loans_of(staff, other) == [] and len(loans_of(staff, patron)) == 1


def test_without_a_key_a_second_check_out_is_refused_as_before(staff):
    patron = register_patron(staff)
    _work, item = add_copy(staff)
    for expected in (201, 409):
        response = staff.post(f"{staff.base_url}/api/v1/checkouts", json=checkout_body(patron, item), timeout=10)
        assert response.status_code == expected, response.text
    assert response.json()["error"]["code"] == "ITEM_ALREADY_ON_LOAN"


def test_one_key_is_the_callers_own(system, staff):
    """Keys are per caller: another staff member's request with the same key string is a request of its own."""
    patron = register_patron(staff)
    (_, first_item), (_, second_item) = add_copy(staff), add_copy(staff)
    key = str(uuid.uuid4())
    assert post(staff, "checkouts", checkout_body(patron, first_item), key).status_code == 201
    librarian = staff.post(f"{staff.base_url}/api/v1/staff", timeout=10, json={
        "username": f"desk-{uuid.uuid4().hex[:8]}", "password": "a-long-password-1", "role": "librarian",
        "libraries": ["main"]})
    assert librarian.status_code == 201, librarian.text
    token = staff.post(f"{staff.base_url}/api/v1/auth/token", timeout=10, json={
        "username": librarian.json()["username"], "password": "a-long-password-1"}).json()["access_token"]
    theirs = staff.post(f"{staff.base_url}/api/v1/checkouts", json=checkout_body(patron, second_item), timeout=10,
                        headers={"Idempotency-Key": key, "Authorization": f"Bearer {token}"})
    assert theirs.status_code == 201, theirs.text
    assert len(loans_of(staff, patron)) == 2


def test_retries_racing_each_other_make_one_loan(staff):
    patron = register_patron(staff)
    _work, item = add_copy(staff)
    key = str(uuid.uuid4())
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post(staff, "checkouts", checkout_body(patron, item), key), range(4)))
    assert [answer.status_code for answer in answers] == [201] * 4, [answer.text for answer in answers]
    assert len({answer.json()["loan_id"] for answer in answers}) == 1
    assert len(loans_of(staff, patron)) == 1


def test_a_renewal_sent_twice_renews_once(staff):
    patron = register_patron(staff)
    _work, item = add_copy(staff)
    loan = post(staff, "checkouts", checkout_body(patron, item), str(uuid.uuid4())).json()
    key = str(uuid.uuid4())
    first, again = (post(staff, f"loans/{loan['loan_id']}/renew", None, key) for _ in range(2))
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json() == again.json() and first.json()["renewals"] == 1
    assert loans_of(staff, patron)[0]["renewals"] == 1


def test_a_registration_sent_twice_makes_one_card(system, staff):
    fields = patron_fields()
    key = str(uuid.uuid4())
    first, again = (post(staff, "patrons", fields, key) for _ in range(2))
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["card_number"] == first.json()["card_number"]
    # Nothing of the patron is kept with the key: the repeat read the record again.
    kept = json.dumps({"result": {"patron_id": first.json()["id"]}})
    assert in_database(system, "patrons", "SELECT count(*) FROM command_records WHERE answer = :kept",
                       kept=kept) == [(1,)]


def test_a_hold_and_its_cancellation_sent_twice_happen_once(staff):
    patron = register_patron(staff)
    work, _item = add_copy(staff)
    body = {"work_id": work["id"], "pickup_library": "main", "card_number": patron["card_number"]}
    key = str(uuid.uuid4())
    first, again = (post(staff, "holds", body, key) for _ in range(2))
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert first.json() == again.json()
    holds = staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}/holds", timeout=10).json()
    assert [hold["hold_id"] for hold in holds["items"]] == [first.json()["hold_id"]]

    cancel_key = str(uuid.uuid4())
    for _ in range(2):
        cancelled = staff.delete(f"{staff.base_url}/api/v1/holds/{first.json()['hold_id']}", timeout=10,
                                 headers={"Idempotency-Key": cancel_key})
        assert cancelled.status_code == 204, cancelled.text


def test_a_refusal_is_the_first_answer_too(staff):
    """A check-out refused because the copy was out stays refused under its key, even once the copy is back:
    a retry repeats the request the desk made, a new request takes a new key."""
    patron, other = register_patron(staff), register_patron(staff)
    _work, item = add_copy(staff)
    assert post(staff, "checkouts", checkout_body(other, item), str(uuid.uuid4())).status_code == 201
    key = str(uuid.uuid4())
    refused(post(staff, "checkouts", checkout_body(patron, item), key), "ITEM_ALREADY_ON_LOAN")
    assert check_in(staff, item["barcode"]).status_code == 200

    refused(post(staff, "checkouts", checkout_body(patron, item), key), "ITEM_ALREADY_ON_LOAN")
    assert post(staff, "checkouts", checkout_body(patron, item), str(uuid.uuid4())).status_code == 201


@pytest.mark.privacy(2)
def test_once_the_loan_ends_its_check_out_answer_is_kept_nowhere(system, staff):
    """A reading record does not outlive the loan, a stored answer included: after the check-in the record
    keeps only its key, and a repeat learns that the request was carried out, not what it was."""
    patron = register_patron(staff)
    title = f"記録の残らない本 {uuid.uuid4().hex[:8]}"
    _work, item = add_copy(staff, title=title)
    key = str(uuid.uuid4())
    loan = post(staff, "checkouts", checkout_body(patron, item), key)
    assert loan.status_code == 201
    assert in_database(system, "loans", "SELECT count(*) FROM command_records WHERE answer LIKE :title",
                       title=f"%{title}%") == [(1,)]

    assert check_in(staff, item["barcode"]).status_code == 200

    assert in_database(system, "loans", "SELECT count(*) FROM command_records WHERE answer LIKE :title"
                       " OR answer LIKE :barcode", title=f"%{title}%", barcode=f"%{item['barcode']}%") == [(0,)]
    again = post(staff, "checkouts", checkout_body(patron, item), key)
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "REQUEST_ALREADY_DONE"
    assert loans_of(staff, patron) == []


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "two words"])
def test_a_malformed_key_is_refused_before_anything_happens(staff, key):
    patron = register_patron(staff)
    _work, item = add_copy(staff)
    response = post(staff, "checkouts", checkout_body(patron, item), key)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert "Idempotency-Key" in response.json()["error"]["details"]
    assert loans_of(staff, patron) == []


def test_a_command_past_its_deadline_is_refused_not_run_late(system, staff):
    """A call taken up after its caller gave up (and answered 503) changes nothing."""
    patron = register_patron(staff)
    _work, item = add_copy(staff)
    gave_up = int((time.time() - 1) * 1000)
    with system.rpc_as({"actor": "staff:1", "role": "admin", "deadline": gave_up}) as rpc:
        with pytest.raises(DeadlinePassed):
            rpc.loans.checkout(checkout_body(patron, item))
    assert loans_of(staff, patron) == []
    with system.rpc_as({"actor": "staff:1", "role": "admin"}) as rpc:
        rpc.loans.checkout(checkout_body(patron, item))
        with pytest.raises(ItemAlreadyOnLoan):
            rpc.loans.checkout(checkout_body(patron, item))
