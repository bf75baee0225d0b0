"""The resident's rights (PRIVACY.md 6, 8): disclosure of everything held about them (開示請求), deletion on
request and after the retention period, and refused looks recorded too."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from shiori.commands.calls import wait_for_libraries
from support import TEN_YEARS, add_copy, check_out, patron_fields, patrons_know, register_patron, unique, wait_until

REPO = Path(__file__).resolve().parents[2]


def test_a_patron_or_staff_on_their_behalf_gets_everything_held_about_them(system, staff):
    patron = register_patron(staff, pin="4071")
    _work, item = add_copy(staff, title="開示される本")
    assert check_out(staff, patron["card_number"], item["barcode"]).status_code == 201

    by_staff = staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}/export", timeout=10)
    assert by_staff.status_code == 200, by_staff.text
    export = by_staff.json()
    assert export["patron"]["name"] == patron["name"] and export["patron"]["card_number"] == patron["card_number"]
    assert [loan["title"] for loan in export["loans"]] == ["開示される本"]
    assert [entry["action"] for entry in export["access_record"]][:1] == ["create"]

    token = requests.post(f"{system.url}/api/v1/auth/patron-token", timeout=10,
                          json={"card_number": patron["card_number"], "pin": "4071"}).json()["access_token"]
    own = requests.get(f"{system.url}/api/v1/me/export", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert own.status_code == 200 and own.json()["patron"]["id"] == patron["id"]
    actions = [entry["action"] for entry in own.json()["access_record"]]
    assert actions.count("export") == 1  # the staff export is itself on the record
    assert requests.get(f"{system.url}/api/v1/patrons/{patron['id']}/export",
                        headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 403


def test_a_look_outside_ones_scope_is_refused_and_recorded(system, staff):
    school = unique("z").lower()[:10]
    assert staff.post(f"{system.url}/api/v1/libraries", json={"code": school, "name": "記録小学校", "kind": "school"},
                      timeout=10).status_code == 201
    patrons_know(system, school)
    pupil = register_patron(staff, home_library=school, category="child")
    username = unique("clerk-")
    assert staff.post(f"{system.url}/api/v1/staff", timeout=10, json={
        "username": username, "password": "a-long-password-3", "role": "librarian", "libraries": ["main"]}
    ).status_code == 201
    token = requests.post(f"{system.url}/api/v1/auth/token", timeout=10,
                          json={"username": username, "password": "a-long-password-3"}).json()["access_token"]
    refused = requests.get(f"{system.url}/api/v1/patrons/{pupil['id']}", headers={"Authorization": f"Bearer {token}"},
                           timeout=10)
    assert refused.status_code == 404
    entries = staff.get(f"{system.url}/api/v1/audit", params={"patron_id": pupil["id"]}, timeout=10).json()["items"]
    assert entries[0]["action"] == "denied" and entries[0]["role"] == "librarian"


@pytest.mark.privacy(6)
def test_retention_deletes_only_long_unused_patrons_without_loans(system):
    tenant, barcode = "retentown", unique("R")
    with system.rpc(tenant=tenant) as rpc:
        rpc.catalog.ensure_tenant({"code": tenant, "name": "保存町"})
        rpc.catalog.add_library({"code": "main", "name": "保存町図書館", "kind": "main"})
        wait_for_libraries(rpc, ["main"])
        with system.travel(by=-TEN_YEARS):  # both last came ten years ago, one to borrow a book never returned
            old_idle, old_borrower = (rpc.patrons.register(patron_fields()) for _ in range(2))
            work = rpc.catalog.add_work({"title": "まだ返していない本"})
            rpc.catalog.add_item({"barcode": barcode, "work_id": work["id"], "library": "main"})
            rpc.loans.checkout({"card_number": old_borrower["card_number"], "item_barcode": barcode,
                                "library": "main"})
            wait_until(lambda: rpc.patrons.get_patron(old_borrower["id"])["total_uses"] == 1, message="use counted")
        recent = rpc.patrons.register(patron_fields())

    assert _retention(system, tenant, dry_run=True) == {
        "retention_years": 5, "due": 2, "kept_with_loans": 1, "deleted": 0}
    assert _retention(system, tenant, dry_run=False) == {
        "retention_years": 5, "due": 2, "kept_with_loans": 1, "deleted": 1}
    with system.rpc(tenant=tenant) as rpc:
        kept = [rpc.patrons.get_patron(patron["id"])["id"] for patron in (old_borrower, recent)]
        assert kept == [old_borrower["id"], recent["id"]]
        assert rpc.patrons.find_patrons({"card_number": old_idle["card_number"]})["items"] == []


def _retention(system, tenant, dry_run):
    command = [sys.executable, "-m", "shiori", "retention", "--tenant", tenant] + (["--dry-run"] if dry_run else [])
    result = subprocess.run(command, cwd=REPO, env=system.operator_environ,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
