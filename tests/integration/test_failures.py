"""A service that is down: the gateway answers 503 within its RPC timeout, the late command does not run
after the caller gave up, and a restarted service has lost nothing it committed."""
import time

import requests


from support import RPC_TIMEOUT, add_copy, check_out, register_patron, wait_until


def test_a_stopped_service_gives_a_quick_503_and_loses_nothing(system, staff):
    patron = register_patron(staff)
    _work, kept = add_copy(staff)
    _work, refused = add_copy(staff)
    assert check_out(staff, patron["card_number"], kept["barcode"]).status_code == 201

    system.stop("loans")
    try:
        started = time.monotonic()
        response = check_out(staff, patron["card_number"], refused["barcode"])
        waited = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert waited < RPC_TIMEOUT + 1.5

        health = requests.get(f"{system.url}/health", timeout=RPC_TIMEOUT + 5)
        assert health.status_code == 503
        assert health.json()["error"]["details"]["services"] == {
            "patrons": "ok", "loans": "unavailable", "catalog": "ok", "statistics": "ok", "notices": "ok"}
        time.sleep(0.5)  # past the request's time-to-live in the queue
    finally:
        system.start("loans")

    wait_until(lambda: requests.get(f"{system.url}/health", timeout=10).status_code == 200, message="loans back")
    loans = staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}/loans", timeout=10).json()["items"]
    assert [loan["item_barcode"] for loan in loans] == [kept["barcode"]]
    # The check-out the desk was told failed did not happen behind its back once loans came back.
    time.sleep(0.5)
    assert staff.get(f"{staff.base_url}/api/v1/items/{refused['barcode']}", timeout=10).json()["status"] == "available"
    assert check_out(staff, patron["card_number"], refused["barcode"]).status_code == 201


def test_health_reports_every_service(system):
    response = requests.get(f"{system.url}/health", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["services"]) == ("ok", {"patrons": "ok", "loans": "ok", "catalog": "ok",
                                                         "statistics": "ok", "notices": "ok"})
    # Each emitter's events not yet published, and each subscriber's dead letters (docs/events.md, "Health").
    assert set(body["outbox"]) == {"patrons", "loans", "catalog"}
    assert all(isinstance(backlog["waiting"], int) and "oldest_seconds" in backlog
               for backlog in body["outbox"].values())
    assert set(body["dead_letters"]) == set(body["services"])
    assert all(isinstance(count, int) for count in body["dead_letters"].values())
