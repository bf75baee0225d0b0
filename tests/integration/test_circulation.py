"""Check-out and check-in through the gateway, against the real broker and databases."""
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest

from support import add_copy, check_in, check_out, register_patron, wait_until


def item_status(staff, barcode):
    return staff.get(f"{staff.base_url}/api/v1/items/{barcode}", timeout=10).json()


def test_a_loan_runs_from_check_out_to_check_in(staff):
    patron = register_patron(staff)
    work, item = add_copy(staff, title="吾輩は猫である")

    loan = check_out(staff, patron["card_number"], item["barcode"])
    assert loan.status_code == 201, loan.text
    assert loan.json()["due_date"] == (date.fromisoformat(loan.json()["loaned_on"]) + timedelta(days=14)).isoformat()
    assert loan.json()["title"] == "吾輩は猫である"

    loans = staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}/loans", timeout=10).json()
    assert [(entry["item_barcode"], entry["title"]) for entry in loans["items"]] == [(item["barcode"], "吾輩は猫である")]
    wait_until(lambda: item_status(staff, item["barcode"])["status"] == "on_loan", message="catalogue projection")
    work_view = staff.get(f"{staff.base_url}/api/v1/works/{work['id']}", timeout=10).json()
    assert work_view["availability"] == [{"library": "main", "name": "試験市立図書館", "total": 1, "available": 0}]

    returned = check_in(staff, item["barcode"])
    assert returned.status_code == 200, returned.text
    assert returned.json()["action"] == "shelve"
    assert staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}/loans", timeout=10).json()["items"] == []
    wait_until(lambda: item_status(staff, item["barcode"])["status"] == "available", message="catalogue projection")


def test_check_in_at_another_branch_sends_the_copy_home(staff):
    patron = register_patron(staff)
    _work, item = add_copy(staff, library="main")
    assert check_out(staff, patron["card_number"], item["barcode"], library="main").status_code == 201
    returned = check_in(staff, item["barcode"], library="east")
    assert returned.json()["action"] == "transit"
    assert returned.json()["destination"] == "main"


def test_loans_count_as_uses_of_the_card(staff):
    patron = register_patron(staff)
    for _ in range(2):
        _work, item = add_copy(staff)
        assert check_out(staff, patron["card_number"], item["barcode"]).status_code == 201

    def uses():
        return staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10).json()

    record = wait_until(lambda: uses()["total_uses"] == 2 and uses(), message="total_uses from loan events")
    assert record["last_used_on"] is not None


def test_a_copy_is_never_lent_twice_even_when_desks_race(staff):
    patrons = [register_patron(staff) for _ in range(6)]
    _work, item = add_copy(staff)
    with ThreadPoolExecutor(len(patrons)) as pool:
        statuses = list(pool.map(lambda p: check_out(staff, p["card_number"], item["barcode"]).status_code, patrons))
    assert sorted(statuses) == [201] + [409] * (len(patrons) - 1)


@pytest.mark.privacy(6)
def test_refusals_have_their_own_codes(staff):
    patron = register_patron(staff)
    _work, item = add_copy(staff)
    assert check_out(staff, patron["card_number"], item["barcode"]).status_code == 201

    again = check_out(staff, patron["card_number"], item["barcode"])
    assert (again.status_code, again.json()["error"]["code"]) == (409, "ITEM_ALREADY_ON_LOAN")
    delete = staff.delete(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10)
    assert (delete.status_code, delete.json()["error"]["code"]) == (409, "PATRON_HAS_LOANS")

    assert check_in(staff, item["barcode"]).status_code == 200
    twice = check_in(staff, item["barcode"])
    assert (twice.status_code, twice.json()["error"]["code"]) == (409, "ITEM_NOT_ON_LOAN")
    assert staff.delete(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10).status_code == 204
    gone = staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10)
    assert gone.status_code == 404


def test_unknown_card_barcode_and_library_are_404(staff):
    patron = register_patron(staff)
    _work, item = add_copy(staff)
    unknown_card = "100000000008"  # valid check digit, never issued (cards are drawn at random)
    cases = [
        (check_out(staff, unknown_card, item["barcode"]), "PATRON_NOT_FOUND"),
        (check_out(staff, patron["card_number"], "NO-SUCH-COPY"), "ITEM_NOT_FOUND"),
        (check_out(staff, patron["card_number"], item["barcode"], library="atlantis"), "LIBRARY_NOT_FOUND"),
        (check_in(staff, "NO-SUCH-COPY"), "ITEM_NOT_FOUND"),
    ]
    for response, code in cases:
        assert (response.status_code, response.json()["error"]["code"]) == (404, code)
