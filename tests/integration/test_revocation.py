"""Tokens end within seconds when their holder's credentials are revoked: a staff account deleted or demoted, a
PIN changed, a card reported lost. Every gateway process hears of it (a broadcast), and one that starts later
asks the patrons service; the broker's isolation stays on throughout (the suite always provisions it)."""
import statistics
import time
from contextlib import contextmanager

import pytest
import requests
from nameko.runners import ServiceRunner

from shiori.config import load_config
from shiori.errors import Forbidden
from shiori.commands.provision import ManagementApi, _path
from shiori.commands.serve import service_class
from support import free_port, register_patron, unique, wait_until

WITHIN_SECONDS = 5
BROADCAST_QUEUE = "evt-patrons-credentials_revoked--gateway.on_credentials_revoked-"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def staff_token(url, username, password):
    response = requests.post(f"{url}/api/v1/auth/token", json={"username": username, "password": password},
                             timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def patron_token(url, card_number, pin):
    response = requests.post(f"{url}/api/v1/auth/patron-token", json={"card_number": card_number, "pin": pin},
                             timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def status(url, path, token):
    return requests.get(f"{url}{path}", headers=bearer(token), timeout=10).status_code


def refused_soon(url, path, token):
    """The token is answered 401 within seconds (and answers how long it took)."""
    started = time.monotonic()
    wait_until(lambda: status(url, path, token) == 401, timeout=WITHIN_SECONDS, interval=0.005,
               message=f"the revoked token to be refused at {url}")
    return time.monotonic() - started


def new_staff(staff, role="librarian", libraries=("main",)):
    username, password = unique("revoked-").lower(), "a-long-password-9"
    created = staff.post(f"{staff.base_url}/api/v1/staff", timeout=10, json={
        "username": username, "password": password, "role": role, "libraries": list(libraries)})
    assert created.status_code == 201, created.text
    return created.json()["id"], username, password


def broadcast_queues(system):
    listed = ManagementApi(system.broker.admin_url).call("GET", _path("queues", system.broker.vhost))
    return {queue["name"] for queue in listed if queue["name"].startswith(BROADCAST_QUEUE)}


@contextmanager
def another_gateway(system):
    """A second gateway process-alike on a port of its own, as a deployment scales the gateway out."""
    port = free_port()
    runner = ServiceRunner(load_config("gateway", {**system.environment("gateway"), "SHIORI_GATEWAY_PORT": str(port)}))
    runner.add_service(service_class("gateway"))
    runner.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        runner.stop()


@pytest.mark.privacy(7)
def test_a_deleted_staff_account_s_token_stops_working(system, staff):
    account_id, username, password = new_staff(staff)
    token = staff_token(system.url, username, password)
    assert status(system.url, "/api/v1/loan-policies", token) == 200
    assert staff.delete(f"{system.url}/api/v1/staff/{account_id}", timeout=10).status_code == 204
    refused_soon(system.url, "/api/v1/loan-policies", token)
    answer = requests.get(f"{system.url}/api/v1/loan-policies", headers=bearer(token), timeout=10).json()
    assert answer["error"]["code"] == "NOT_AUTHENTICATED"


@pytest.mark.privacy(7)
def test_a_demoted_admin_must_log_in_again_and_then_has_the_new_role_only(system, staff):
    account_id, username, password = new_staff(staff, role="admin", libraries=())
    token = staff_token(system.url, username, password)
    assert status(system.url, "/api/v1/staff", token) == 200
    demoted = staff.patch(f"{system.url}/api/v1/staff/{account_id}", json={"role": "librarian", "libraries": ["main"]},
                          timeout=10)
    assert demoted.status_code == 200, demoted.text
    refused_soon(system.url, "/api/v1/staff", token)
    again = staff_token(system.url, username, password)
    assert status(system.url, "/api/v1/staff", again) == 403
    assert status(system.url, "/api/v1/loan-policies", again) == 200


def test_a_change_that_leaves_the_role_and_libraries_as_they_were_ends_nothing(system, staff):
    account_id, username, password = new_staff(staff)
    token = staff_token(system.url, username, password)
    assert staff.patch(f"{system.url}/api/v1/staff/{account_id}", json={"libraries": ["main"]},
                       timeout=10).status_code == 200
    time.sleep(0.5)  # a revocation would have reached the gateway long since
    assert status(system.url, "/api/v1/loan-policies", token) == 200


def test_a_changed_pin_ends_the_patron_s_tokens(system, staff):
    patron = register_patron(staff, pin="8303")
    token = patron_token(system.url, patron["card_number"], "8303")
    assert status(system.url, "/api/v1/me", token) == 200
    assert staff.patch(f"{system.url}/api/v1/patrons/{patron['id']}", json={"pin": "30718"},
                       timeout=10).status_code == 200
    refused_soon(system.url, "/api/v1/me", token)
    assert status(system.url, "/api/v1/me", patron_token(system.url, patron["card_number"], "30718")) == 200


def test_a_card_reported_lost_ends_its_tokens(system, staff):
    patron = register_patron(staff, pin="8303")
    token = patron_token(system.url, patron["card_number"], "8303")
    replaced = staff.post(f"{system.url}/api/v1/patrons/{patron['id']}/lost-card", timeout=10)
    assert replaced.status_code == 200, replaced.text
    refused_soon(system.url, "/api/v1/me", token)
    assert status(system.url, "/api/v1/me", patron_token(system.url, replaced.json()["card_number"], "8303")) == 200


def test_every_gateway_process_refuses_and_one_started_later_catches_up(system, staff):
    patron = register_patron(staff, pin="8303")
    token = patron_token(system.url, patron["card_number"], "8303")
    first_queues = broadcast_queues(system)
    with another_gateway(system) as second:
        assert len(broadcast_queues(system) - first_queues) == 1  # a queue of its own
        assert status(second, "/api/v1/me", token) == 200
        assert staff.patch(f"{system.url}/api/v1/patrons/{patron['id']}", json={"pin": "30718"},
                           timeout=10).status_code == 200
        refused_soon(system.url, "/api/v1/me", token)
        refused_soon(second, "/api/v1/me", token)
    wait_until(lambda: broadcast_queues(system) == first_queues, message="the stopped process's queue to go")
    # Started after the broadcast: it learns of the revocation by asking the patrons service when it starts.
    with another_gateway(system) as third:
        refused_soon(third, "/api/v1/me", token)


def test_only_the_system_may_ask_for_the_revocations(system):
    with system.rpc_as({"actor": "staff:1", "role": "admin"}) as rpc:
        with pytest.raises(Forbidden):
            rpc.patrons.recent_revocations("2026-01-01T00:00:00+00:00")
    with system.rpc_as({"actor": "system:gateway", "role": "system"}) as rpc:
        revoked = rpc.patrons.recent_revocations("2026-01-01T00:00:00+00:00")
    assert all(set(entry) == {"tenant", "subject", "not_before"} for entry in revoked)


def test_how_soon_a_revocation_reaches_the_gateway(system, staff):
    """Twenty demotions: from the answer to the revoking call to the first request refused."""
    account_id, username, password = new_staff(staff)
    after_answer, after_call = [], []
    for attempt in range(20):
        token = staff_token(system.url, username, password)
        started = time.monotonic()
        libraries = ["main"] if attempt % 2 else ["east"]
        assert staff.patch(f"{system.url}/api/v1/staff/{account_id}", json={"libraries": libraries},
                           timeout=10).status_code == 200
        answered = time.monotonic()
        refused_soon(system.url, "/api/v1/loan-policies", token)
        refused = time.monotonic()
        after_answer.append(refused - answered)
        after_call.append(refused - started)
    print(f"\nrevocation to first refusal over 20 tries: median {statistics.median(after_answer) * 1000:.1f} ms "
          f"after the revoking call answered (max {max(after_answer) * 1000:.1f} ms), median "
          f"{statistics.median(after_call) * 1000:.1f} ms after it was made")
    assert statistics.median(after_answer) < 1.0


def test_a_deleted_patron_s_tokens_end(system, staff):
    patron = register_patron(staff, pin="8303")
    token = patron_token(system.url, patron["card_number"], "8303")
    assert status(system.url, "/api/v1/me", token) == 200
    assert staff.delete(f"{system.url}/api/v1/patrons/{patron['id']}", timeout=10).status_code == 204
    refused_soon(system.url, "/api/v1/me", token)
