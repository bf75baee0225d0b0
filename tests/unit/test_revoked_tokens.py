"""Revoked credentials without a broker: what a gateway refuses, who may ask for the list, and the broadcast
subscription's grants."""
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import jwt
import pytest

from services.gateway.tokens import RevokedCredentials, TokenIssuer
from shiori.context import ContextRefused, ContextSigner, ContextVerifier, new_signing_key, public_key_of
from shiori.commands.provision import deployment_grants

SECRET = "s" * 40
GATEWAY_KEY = new_signing_key()
VERIFIER = ContextVerifier({"gateway": public_key_of(GATEWAY_KEY)})


def revoked():
    store = RevokedCredentials()
    store.setup()
    return store


def claims(token):
    return jwt.decode(token, SECRET, algorithms=["HS256"], audience="shiori")


def test_a_token_issued_before_its_subject_was_revoked_is_refused_and_one_issued_after_is_not():
    issuer, store = TokenIssuer(SECRET, 3600), revoked()
    account = {"id": 7, "tenant": "kaizu", "role": "librarian", "libraries": ["main"]}
    before = claims(issuer.issue(account))
    store.revoke("kaizu", "staff:7", datetime.now(timezone.utc))
    after = claims(issuer.issue(account))  # within the same second: told apart to the microsecond
    assert store.refuses(before) and not store.refuses(after)
    assert not store.refuses({**before, "tenant": "ogaki"}) and not store.refuses({**before, "sub": "staff:8"})


def test_the_latest_revocation_counts_and_old_ones_are_forgotten():
    store, at = revoked(), datetime.now(timezone.utc)
    store.revoke("kaizu", "patron:3", at)
    store.revoke("kaizu", "patron:3", at - timedelta(minutes=5))  # a catch-up bringing an older one
    token = {"tenant": "kaizu", "sub": "patron:3", "iat": (at - timedelta(minutes=1)).timestamp()}
    assert store.refuses(token)
    store.forget_before(at + timedelta(seconds=1))
    assert not store.refuses(token)


def test_the_gateway_speaks_for_the_system_only_as_itself_and_in_the_system_role():
    signer = ContextSigner("gateway", GATEWAY_KEY)
    housekeeping = {"tenant": "kaizu", "actor": "system:gateway", "role": "system"}
    assert VERIFIER.verify(dict(signer.sign(housekeeping)))["role"] == "system"
    for claim in ({"actor": "staff:1", "role": "system"}, {"actor": "system:gateway", "role": "operator"},
                  {"actor": "system:gateway", "role": "admin"}, {"actor": "system:patrons", "role": "system"}):
        with pytest.raises(ValueError):
            signer.sign({"tenant": "kaizu", **claim})
    forged = dict(signer.sign({"tenant": "kaizu", "actor": "staff:1", "role": "admin"}))
    forged.update(actor="system:gateway", role="system", expires=int(time.time() * 1000) + 60_000)
    with pytest.raises(ContextRefused):
        VERIFIER.verify(forged)


def test_each_gateway_process_may_have_its_own_broadcast_queue_and_nothing_more():
    grants = deployment_grants()
    queues = re.compile(grants["gateway"].permissions()["configure"])
    handler = "evt-patrons-credentials_revoked--gateway.on_credentials_revoked"
    assert queues.fullmatch(f"{handler}-{uuid.uuid4().hex}")
    assert not queues.fullmatch(handler) and not queues.fullmatch(f"evt-patrons-patron_updated--gateway.x-{'0' * 32}")
    events = [entry for entry in grants["gateway"].topic_permissions() if entry["exchange"] == "patrons.events"]
    assert [entry["read"] for entry in events] == ["^(credentials_revoked)$"]
    pooled = re.compile(grants["patrons"].permissions()["configure"])  # one queue for all of a service's processes
    assert pooled.fullmatch("evt-loans-patron_card_used--patrons.on_card_used")
    assert not pooled.fullmatch(f"evt-loans-patron_card_used--patrons.on_card_used-{'0' * 32}")


@pytest.fixture
def patrons(sqlite_session):
    from nameko.testing.services import worker_factory

    from services.patrons.models import Base
    from services.patrons.service import PatronsService
    from services.patrons.vault import KeyRing, KeysBase, PatronVault, new_master_key_spec
    from shiori.clock import LibraryTime
    from shiori.events import envelope
    from shiori.rpc import CallerContext

    service = worker_factory(
        PatronsService, db=sqlite_session(Base.metadata),
        caller=CallerContext({"tenant": "kaizu", "actor": "staff:1", "role": "admin"}),
        vault=PatronVault(KeyRing(new_master_key_spec("unit")), b"k" * 32, sqlite_session(KeysBase.metadata)),
        config={"TOKEN_LIFETIME_SECONDS": 3600}, clock=LibraryTime())
    for code, kind in (("main", "main"), ("east", "branch")):
        service.on_library_added(envelope("library_added", 1, "kaizu", {"library": code, "kind": kind}))
    return service


def published_revocations(service):
    return [args[2] for args, _ in service.publish.call_args_list if args[0] == "credentials_revoked"]


def test_a_staff_change_is_announced_kept_for_the_gateways_and_forgotten_once_no_token_outlives_it(patrons):
    from services.patrons.models import RevokedCredential
    from shiori.rpc import CallerContext

    account = patrons.create_staff_account({"username": "desk", "password": "a-long-password", "role": "librarian",
                                            "libraries": ["main"]})
    patrons.update_staff_account(account["id"], {"libraries": ["main"]})  # nothing changes: nothing ends
    assert published_revocations(patrons) == []
    patrons.update_staff_account(account["id"], {"libraries": ["east"]})
    [announced] = published_revocations(patrons)
    assert announced["subject"] == f"staff:{account['id']}"

    patrons.caller = CallerContext({"actor": "system:gateway", "role": "system"})
    since = (announced["not_before"] - timedelta(seconds=1)).isoformat()
    assert [(entry["tenant"], entry["subject"]) for entry in patrons.recent_revocations(since)] == [
        ("kaizu", f"staff:{account['id']}")]
    patrons.db.query(RevokedCredential).update({"not_before": datetime.now(timezone.utc) - timedelta(hours=2)})
    patrons.forget_old_revocations()
    assert patrons.recent_revocations("2000-01-01T00:00:00+00:00") == []
