"""Signed caller contexts (shiori/context.py) and the broker grants read off the code (shiori/commands/provision.py)."""
import re
import time

import pytest

from shiori.context import ContextRefused, ContextSigner, ContextVerifier, keyring_text, new_signing_key
from shiori.commands.provision import deployment_grants

KEYS = {signer: new_signing_key() for signer in ("gateway", "operator", "loans")}
VERIFIER = ContextVerifier.from_text(keyring_text(KEYS))
LIBRARIAN = {"tenant": "kaizu", "actor": "staff:7", "role": "librarian", "libraries": "main",
             "address": "192.0.2.1", "route": "POST /api/v1/checkouts"}


def signed(signer, data, lifetime=60):
    return ContextSigner(signer, KEYS[signer], lifetime).sign(data)


def test_a_context_signed_by_the_gateway_is_accepted_as_it_was_signed():
    context = signed("gateway", LIBRARIAN)
    assert VERIFIER.verify(dict(context)) == dict(context)


@pytest.mark.parametrize("field, value", [("role", "admin"), ("tenant", "another"), ("actor", "staff:1"),
                                          ("libraries", "main,east"), ("address", "203.0.113.9"),
                                          ("expires", 10**15)])
def test_a_context_altered_after_signing_is_refused(field, value):
    context = dict(signed("gateway", LIBRARIAN))
    context[field] = value
    with pytest.raises(ContextRefused, match="signature"):
        VERIFIER.verify(context)


def test_an_unsigned_context_is_refused():
    with pytest.raises(ContextRefused, match="no signed"):
        VERIFIER.verify({"tenant": "kaizu", "actor": "operator", "role": "operator"})


def test_an_expired_context_is_refused():
    context = dict(signed("gateway", LIBRARIAN, lifetime=-10))
    with pytest.raises(ContextRefused, match="expired"):
        VERIFIER.verify(context)


def test_a_signer_the_verifier_does_not_know_is_refused():
    stranger = ContextSigner("gateway", new_signing_key()).sign(LIBRARIAN)
    with pytest.raises(ContextRefused, match="signature"):
        VERIFIER.verify(dict(stranger))
    other_name = ContextSigner("intruder", new_signing_key()).sign({"tenant": "kaizu", "actor": "system:intruder",
                                                                    "role": "operator"})
    with pytest.raises(ContextRefused, match="unknown"):
        VERIFIER.verify(dict(other_name))


def test_each_signer_vouches_only_for_whom_it_may():
    operator = {"tenant": "kaizu", "actor": "operator", "role": "operator"}
    with pytest.raises(ValueError):
        signed("gateway", operator)  # the gateway never speaks for the operator
    with pytest.raises(ValueError):
        signed("loans", operator)  # nor a service
    with pytest.raises(ValueError):
        signed("loans", {"tenant": "kaizu", "actor": "system:patrons:retention", "role": "operator"})
    assert VERIFIER.verify(dict(signed("operator", operator)))["actor"] == "operator"
    daily_pass = {"tenant": "kaizu", "actor": "system:loans:daily-pass", "role": "operator"}
    assert VERIFIER.verify(dict(signed("loans", daily_pass)))["signer"] == "loans"


def test_a_signature_made_for_one_signer_does_not_pass_as_another():
    context = dict(signed("loans", {"tenant": "kaizu", "actor": "system:loans", "role": "operator"}))
    context["signer"] = "operator"
    context["actor"] = "operator"
    with pytest.raises(ContextRefused):
        VERIFIER.verify(context)


def test_a_context_this_process_signed_is_signed_again_before_it_expires():
    context = signed("gateway", LIBRARIAN, lifetime=2)
    first = context.copy()
    time.sleep(1.1)  # past half its lifetime: the next call's copy carries a fresh deadline
    second = context.copy()
    assert second["expires"] > first["expires"]
    assert VERIFIER.verify(second)["actor"] == "staff:7"


GRANTS = deployment_grants()


def topic(principal, exchange, operation):
    found = [entry for entry in GRANTS[principal].topic_permissions() if entry["exchange"] == exchange]
    return re.compile(found[0][operation]) if found else None


def test_the_opac_may_publish_only_the_catalogues_public_methods():
    publish = topic("opac", "nameko-rpc", "write")
    assert all(publish.fullmatch(f"catalog.{method}") for method in ("search", "get_work", "list_libraries", "health"))
    for key in ("catalog.add_work", "catalog.import_works", "patrons.get_patron", "loans.checkout", "reply.x.y"):
        assert not publish.fullmatch(key), key
    assert set(GRANTS["opac"].topics) == {"nameko-rpc"}


def test_nobody_but_the_operator_may_bind_everything_or_another_principals_keys():
    for principal, grant in GRANTS.items():
        if principal == "operator":
            continue
        for entry in grant.topic_permissions():
            read = re.compile(entry["read"])
            assert not read.fullmatch("#") and not read.fullmatch("*.*") and not read.fullmatch("*"), principal
            others = [name for name in GRANTS if name not in (principal, "operator")]
            assert not any(read.fullmatch(f"reply.{other}.{'0' * 32}") for other in others), principal
        queues = re.compile(grant.permissions()["read"])
        assert not queues.fullmatch("amq.default") and not queues.fullmatch(".*")
        assert not re.compile(grant.permissions()["write"]).fullmatch("amq.default"), principal


def test_a_service_publishes_only_its_own_events():
    loans_events = topic("loans", "loans.events", "write")
    assert loans_events.fullmatch("loan_created") and not loans_events.fullmatch("patron_deleted")
    assert topic("catalog", "loans.events", "write").pattern == "^$"
    assert "patrons.events" not in GRANTS["catalog"].topics
