"""Client addresses are kept for SHIORI_ADDRESS_RETENTION_DAYS (90 by default) in the access record and the
log-in failure records; then they go, the entries stay, and the access record still verifies. The test sets
the clock the patrons service records by, as if the first calls had been made months ago."""
from datetime import datetime, timedelta, timezone

import pytest

from services.patrons.errors import InvalidCredentials
from support import in_database, patron_fields, unique

TENANT = "addresstown"


def at(moment):
    return lambda: moment


@pytest.mark.privacy(8)
def test_addresses_past_the_retention_period_go_and_the_entries_stay_verifiable(system, monkeypatch):
    with system.rpc(tenant=TENANT) as rpc:
        rpc.catalog.ensure_tenant({"code": TENANT, "name": "番地町"})
        rpc.catalog.add_library({"code": "main", "name": "番地町図書館", "kind": "main"})
    today = datetime.now(timezone.utc)
    user = unique("nobody-")

    def desk_call(address, moment, call):
        """A call from ``address`` as if made at ``moment`` (the access record and log-in throttle's clock)."""
        monkeypatch.setattr("services.patrons.access_record.now", at(moment))
        monkeypatch.setattr("services.patrons.service.now", at(moment))
        try:
            with system.rpc_as({"tenant": TENANT, "actor": "staff:1", "role": "admin", "address": address,
                                "route": "GET /api/v1/patrons/<int:patron_id>"}) as rpc:
                return call(rpc)
        finally:
            monkeypatch.undo()

    def failed_log_in(rpc):
        with pytest.raises(InvalidCredentials):
            rpc.patrons.authenticate_staff({"username": user, "password": "not the password"})

    patron = desk_call("192.0.2.91", today - timedelta(days=91), lambda rpc: rpc.patrons.register(patron_fields()))
    desk_call("192.0.2.89", today - timedelta(days=89), lambda rpc: rpc.patrons.get_patron(patron["id"]))
    desk_call("192.0.2.1", today, lambda rpc: rpc.patrons.get_patron(patron["id"]))
    desk_call("198.51.100.91", today - timedelta(days=91), failed_log_in)
    desk_call("198.51.100.89", today - timedelta(days=89), failed_log_in)

    accounts = "SELECT key FROM login_failures WHERE key LIKE 'user:%' ORDER BY key"
    account_failures = in_database(system, "patrons", accounts)
    with system.rpc() as rpc:
        assert rpc.patrons.drop_expired_addresses() == {
            "address_retention_days": 90, "access_entries": 1, "login_failures": 1}
    assert in_database(system, "patrons", "SELECT action, address, address_nonce IS NULL FROM access_record "
                       "WHERE tenant = :t ORDER BY seq", t=TENANT) == [
        ("create", None, True), ("read", "192.0.2.89", False), ("read", "192.0.2.1", False)]
    assert in_database(system, "patrons", "SELECT key FROM login_failures WHERE key IN (:a, :b)",
                       a="address:198.51.100.91", b="address:198.51.100.89") == [("address:198.51.100.89",)]
    assert account_failures and in_database(system, "patrons", accounts) == account_failures  # accounts' stay

    with system.rpc(tenant=TENANT) as rpc:
        assert rpc.patrons.verify_access_record() == {"entries": 3, "intact": True, "first_broken": None}
        assert [entry["address"] for entry in rpc.patrons.search_access_record({"patron_id": patron["id"]})[
            "items"]] == ["192.0.2.1", "192.0.2.89", None]
        # An address still kept must open the commitment the chain holds: it cannot be changed either.
        in_database(system, "patrons", "UPDATE access_record SET address = '203.0.113.5' WHERE tenant = :t "
                    "AND seq = 2", t=TENANT)
        assert rpc.patrons.verify_access_record() == {"entries": 1, "intact": False, "first_broken": 2}
