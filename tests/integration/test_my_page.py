"""A resident's own pages on the OPAC (issue 13): log in with card and PIN, see loans and renew, see holds and
cancel, place a hold from a work's page, see who looked at the record, log out; the session is a cookie that
is HttpOnly and SameSite=Strict, ends when unused, and forms need this site's origin and the session's CSRF
token. The OPAC asks the staff gateway's API with the resident's own token: the API's rules hold here.
Through the running system, on SQLite and PostgreSQL."""
import time

import pytest
import requests

from support import (
    HERE, PageVisitor, add_copy, check_out, csrf_of, in_database, register_patron, session_cookie, session_held, text_of,
    unique,
)

PIN = "4827"
SESSION_COOKIE = "shiori_resident"


class Resident(PageVisitor):
    """A browser at the OPAC."""

    def __init__(self, system):
        super().__init__(system.opac_url)

    def log_in(self, card_number, pin=PIN, next_path="/my"):
        return self.post("/login", card_number=card_number, pin=pin, next=next_path)

    def form(self, path, page_path="/my", **fields):
        return super().form(path, page_path, **fields)


@pytest.fixture
def resident(system):
    visitor = Resident(system)
    yield visitor
    visitor.close()


def test_a_resident_logs_in_and_sees_their_loans_and_holds(system, staff, resident):
    patron = register_patron(staff, pin=PIN)
    work, item = add_copy(staff)
    assert check_out(staff, patron["card_number"], item["barcode"]).status_code == 201
    wanted, _copy = add_copy(staff)
    other = register_patron(staff)
    assert check_out(staff, other["card_number"], _copy["barcode"]).status_code == 201
    assert staff.post(f"{system.url}/api/v1/holds", timeout=10, json={
        "work_id": wanted["id"], "pickup_library": "main", "card_number": patron["card_number"]}).status_code == 201

    assert resident.get("/my").status_code == 303  # not yet logged in: sent to log in
    assert resident.get("/my").headers["Location"] == "/login?next=%2Fmy"
    answer = resident.post("/login", follow=False, card_number=patron["card_number"], pin=PIN, next="/my")
    assert answer.status_code == 303 and answer.headers["Location"] == "/my"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over HTTPS it is Secure (tests/unit/test_sessions.py)
    page = resident.get("/my")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"  # no copy in the browser
    said = text_of(page)
    assert "利用状況" in said and patron["card_number"] in said
    assert work["title"] in said and "借りている資料（1点）" in said
    assert wanted["title"] in said and "予約順位 1 番目" in said
    assert "ログアウト" in said


def test_renewing_from_my_page_and_a_refusal_in_plain_japanese(system, staff, resident):
    patron = register_patron(staff, pin=PIN)
    _work, item = add_copy(staff)
    loan = check_out(staff, patron["card_number"], item["barcode"]).json()
    resident.log_in(patron["card_number"])
    renewed = resident.form(f"/my/loans/{loan['loan_id']}/renew")
    assert renewed.status_code == 200 and "貸出を延長しました。" in text_of(renewed)
    assert "延長 1 回" in text_of(renewed)
    limit = resident.form(f"/my/loans/{loan['loan_id']}/renew")
    assert limit.status_code == 409 and "延長できる回数をこえています。" in text_of(limit)
    # Someone else holds the other work: its renewal is refused, and the page says why.
    wanted, copy = add_copy(staff)
    held_loan = check_out(staff, patron["card_number"], copy["barcode"]).json()
    assert staff.post(f"{system.url}/api/v1/holds", timeout=10, json={
        "work_id": wanted["id"], "pickup_library": "main",
        "card_number": register_patron(staff)["card_number"]}).status_code == 201
    refused = resident.form(f"/my/loans/{held_loan['loan_id']}/renew")
    assert refused.status_code == 409
    assert "予約している方がいるため、延長できません。" in text_of(refused)


def test_placing_a_hold_from_a_work_page_and_cancelling_it(system, staff, resident):
    patron = register_patron(staff, pin=PIN)
    lent, copy = add_copy(staff)
    assert check_out(staff, register_patron(staff)["card_number"], copy["barcode"]).status_code == 201
    anonymous = resident.get(f"/works/{lent['id']}")
    assert "ログインして予約する" in text_of(anonymous)
    assert f'href="/login?next=%2Fworks%2F{lent["id"]}"' in anonymous.text
    assert resident.log_in(patron["card_number"], next_path=f"/works/{lent['id']}").status_code == 200
    held = resident.form(f"/works/{lent['id']}/hold", page_path=f"/works/{lent['id']}", pickup_library="main")
    assert held.status_code == 200 and "予約しました。" in text_of(held) and lent["title"] in text_of(held)
    again = resident.form(f"/works/{lent['id']}/hold", page_path=f"/works/{lent['id']}", pickup_library="main")
    assert again.status_code == 409 and "この資料はすでに予約しています。" in text_of(again)
    [hold] = requests.get(f"{system.url}/api/v1/patrons/{patron['id']}/holds", timeout=10,
                          headers=staff.headers).json()["items"]
    cancelled = resident.form(f"/my/holds/{hold['hold_id']}/cancel")
    assert cancelled.status_code == 200 and "予約を取り消しました。" in text_of(cancelled)
    assert "予約はありません。" in text_of(cancelled)


def test_a_wrong_pin_is_refused_in_plain_words_and_the_card_number_kept(system, staff, resident):
    patron = register_patron(staff, pin=PIN)
    refused = resident.log_in(patron["card_number"], pin="9999")
    assert refused.status_code == 401 and "Set-Cookie" not in refused.headers
    assert "利用カード番号または暗証番号がちがいます。" in text_of(refused)
    assert f'value="{patron["card_number"]}"' in refused.text


def test_the_gateway_counts_log_in_failures_by_the_address_its_own_proxy_forwards(system, staff):
    """The OPAC calls the gateway for every resident; one resident's wrong PINs must count against that
    resident's address, not block the OPAC's. The gateway believes X-Forwarded-For of its trusted proxies only
    (here the OPAC's 127.0.0.1)."""
    patron = register_patron(staff, pin=PIN)
    forwarded = f"203.0.113.{int(unique('')[:2], 16) % 250 + 1}"
    answer = requests.post(f"{system.url}/api/v1/auth/patron-token", timeout=10, headers={"X-Forwarded-For": forwarded},
                           json={"card_number": patron["card_number"], "pin": "9999"})
    assert answer.status_code == 401
    keys = {row.key for row in in_database(system, "patrons", "SELECT key FROM login_failures")}
    assert f"address:{forwarded}" in keys


def test_logging_out_ends_the_session(system, staff, resident):
    patron = register_patron(staff, pin=PIN)
    resident.log_in(patron["card_number"])
    page = resident.get("/my")
    out = resident.post("/logout", follow=False, csrf=csrf_of(page))
    assert out.status_code == 303 and out.headers["Location"] == "/?done=signed_out"
    assert f"{SESSION_COOKIE}=;" in out.headers["Set-Cookie"] or "Max-Age=0" in out.headers["Set-Cookie"]
    assert "ログアウトしました。" in text_of(resident.get("/?done=signed_out"))
    assert resident.get("/my").status_code == 303


def test_forms_need_the_sessions_csrf_token_and_this_sites_origin(system, staff, resident):
    patron = register_patron(staff, pin=PIN)
    _work, item = add_copy(staff)
    loan = check_out(staff, patron["card_number"], item["barcode"]).json()
    resident.log_in(patron["card_number"])
    assert resident.post(f"/my/loans/{loan['loan_id']}/renew", csrf="").status_code == 403  # no token
    assert resident.post(f"/my/loans/{loan['loan_id']}/renew", csrf="0" * 40).status_code == 403
    token = csrf_of(resident.get("/my"))
    foreign = resident.http.post(f"{resident.url}/my/loans/{loan['loan_id']}/renew", data={"csrf": token},
                                 headers={"Origin": "https://elsewhere.example"}, timeout=10, allow_redirects=False)
    assert foreign.status_code == 403
    cross_site = resident.http.post(f"{resident.url}/login", timeout=10, allow_redirects=False,
                                    data={"card_number": patron["card_number"], "pin": PIN},
                                    headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403 and "Set-Cookie" not in cross_site.headers
    [current] = requests.get(f"{system.url}/api/v1/patrons/{patron['id']}/loans", timeout=10,
                             headers=staff.headers).json()["items"]
    assert current["renewals"] == 0  # nothing refused was done


def test_a_session_unused_for_too_long_has_ended(system, staff, resident):
    patron = register_patron(staff, pin=PIN)
    resident.log_in(patron["card_number"])
    assert resident.get("/my").status_code == 200
    cookie = resident.http.cookies[SESSION_COOKIE]
    held = session_held(cookie)
    idle = int(system.environment("opac").get("SHIORI_OPAC_IDLE_SECONDS", 900))
    key = system.environment("opac")["SHIORI_OPAC_SESSION_KEY"]
    resident.http.cookies.clear()
    stale = session_cookie(key, held["token"], held["started"], time.time() - idle - 5)
    resident.http.cookies.set(SESSION_COOKIE, stale, **HERE)
    assert resident.get("/my").status_code == 303
    resident.http.cookies.clear()
    resident.http.cookies.set(SESSION_COOKIE, cookie, **HERE)
    assert resident.get("/my").status_code == 200  # the cookie as the OPAC made it: still a session
    resident.http.cookies.clear()
    resident.http.cookies.set(SESSION_COOKIE, f"{cookie.partition('.')[0]}.{'0' * 64}", **HERE)  # not the OPAC's
    assert resident.get("/my").status_code == 303


def test_who_looked_at_my_record(system, staff, resident):
    patron = register_patron(staff, pin=PIN)
    assert staff.get(f"{system.url}/api/v1/patrons/{patron['id']}", timeout=10).status_code == 200
    resident.log_in(patron["card_number"])
    page = resident.get("/my/access-log")
    assert page.status_code == 200
    said = text_of(page)
    assert "登録情報の閲覧記録" in said and "管理者" in said and "閲覧" in said and "登録" in said



def test_changing_email_and_pin_from_my_page(system, staff, resident):
    patron = register_patron(staff, pin=PIN)
    resident.log_in(patron["card_number"])
    changed = resident.form("/my/email", page_path="/my/settings", email="new-address@example.jp")
    assert changed.status_code == 200 and "メールアドレスを変更しました。" in text_of(changed)
    assert 'value="new-address@example.jp"' in resident.get("/my/settings").text
    bad = resident.form("/my/email", page_path="/my/settings", email="not an address")
    assert bad.status_code == 400 and "入力に誤りがあります。" in text_of(bad)
    assert 'value="not an address"' in bad.text  # the form keeps what was typed, not the address kept
    wrong = resident.form("/my/pin", page_path="/my/settings", current_pin="0000", new_pin="5938", new_pin_again="5938")
    assert wrong.status_code == 400 and "今の暗証番号がちがいます。" in text_of(wrong)
    common = resident.form("/my/pin", page_path="/my/settings", current_pin=PIN, new_pin="1234", new_pin_again="1234")
    assert common.status_code == 400 and "推測されやすい暗証番号" in text_of(common)
    differ = resident.form("/my/pin", page_path="/my/settings", current_pin=PIN, new_pin="5938", new_pin_again="5939")
    assert differ.status_code == 400 and "新しい暗証番号が2回とも同じになっていません。" in text_of(differ)
    done = resident.form("/my/pin", page_path="/my/settings", current_pin=PIN, new_pin="5938", new_pin_again="5938")
    assert done.status_code == 200 and "暗証番号を変更しました。" in text_of(done)  # still signed in, with a new token
    assert resident.get("/my").status_code == 200
    assert Resident(system).log_in(patron["card_number"], pin=PIN).status_code == 401
    assert Resident(system).log_in(patron["card_number"], pin="5938").status_code == 200
