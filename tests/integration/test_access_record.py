"""The access record (PRIVACY.md 8): who read or changed which patron's data, when, from where and through
which route; admins search it, patrons see their own, no route changes it, tampering is detected."""
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from shiori.commands.calls import wait_for_libraries
from support import patron_fields, register_patron, unique

REPO = Path(__file__).resolve().parents[2]


def entries(staff, **params):
    response = staff.get(f"{staff.base_url}/api/v1/audit", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["items"]


@pytest.mark.privacy(8)
def test_every_read_and_change_is_recorded(staff):
    patron = register_patron(staff, pin="8642")
    staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10)
    staff.get(f"{staff.base_url}/api/v1/patrons", params={"card_number": patron["card_number"]}, timeout=10)
    staff.patch(f"{staff.base_url}/api/v1/patrons/{patron['id']}", json={"phone": "0584-99-9999", "pin": "3917"},
                timeout=10)
    assert staff.delete(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10).status_code == 204

    recorded = list(reversed(entries(staff, patron_id=patron["id"])))
    assert [entry["action"] for entry in recorded] == ["create", "read", "read", "change", "delete"]
    assert recorded[3]["fields"] == ["phone", "pin"]
    assert "name" in recorded[1]["fields"] and "pin" not in recorded[1]["fields"]
    assert {entry["role"] for entry in recorded} == {"admin"}
    assert all(entry["actor"].startswith("staff:") and entry["address"] == "127.0.0.1" for entry in recorded)
    assert recorded[1]["route"] == "GET /api/v1/patrons/<int:patron_id>"
    assert recorded[2]["route"] == "GET /api/v1/patrons"
    # no personal data in the record itself
    assert patron["name"] not in json.dumps(recorded, ensure_ascii=False)


def test_a_patron_sees_who_read_their_record(system, staff):
    patron = register_patron(staff, pin="5183")
    staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10)
    token = requests.post(f"{system.url}/api/v1/auth/patron-token", timeout=10,
                          json={"card_number": patron["card_number"], "pin": "5183"}).json()["access_token"]
    mine = requests.get(f"{system.url}/api/v1/me/access-log", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).json()
    assert [(entry["action"], entry["role"]) for entry in mine["items"]] == [("read", "admin"), ("create", "admin")]
    assert all(set(entry) == {"at", "actor", "role", "action", "fields"} for entry in mine["items"])
    assert requests.get(f"{system.url}/api/v1/me/access-log", headers={"Authorization": staff.headers["Authorization"]},
                        timeout=10).status_code == 403


def test_searching_by_staff_member_and_period(staff):
    patron = register_patron(staff)
    staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10)
    actor = entries(staff, patron_id=patron["id"])[0]["actor"]
    assert all(entry["actor"] == actor for entry in entries(staff, actor=actor))
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert entries(staff, patron_id=patron["id"], since=later) == []
    assert len(entries(staff, patron_id=patron["id"], until=later)) == 2
    bad = staff.get(f"{staff.base_url}/api/v1/audit", params={"since": "yesterday"}, timeout=10)
    assert bad.status_code == 400 and "since" in bad.json()["error"]["details"]


@pytest.mark.privacy(8)
def test_no_route_changes_the_record_and_only_admins_read_it(system, staff):
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert staff.request(method, f"{staff.base_url}/api/v1/audit", json={}, timeout=10).status_code == 405
    assert requests.get(f"{system.url}/api/v1/audit", timeout=10).status_code == 401


@pytest.mark.privacy(8)
def test_tampering_with_the_record_is_detected(system):
    tenant = "audittown"
    with system.rpc(tenant=tenant) as rpc:
        rpc.catalog.ensure_tenant({"code": tenant, "name": "監査町"})
        rpc.catalog.add_library({"code": unique("l").lower()[:10], "name": "監査町図書館", "kind": "main"})
        library = rpc.catalog.list_libraries()[0]["code"]
        wait_for_libraries(rpc, [library])
        patron = rpc.patrons.register(patron_fields(home_library=library))
        for _ in range(3):
            rpc.patrons.get_patron(patron["id"])

    def verify():
        result = subprocess.run([sys.executable, "-m", "shiori", "verify-access-record", "--tenant", tenant],
                                cwd=REPO, env=system.operator_environ,
                                capture_output=True, text=True, timeout=120)
        return result.returncode, json.loads(result.stdout)

    assert verify() == (0, {"entries": 4, "intact": True, "first_broken": None})
    engine = create_engine(system.database_urls["patrons"])
    with engine.begin() as connection:
        connection.execute(text("UPDATE access_record SET actor = 'staff:999' WHERE tenant = :t AND seq = 2"),
                           {"t": tenant})
    assert verify() == (1, {"entries": 1, "intact": False, "first_broken": 2})
    with engine.begin() as connection:
        connection.execute(text("UPDATE access_record SET actor = 'operator' WHERE tenant = :t AND seq = 2"),
                           {"t": tenant})
        connection.execute(text("DELETE FROM access_record WHERE tenant = :t AND seq = 4"), {"t": tenant})
    assert verify() == (1, {"entries": 3, "intact": False, "first_broken": 4})
    engine.dispose()


def test_a_deleted_patrons_id_is_never_given_again(staff):
    """Otherwise the next patron would inherit the deleted one's access record (and /me/access-log)."""
    first = register_patron(staff)
    assert staff.delete(f"{staff.base_url}/api/v1/patrons/{first['id']}", timeout=10).status_code == 204
    assert register_patron(staff)["id"] > first["id"]
