"""The desk's lists (hold shelf, copies to send, pull list, copies in transit here, the phone list) and the admin
pages (libraries, calendars, unplanned closures, loan rules, staff accounts, notices), through the running system
on SQLite and PostgreSQL (issue 13). Admin pages are for admins: a librarian is refused them."""
import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from nameko.runners import ServiceRunner

from conftest import ADMIN
from shiori.commands.serve import service_class
from shiori.config import load_config
from support import (
    add_copy, check_in, check_out, free_port, in_database, patrons_know, register_patron, text_of, unique, wait_until,
    wall_today,
)
from test_desk import Desk

LIBRARIAN_PASSWORD = "a-long-librarian-password"


@pytest.fixture
def desk(system):
    at_desk = Desk(system)
    at_desk.log_in()
    yield at_desk
    at_desk.http.close()


@pytest.fixture
def librarian_desk(system, staff):
    username = unique("desk-librarian-").lower()
    assert staff.post(f"{system.url}/api/v1/staff", timeout=10, json={
        "username": username, "password": LIBRARIAN_PASSWORD, "role": "librarian",
        "libraries": ["main"]}).status_code == 201
    at_desk = Desk(system)
    assert at_desk.log_in(username=username, password=LIBRARIAN_PASSWORD).status_code == 200
    yield at_desk
    at_desk.http.close()


def row_of(page, needle):
    """The table row of ``page`` that holds ``needle``, as HTML."""
    [row] = [row for row in re.findall(r"<tr[ >].*?</tr>", page.text, re.S) if needle in row]
    return row


def new_library(staff, kind="branch"):
    code = unique("lib-").lower()
    assert staff.post(f"{staff.base_url}/api/v1/libraries", timeout=10,
                      json={"code": code, "name": f"試験の館 {code}", "kind": kind}).status_code == 201
    return code


def hold_for(staff, patron, work, library="main"):
    response = staff.post(f"{staff.base_url}/api/v1/holds", timeout=10, json={
        "work_id": work["id"], "pickup_library": library, "card_number": patron["card_number"]})
    assert response.status_code == 201, response.text
    return response.json()


# --- the lists -------------------------------------------------------------------------------------------

def test_the_hold_shelf_lists_the_copies_kept_and_marks_those_not_picked_up_in_time(system, staff, desk):
    reader, waiting = register_patron(staff), register_patron(staff)
    kept = [add_copy(staff) for _ in range(2)]
    for work, item in kept:
        assert check_out(staff, reader["card_number"], item["barcode"]).status_code == 201
        hold_for(staff, waiting, work)
        assert check_in(staff, item["barcode"]).json()["action"] == "hold_shelf"
    (_fresh_work, fresh), (lapsed_work, lapsed) = kept
    in_database(system, "loans", "UPDATE holds SET ready_until = :day WHERE item_barcode = :barcode",
                day=wall_today() - timedelta(days=1), barcode=lapsed["barcode"])
    shelf = desk.get("/desk/lists/hold-shelf")
    assert shelf.status_code == 200, text_of(shelf)
    assert all(work["title"] in text_of(shelf) for work, _item in kept)
    assert "期限切れ：棚から下ろす" in row_of(shelf, lapsed["barcode"])
    assert lapsed_work["title"] in row_of(shelf, lapsed["barcode"])
    assert "期限切れ" not in row_of(shelf, fresh["barcode"])
    assert waiting["name"] not in text_of(shelf)  # the slip in the copy names the patron; the list does not
    assert 'class="printable"' in shelf.text


def test_copies_to_send_are_listed_where_they_were_returned_and_as_in_transit_where_they_go(system, staff, desk):
    reader = register_patron(staff)
    _work, travelling = add_copy(staff, library="east")
    assert check_out(staff, reader["card_number"], travelling["barcode"], library="east").status_code == 201
    assert check_in(staff, travelling["barcode"], library="main").json()["action"] == "transit"
    to_send = desk.get("/desk/lists/to-send")
    assert to_send.status_code == 200 and "試験市立図書館 東分館" in row_of(to_send, travelling["barcode"])
    east_desk = Desk(system)
    east_desk.log_in(library="east")
    arriving = east_desk.get("/desk/lists/in-transit")
    assert arriving.status_code == 200 and "試験市立図書館" in row_of(arriving, travelling["barcode"])
    assert travelling["barcode"] not in desk.get("/desk/lists/in-transit").text
    assert check_in(staff, travelling["barcode"], library="east").json()["action"] == "shelve"
    assert travelling["barcode"] not in east_desk.get("/desk/lists/in-transit").text
    east_desk.http.close()


def test_the_pull_list_names_copies_on_this_library_s_shelves_that_holds_want(system, staff, desk):
    work, on_shelf = add_copy(staff, library="main")
    hold_for(staff, register_patron(staff), work)
    wait_until(lambda: on_shelf["barcode"] in desk.get("/desk/lists/pull").text, message="the pull list")
    row = row_of(desk.get("/desk/lists/pull"), on_shelf["barcode"])
    assert work["title"] in row and "一般書架" in row and "913.6" in row
    counts = text_of(desk.get("/desk/lists"))
    assert re.search(r"抜き取りリスト\s*:\s*[1-9]", counts)
    assert check_in(staff, on_shelf["barcode"]).json()["action"] == "hold_shelf"
    wait_until(lambda: on_shelf["barcode"] not in desk.get("/desk/lists/pull").text, message="the copy pulled")


def test_the_phone_list_shows_whom_to_call_and_a_call_made_leaves_it(system, staff, desk):
    reader, unreachable = register_patron(staff), register_patron(staff, email=None, phone="0584-77-0123")
    work, item = add_copy(staff)
    assert check_out(staff, reader["card_number"], item["barcode"]).status_code == 201
    hold_for(staff, unreachable, work)
    assert check_in(staff, item["barcode"]).json()["action"] == "hold_shelf"
    listed = wait_until(lambda: (page := desk.get("/desk/lists/phone")) and "0584-77-0123" in page.text and page,
                        message="the phone list")
    row = row_of(listed, "0584-77-0123")
    assert unreachable["name"] in row and "予約資料のご用意" in row
    notice_id = re.search(r'name="notice_id" value="(\d+)"', row).group(1)
    phoned = desk.post("/desk/lists/phone", notice_id=notice_id)
    assert phoned.status_code == 200 and "連絡済みにしました。" in text_of(phoned)
    assert "0584-77-0123" not in phoned.text
    again = desk.post("/desk/lists/phone", notice_id=notice_id)
    assert again.status_code == 404 and "このお知らせはすでに処理されています。" in text_of(again)


# --- who may use the admin pages -----------------------------------------------------------------------------

ADMIN_PAGES = ["/desk/admin", "/desk/admin/libraries", "/desk/admin/libraries/main/calendar", "/desk/admin/closures",
               "/desk/admin/loan-rules", "/desk/admin/staff", "/desk/admin/notices"]


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_an_admin_opens_each_admin_page_and_a_librarian_is_refused_it(system, desk, librarian_desk, path):
    assert desk.get(path).status_code == 200
    refused = librarian_desk.get(path)
    assert refused.status_code == 403 and "お使いのアカウントの役割では使えません" in text_of(refused)


def test_only_an_admin_s_desk_links_to_the_admin_pages_and_a_librarian_s_form_is_refused(system, desk,
                                                                                         librarian_desk):
    assert 'href="/desk/admin"' in desk.get("/desk").text
    page = librarian_desk.get("/desk")
    assert 'href="/desk/lists"' in page.text and 'href="/desk/admin"' not in page.text
    code = unique("lib-").lower()
    refused = librarian_desk.post("/desk/admin/libraries", code=code, name="勝手な館", kind="branch")
    assert refused.status_code == 403
    assert code not in desk.get("/desk/admin/libraries").text


def test_admin_pages_send_a_visitor_without_a_session_to_log_in(system):
    visitor = Desk(system)
    answer = visitor.get("/desk/admin/staff")
    assert answer.status_code == 303 and answer.headers["Location"] == "/desk/login?next=%2Fdesk%2Fadmin%2Fstaff"
    visitor.http.close()


# --- libraries, calendars and closures ---------------------------------------------------------------------------

def test_an_admin_adds_a_library_and_is_told_what_is_wrong_with_one_refused(system, desk):
    code = unique("lib-").lower()
    added = desk.post("/desk/admin/libraries", code=code, name="試験市立図書館 西分館", kind="branch")
    assert added.status_code == 200 and "図書館を追加しました。" in text_of(added)
    assert "試験市立図書館 西分館" in row_of(added, code)
    twice = desk.post("/desk/admin/libraries", code=code, name="二つめの西分館", kind="branch")
    assert twice.status_code == 409 and "このコードの図書館はすでにあります。" in text_of(twice)
    assert 'value="二つめの西分館"' in twice.text  # what was typed stays
    bad = desk.post("/desk/admin/libraries", code="Not A Code", name="", kind="branch")
    assert bad.status_code == 400
    assert "半角の英小文字・数字・「-」で、32文字までで入力してください。" in text_of(bad)
    assert 'id="code-error"' in bad.text and 'id="name-error"' in bad.text and 'value="Not A Code"' in bad.text
    assert 'aria-invalid="true" aria-describedby="code-error"' in bad.text


def test_an_admin_sets_a_library_s_closing_days_and_closed_periods(system, staff, desk):
    code = new_library(staff)
    path = f"/desk/admin/libraries/{code}/calendar"
    desk.get(path)
    saved = desk.post(path, closed_weekdays=["0", "3"], first=["2031-12-29", ""], last=["2032-01-03", ""],
                      reason=["年末年始", ""])
    assert saved.status_code == 200 and "カレンダーを保存しました。" in text_of(saved)
    assert re.search(r'value="0" checked', saved.text) and re.search(r'value="3" checked', saved.text)
    assert 'value="2031-12-29"' in saved.text and 'value="年末年始"' in saved.text
    calendar = staff.get(f"{system.url}/api/v1/libraries/{code}/calendar", timeout=10).json()
    assert calendar == {"closed_weekdays": [0, 3],
                        "closures": [{"first": "2031-12-29", "last": "2032-01-03", "reason": "年末年始"}]}

    backwards = desk.post(path, closed_weekdays=["0"], first=["2032-03-10"], last=["2032-03-01"], reason=["点検"])
    assert backwards.status_code == 400 and 'id="last-1-error"' in backwards.text
    assert "初日と同じか後の日付（1年以内）を入力してください。" in text_of(backwards)
    assert 'value="2032-03-10"' in backwards.text and 'value="点検"' in backwards.text
    never_open = desk.post(path, closed_weekdays=[str(day) for day in range(7)])
    assert never_open.status_code == 400 and "週に1日は開館日が必要です。" in text_of(never_open)
    assert staff.get(f"{system.url}/api/v1/libraries/{code}/calendar", timeout=10).json() == calendar


def test_an_unplanned_closure_moves_the_loans_due_and_a_closure_without_libraries_is_refused(system, staff, desk):
    code = new_library(staff)
    patrons_know(system, code)
    _work, item = add_copy(staff, library=code)
    loan = check_out(staff, register_patron(staff)["card_number"], item["barcode"], library=code).json()
    closed = desk.post("/desk/admin/closures", libraries=[code], first=loan["due_date"], last=loan["due_date"],
                       reason="台風")
    assert closed.status_code == 200 and "臨時休館を登録しました。1 件の貸出" in text_of(closed)
    nowhere = desk.post("/desk/admin/closures", first="2032-09-01", last="2032-09-02", reason="停電")
    assert nowhere.status_code == 400 and 'id="libraries-error"' in nowhere.text
    assert 'value="2032-09-01"' in nowhere.text and 'value="停電"' in nowhere.text


# --- loan rules and circulation settings ---------------------------------------------------------------------

def policy_form(library, **changes):
    return {"patron_category": "child", "item_type": "book", "library": library, "loan_days": "21",
            "max_items": "5", "max_items_of_type": "", "renewals": "1", "max_holds": "3", **changes}


def test_an_admin_adds_changes_and_deletes_a_loan_rule(system, staff, desk):
    code = new_library(staff)
    desk.get("/desk/admin/loan-rules")
    added = desk.post("/desk/admin/loan-rules", **policy_form(code))
    assert added.status_code == 200 and "貸出規則を追加しました。" in text_of(added)
    assert '<option value="child" selected>児童</option>' in added.text
    [policy] = [policy for policy in staff.get(f"{system.url}/api/v1/loan-policies", timeout=10).json()["policies"]
                if policy["library"] == code]
    assert (policy["loan_days"], policy["max_items_of_type"], policy["patron_category"]) == (21, None, "child")
    twice = desk.post("/desk/admin/loan-rules", **policy_form(code))
    assert twice.status_code == 409 and "この利用者区分・資料種別・図書館の貸出規則はすでにあります。" in text_of(twice)
    not_a_number = desk.post("/desk/admin/loan-rules", **policy_form(code, item_type="av", loan_days="三週間"))
    assert not_a_number.status_code == 400 and 'id="new-loan_days-error"' in not_a_number.text
    assert 'value="三週間"' in not_a_number.text

    changed = desk.post(f"/desk/admin/loan-rules/{policy['id']}", **policy_form(code, loan_days="28"))
    assert changed.status_code == 200 and "貸出規則を変更しました。" in text_of(changed)
    too_long = desk.post(f"/desk/admin/loan-rules/{policy['id']}", **policy_form(code, loan_days="400"))
    assert too_long.status_code == 400 and f'id="p{policy["id"]}-loan_days-error"' in too_long.text
    assert 'value="400"' in too_long.text
    kept = staff.get(f"{system.url}/api/v1/loan-policies", timeout=10).json()["policies"]
    assert [rule["loan_days"] for rule in kept if rule["id"] == policy["id"]] == [28]

    deleted = desk.post(f"/desk/admin/loan-rules/{policy['id']}/delete")
    assert deleted.status_code == 200 and "貸出規則を削除しました。" in text_of(deleted)
    gone = desk.post(f"/desk/admin/loan-rules/{policy['id']}/delete")
    assert gone.status_code == 404 and "この貸出規則はすでに削除されています。" in text_of(gone)


def test_an_admin_saves_the_circulation_settings_and_a_wrong_number_is_refused(system, staff, desk):
    before = staff.get(f"{system.url}/api/v1/circulation-settings", timeout=10).json()
    desk.get("/desk/admin/loan-rules")
    form = {"renew_from": before["renew_from"], "renewal_grace_days": str(before["renewal_grace_days"]),
            **({"suspend_for_late_days": "1"} if before["suspend_for_late_days"] else {})}
    saved = desk.post("/desk/admin/circulation-settings", **form)
    assert saved.status_code == 200 and "貸出の設定を保存しました。" in text_of(saved)
    assert staff.get(f"{system.url}/api/v1/circulation-settings", timeout=10).json() == before
    refused = desk.post("/desk/admin/circulation-settings", **dict(form, renewal_grace_days="-3"))
    assert refused.status_code == 400 and 'id="renewal_grace_days-error"' in refused.text
    assert 'value="-3"' in refused.text
    assert staff.get(f"{system.url}/api/v1/circulation-settings", timeout=10).json() == before


# --- staff accounts ----------------------------------------------------------------------------------------------

def account_named(system, username):
    with system.rpc() as rpc:
        [account] = [account for account in rpc.patrons.list_staff_accounts() if account["username"] == username]
    return account


def test_an_admin_adds_changes_and_deletes_a_staff_account(system, staff, desk):
    username = unique("clerk-").lower()
    desk.get("/desk/admin/staff")
    short = desk.post("/desk/admin/staff", username=username, password="short", role="librarian", libraries=["main"])
    assert short.status_code == 400 and "パスワードは10文字以上にしてください。" in text_of(short)
    assert f'value="{username}"' in short.text and 'id="new-password-error"' in short.text
    added = desk.post("/desk/admin/staff", username=username, password=LIBRARIAN_PASSWORD, role="librarian",
                      libraries=["main"])
    assert added.status_code == 200 and "職員アカウントを追加しました。" in text_of(added)
    taken = desk.post("/desk/admin/staff", username=username, password=LIBRARIAN_PASSWORD, role="librarian",
                      libraries=["main"])
    assert taken.status_code == 409 and "このユーザー名はすでに使われています。" in text_of(taken)

    account = account_named(system, username)
    moved = desk.post(f"/desk/admin/staff/{account['id']}", role="librarian", libraries=["main", "east"],
                      password="")
    assert moved.status_code == 200 and "職員アカウントを変更しました。" in text_of(moved)
    assert sorted(account_named(system, username)["libraries"]) == ["east", "main"]
    nowhere = desk.post(f"/desk/admin/staff/{account['id']}", role="librarian", libraries=["no-such-library"])
    assert nowhere.status_code == 400 and f'id="a{account["id"]}-libraries-error"' in nowhere.text
    clerk = Desk(system)
    assert clerk.log_in(library="east", username=username, password=LIBRARIAN_PASSWORD).status_code == 200
    clerk.http.close()

    deleted = desk.post(f"/desk/admin/staff/{account['id']}/delete")
    assert deleted.status_code == 200 and "職員アカウントを削除しました。" in text_of(deleted)
    assert username not in deleted.text


@pytest.fixture(scope="module")
def lone_admin_gateway(system):
    """A gateway serving a tenant of its own with one admin, so that no other test's second admin makes a
    LAST_ADMIN refusal moot (the desk logs in to its gateway's tenant)."""
    tenant = unique("oneadmin").lower()[:30]
    with system.rpc(tenant=tenant) as rpc:
        rpc.catalog.ensure_tenant({"code": tenant, "name": "一人町"})
        rpc.catalog.add_library({"code": "main", "name": "一人町図書館", "kind": "main"})
        rpc.patrons.ensure_staff_account(ADMIN)
    patrons_know(system, "main", tenant=tenant)
    port = free_port()
    runner = ServiceRunner(load_config("gateway", {**system.environment("gateway"), "SHIORI_TENANT": tenant,
                                                   "SHIORI_GATEWAY_PORT": str(port)}))
    runner.add_service(service_class("gateway"))
    runner.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}")
    runner.stop()


def test_the_last_admin_is_neither_deleted_nor_made_a_librarian(lone_admin_gateway):
    desk = Desk(lone_admin_gateway)
    assert desk.log_in().status_code == 200
    page = desk.get("/desk/admin/staff")
    [account_id] = re.findall(r'action="/desk/admin/staff/(\d+)/delete"', page.text)
    refused = desk.post(f"/desk/admin/staff/{account_id}/delete")
    assert refused.status_code == 409
    assert "最後の管理者アカウントです。先にほかの管理者を作ってください。" in text_of(refused)
    demoted = desk.post(f"/desk/admin/staff/{account_id}", role="librarian", libraries=["main"])
    assert demoted.status_code == 409 and 'value="librarian" selected' in demoted.text
    assert "最後の管理者アカウントです" in text_of(demoted)
    assert desk.get("/desk/admin/staff").status_code == 200  # still an admin, still signed in
    desk.http.close()


# --- notices -----------------------------------------------------------------------------------------------------

def test_an_admin_words_a_notice_and_a_half_written_one_is_refused(system, staff, desk):
    before = staff.get(f"{system.url}/api/v1/notice-settings", timeout=10).json()
    desk.get("/desk/admin/notices")
    wording = {"subject_hold_ready": "【$library】ご予約の本が届きました", "body_hold_ready": "$name 様\n$date までにどうぞ。"}
    try:
        saved = desk.post("/desk/admin/notices", include_titles="1", **wording)
        assert saved.status_code == 200 and "お知らせの設定を保存しました。" in text_of(saved)
        assert "【$library】ご予約の本が届きました" in saved.text and 'name="include_titles" value="1" checked' in saved.text
        assert staff.get(f"{system.url}/api/v1/notice-settings", timeout=10).json() == {
            "include_titles": True, "templates": {"hold_ready": {"subject": wording["subject_hold_ready"],
                                                                 "body": wording["body_hold_ready"]}}}
        half = desk.post("/desk/admin/notices", subject_overdue="返却してください", body_overdue="")
        assert half.status_code == 400 and 'id="body_overdue-error"' in half.text
        assert 'value="返却してください"' in half.text
    finally:
        assert staff.put(f"{system.url}/api/v1/notice-settings", json=before, timeout=10).status_code == 200
