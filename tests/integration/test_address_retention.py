"""Client addresses are kept for SHIORI_ADDRESS_RETENTION_DAYS (90 by default) in the access record and the
log-in failure records; then they go, the entries stay, and the access record still verifies. The test moves
the services' clocks back for the first calls, as if they had been made months ago."""
from datetime import timedelta

import pytest

from services.patrons.errors import InvalidCredentials
from shiori.commands.calls import wait_for_libraries
from support import in_database, patron_fields, unique

TENANT = "addresstown"


@pytest.mark.privacy(8)
def test_addresses_past_the_retention_period_go_and_the_entries_stay_verifiable(system):
    with system.rpc(tenant=TENANT) as rpc:
        rpc.catalog.ensure_tenant({"code": TENANT, "name": "番地町"})
        rpc.catalog.add_library({"code": "main", "name": "番地町図書館", "kind": "main"})
        wait_for_libraries(rpc, ["main"])
    with system.rpc() as rpc:  # addresses other tests left in the past go first: this test counts its own
        rpc.patrons.drop_expired_addresses()
    user = unique("nobody-")

    def desk_call(address, days_ago, call):
        """A call from ``address`` as if made ``days_ago``."""
        with system.travel(by=-timedelta(days=days_ago)), system.rpc_as({
                "tenant": TENANT, "actor": "staff:1", "role": "admin", "address": address,
                "route": "GET /api/v1/patrons/<int:patron_id>"}) as rpc:
            return call(rpc)

    def failed_log_in(rpc):
        with pytest.raises(InvalidCredentials):
            rpc.patrons.authenticate_staff({"username": user, "password": "not the password"})

    patron = desk_call("192.0.2.91", 91, lambda rpc: rpc.patrons.register(patron_fields()))
    desk_call("192.0.2.89", 89, lambda rpc: rpc.patrons.get_patron(patron["id"]))
    desk_call("192.0.2.1", 0, lambda rpc: rpc.patrons.get_patron(patron["id"]))
    desk_call("198.51.100.91", 91, failed_log_in)
    desk_call("198.51.100.89", 89, failed_log_in)

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
