"""Notices by e-mail through a real SMTP server in this process (aiosmtpd), on SQLite and PostgreSQL: a
consumer of the loans service's events that joined without any emitter changing."""
from datetime import date, timedelta

import pytest
from support import add_copy, check_in, check_out, register_patron, run_daily_pass, unique, wait_until

DEFAULT_SETTINGS = {"include_titles": False, "templates": {}}


@pytest.fixture(autouse=True)
def default_settings(staff):
    yield
    assert staff.put(f"{staff.base_url}/api/v1/notice-settings", json=DEFAULT_SETTINGS, timeout=10).status_code == 200


def reader(staff, **fields):
    return register_patron(staff, email=f"{unique('reader')}@example.jp".lower(), **fields)


def hold_becomes_ready(staff, patron):
    """A hold on a new work whose copy is then checked in for it: the hold is ready at main."""
    work, copy = add_copy(staff)
    assert staff.post(f"{staff.base_url}/api/v1/holds", timeout=10, json={
        "work_id": work["id"], "pickup_library": "main", "card_number": patron["card_number"]}).status_code == 201
    assert check_in(staff, copy["barcode"]).json()["action"] == "hold_shelf"
    return work


def mail_to(smtp_server, address, count=1):
    return wait_until(lambda: len(smtp_server.handler.to(address)) >= count and smtp_server.handler.to(address),
                      timeout=30, message=f"mail to {address}")


def test_a_ready_hold_is_told_by_mail_without_its_title_unless_the_library_chooses(system, staff, smtp_server):
    patron = reader(staff)
    work = hold_becomes_ready(staff, patron)
    [message] = mail_to(smtp_server, patron["email"])
    body = message.get_content()
    assert message["Subject"] == "【試験市立図書館】ご予約の資料をご用意しました"
    assert "試験 花子 様" in body and (system.today() + timedelta(days=7)).isoformat() in body
    assert work["title"] not in body and "試験市立図書館" in str(message["From"])

    settings = {"include_titles": True, "templates": {}}
    assert staff.put(f"{staff.base_url}/api/v1/notice-settings", json=settings, timeout=10).json() == settings
    second = hold_becomes_ready(staff, patron)
    messages = mail_to(smtp_server, patron["email"], count=2)
    assert f"「{second['title']}」" in messages[1].get_content()


def test_reminders_of_due_and_overdue_loans_use_the_tenant_wording(system, staff, smtp_server):
    patron = reader(staff)
    _work, copy = add_copy(staff)
    loan = check_out(staff, patron["card_number"], copy["barcode"]).json()
    wording = {"include_titles": False, "templates": {
        "due_soon": {"subject": "$library より: 返却日 $date", "body": "$name さん、$items 冊の返却日は $date です。"}}}
    assert staff.put(f"{staff.base_url}/api/v1/notice-settings", json=wording, timeout=10).status_code == 200
    due = date.fromisoformat(loan["due_date"])
    with system.travel(to=due - timedelta(days=2)):
        run_daily_pass(system)
        [due_soon] = mail_to(smtp_server, patron["email"])
    assert due_soon["Subject"] == f"試験市立図書館 より: 返却日 {due.isoformat()}"
    assert due_soon.get_content().strip() == f"試験 花子 さん、1 冊の返却日は {due.isoformat()} です。"

    with system.travel(to=due + timedelta(days=1)):
        run_daily_pass(system)
        overdue = mail_to(smtp_server, patron["email"], count=2)[1]
    assert overdue["Subject"] == "【試験市立図書館】返却期限を過ぎた資料があります"
    assert due.isoformat() in overdue.get_content()

    for bad in ({"include_titles": "sometimes"}, {"include_titles": True, "templates": {"fines": {
            "subject": "x", "body": "y"}}}, {"include_titles": True, "templates": {"overdue": {"subject": ""}}}):
        assert staff.put(f"{staff.base_url}/api/v1/notice-settings", json=bad, timeout=10).status_code == 400


def test_patrons_without_mail_are_listed_for_the_desk_to_phone(system, staff):
    patron = register_patron(staff, email=None, phone="0584-99-0001")
    hold_becomes_ready(staff, patron)

    def listed():
        return [entry for entry in staff.get(f"{staff.base_url}/api/v1/notices/phone-list", timeout=10).json()[
            "items"] if entry["patron_id"] == patron["id"]]
    [entry] = wait_until(listed, message="the phone list")
    assert (entry["name"], entry["phone"], entry["kind"]) == ("試験 花子", "0584-99-0001", "hold_ready")
    assert staff.delete(f"{staff.base_url}/api/v1/notices/{entry['notice_id']}", timeout=10).status_code == 204
    assert listed() == []
    assert staff.delete(f"{staff.base_url}/api/v1/notices/{entry['notice_id']}", timeout=10).json()["error"][
        "code"] == "NOTICE_NOT_FOUND"


def test_a_notice_the_mail_server_refuses_is_kept_and_sent_once_it_answers(system, staff, smtp_server):
    patron = reader(staff)
    smtp_server.stop()
    try:
        hold_becomes_ready(staff, patron)

        def failed():
            return [notice for notice in staff.get(f"{staff.base_url}/api/v1/notices/pending", timeout=10).json()[
                "items"] if notice["attempts"] >= 1]
        [pending] = wait_until(failed, message="a failed attempt")
        assert pending["last_error"] == "ConnectionRefusedError" and "patron_id" not in pending
    finally:
        smtp_server.start()
    [message] = mail_to(smtp_server, patron["email"])
    assert "ご予約" in message["Subject"]
    assert staff.get(f"{staff.base_url}/api/v1/notices/pending", timeout=10).json()["items"] == []

