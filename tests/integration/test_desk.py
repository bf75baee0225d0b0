"""The circulation desk's screen on the staff gateway (issue 13): staff log in for a library, scan a card, scan
copies one after another (each answered at once, a refusal with its reason), renew, place a hold for the patron;
check-in says what to do with each copy (棚へ / 予約棚へ with the slip / 回送). Through the running system, on
SQLite and PostgreSQL."""
import re
import time

import jwt
import pytest

from conftest import ADMIN
from support import (
    HERE, PageVisitor, add_copy, check_out, register_patron, session_cookie, session_held, text_of,
)

BRANCH_NAME = "試験市立図書館 東分館"
SESSION_COOKIE = "shiori_desk"


class Desk(PageVisitor):
    """A browser at the desk."""

    def __init__(self, system):
        super().__init__(system.url)

    def log_in(self, library="main", username=ADMIN["username"], password=ADMIN["password"]):
        return self.post("/desk/login", username=username, password=password, library=library, next="/desk")


@pytest.fixture
def desk(system):
    at_desk = Desk(system)
    yield at_desk
    at_desk.close()


def test_the_desk_needs_a_staff_log_in(system, desk):
    answer = desk.get("/desk")
    assert answer.status_code == 303 and answer.headers["Location"] == "/desk/login?next=%2Fdesk"
    wrong = desk.log_in(password="not-the-password")
    assert wrong.status_code == 401 and "ユーザー名またはパスワードがちがいます。" in text_of(wrong)
    page = desk.log_in()
    assert page.status_code == 200 and "利用カードをスキャン" in text_of(page)
    assert 'autofocus' in page.text


def test_scan_a_card_then_three_copies_then_one_refused(system, staff, desk):
    patron = register_patron(staff)
    copies = [add_copy(staff) for _ in range(3)]
    desk.log_in()
    shown = desk.post("/desk/patron", card_number=patron["card_number"])
    assert shown.headers["Cache-Control"] == "no-store"  # a shared desk computer keeps no copy of the patron
    assert shown.status_code == 200 and patron["name"] in text_of(shown) and "貸出中 0" in text_of(shown)
    for work, item in copies:
        lent = desk.post("/desk/checkout", card_number=patron["card_number"], item_barcode=item["barcode"])
        assert lent.status_code == 200, text_of(lent)
        assert f"貸出しました：{work['title']}" in text_of(lent)
        assert 'id="item_barcode" name="item_barcode"' in lent.text  # ready for the next scan
    said = text_of(lent)
    assert all(work["title"] in said for work, _item in copies)
    again = desk.post("/desk/checkout", card_number=patron["card_number"], item_barcode=copies[0][1]["barcode"])
    assert again.status_code == 409 and "この資料はすでに貸出中です。" in text_of(again)
    unknown = desk.post("/desk/checkout", card_number=patron["card_number"], item_barcode="NO-SUCH-COPY")
    assert unknown.status_code == 404 and "このバーコードの資料は見つかりません。" in text_of(unknown)
    nobody = desk.post("/desk/patron", card_number="000000000000")
    assert nobody.status_code == 404 and "この番号の利用者は見つかりません。" in text_of(nobody)


def test_a_scan_form_sent_twice_lends_once_and_shows_the_loan_again(system, staff, desk):
    """Enter pressed twice, or a reload that posts the form again: the form's own key makes it one request."""
    patron = register_patron(staff)
    work, item = add_copy(staff)
    desk.log_in()
    page = desk.post("/desk/patron", card_number=patron["card_number"])
    (form_key,) = re.findall(r'action="/desk/checkout".*?name="request_key" value="(\w+)"', page.text, re.S)
    for _ in range(2):
        lent = desk.post("/desk/checkout", card_number=patron["card_number"], item_barcode=item["barcode"],
                         request_key=form_key)
        assert lent.status_code == 200 and f"貸出しました：{work['title']}" in text_of(lent), text_of(lent)
    loans = staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}/loans", timeout=10).json()["items"]
    assert len(loans) == 1
    assert form_key not in lent.text  # the next scan is a new request


def test_renew_and_place_a_hold_for_the_patron_at_the_desk(system, staff, desk):
    patron = register_patron(staff)
    _work, item = add_copy(staff)
    loan = check_out(staff, patron["card_number"], item["barcode"]).json()
    wanted, lent_copy = add_copy(staff)
    assert check_out(staff, register_patron(staff)["card_number"], lent_copy["barcode"]).status_code == 201
    desk.log_in()
    desk.post("/desk/patron", card_number=patron["card_number"])
    renewed = desk.post("/desk/renew", card_number=patron["card_number"], loan_id=str(loan["loan_id"]))
    assert renewed.status_code == 200 and "延長しました" in text_of(renewed)
    refused = desk.post("/desk/renew", card_number=patron["card_number"], loan_id=str(loan["loan_id"]))
    assert refused.status_code == 409 and "延長できる回数をこえています。" in text_of(refused)
    held = desk.post("/desk/hold", card_number=patron["card_number"], work_id=str(wanted["id"]),
                     pickup_library="main")
    assert held.status_code == 200 and "予約しました。" in text_of(held) and wanted["title"] in text_of(held)
    assert "予約順位 1 番目" in text_of(held)
    bad = desk.post("/desk/hold", card_number=patron["card_number"], work_id="abc", pickup_library="main")
    assert bad.status_code == 400


def test_check_in_says_what_to_do_with_each_copy(system, staff, desk):
    patron, waiting = register_patron(staff), register_patron(staff)
    _plain_work, plain = add_copy(staff)
    held_work, held = add_copy(staff)
    _branch_work, elsewhere = add_copy(staff, library="east")
    for item in (plain, held):
        assert check_out(staff, patron["card_number"], item["barcode"]).status_code == 201
    assert check_out(staff, patron["card_number"], elsewhere["barcode"], library="east").status_code == 201
    assert staff.post(f"{system.url}/api/v1/holds", timeout=10, json={
        "work_id": held_work["id"], "pickup_library": "main", "card_number": waiting["card_number"]}).status_code == 201
    desk.log_in()
    assert desk.get("/desk/checkin").status_code == 200
    shelf = desk.post("/desk/checkin", item_barcode=plain["barcode"])
    assert shelf.status_code == 200 and "棚へ" in text_of(shelf)
    hold_shelf = desk.post("/desk/checkin", item_barcode=held["barcode"])
    said = text_of(hold_shelf)
    assert "予約棚へ（予約票をはさむ）" in said and waiting["name"] in said and "予約票" in said
    transit = desk.post("/desk/checkin", item_barcode=elsewhere["barcode"])  # returned here, it belongs there
    assert transit.status_code == 200 and f"回送：{BRANCH_NAME}" in text_of(transit)


def test_desk_forms_need_the_sessions_token(system, staff, desk):
    patron = register_patron(staff)
    desk.log_in()
    forged = desk.http.post(f"{system.url}/desk/patron", data={"card_number": patron["card_number"]}, timeout=10,
                            allow_redirects=False)
    assert forged.status_code == 403
    logged_out = desk.post("/desk/logout")
    assert logged_out.status_code == 200 and "職員ログイン" in text_of(logged_out)
    assert desk.get("/desk").status_code == 303


def test_a_librarian_logs_in_only_for_a_library_of_theirs(system, staff, desk):
    account = staff.post(f"{system.url}/api/v1/staff", timeout=10, json={
        "username": "desk-east-only", "password": "a-long-password-1", "role": "librarian",
        "libraries": ["east"]})
    assert account.status_code in (201, 409)
    refused = desk.log_in(library="main", username="desk-east-only", password="a-long-password-1")
    assert refused.status_code == 403 and "この図書館では使えません" in text_of(refused)
    assert desk.log_in(library="east", username="desk-east-only", password="a-long-password-1").status_code == 200


def test_a_desk_session_in_use_keeps_a_fresh_token_for_a_working_day(system, desk):
    desk.log_in()
    held = session_held(desk.http.cookies[SESSION_COOKIE])
    claims = jwt.decode(held["token"], options={"verify_signature": False})
    secret = system.environment("gateway")["SHIORI_TOKEN_SECRET"]
    key = system.environment("gateway")["SHIORI_GATEWAY_SESSION_KEY"]
    now = time.time()
    # Its token was issued 40 minutes ago (of an hour's lifetime): the next page gives the session a new one.
    old = jwt.encode({**claims, "iat": now - 2400, "exp": int(now + 1200)}, secret, algorithm="HS256")
    desk.http.cookies.clear()
    desk.http.cookies.set(SESSION_COOKIE, session_cookie(key, old, now - 2400, now, held["values"]), **HERE)
    assert desk.get("/desk").status_code == 200
    renewed = session_held(desk.http.cookies[SESSION_COOKIE])
    fresh = jwt.decode(renewed["token"], options={"verify_signature": False})
    assert fresh["iat"] > now - 60 and fresh["sub"] == claims["sub"] and fresh["role"] == claims["role"]
    assert renewed["started"] == now - 2400  # still the same session, begun at the log-in
    # A session begun more than a working day ago is not renewed: log in again.
    desk.http.cookies.clear()
    desk.http.cookies.set(SESSION_COOKIE, session_cookie(key, old, now - 13 * 3600, now, held["values"]), **HERE)
    assert desk.get("/desk").status_code == 303


def test_the_desk_and_my_page_keep_their_own_sessions_on_one_host(system, staff, desk):
    """A browser sends a host's cookies to each of its ports: each gateway names its session cookie its own."""
    patron = register_patron(staff, pin="4827")
    desk.log_in()
    resident = desk.http.post(f"{system.opac_url}/login", timeout=10, allow_redirects=False,
                              data={"card_number": patron["card_number"], "pin": "4827", "next": "/my"},
                              headers={"Origin": system.opac_url})
    assert resident.status_code == 303
    assert desk.get("/desk").status_code == 200  # still signed in at the desk
    assert desk.http.get(f"{system.opac_url}/my", timeout=10, allow_redirects=False).status_code == 200
