"""Configuration from the environment, staff tokens and master keys."""
from datetime import datetime, timedelta, timezone

import jwt
import pytest

from nameko.exceptions import ConfigurationError

from services.gateway.tokens import TokenIssuer
from services.patrons.vault import KeyRing
from shiori.config import expand, load_config
from shiori.errors import NotAuthenticated
from shiori.commands.serve import SERVICE_NAMES

SECRET = "s" * 40
ACCOUNT = {"id": 7, "tenant": "kaizu", "role": "librarian", "libraries": ["main"]}


def test_placeholders_take_the_environment_then_their_default():
    text = "${DB:sqlite:///${DATA:var}/x.db}"
    assert expand(text, {}) == "sqlite:///var/x.db"
    assert expand(text, {"DATA": "/srv"}) == "sqlite:////srv/x.db"
    assert expand(text, {"DB": "postgresql://db/x", "DATA": "/srv"}) == "postgresql://db/x"
    assert expand("${UNSET}", {}) == ""


def test_every_service_has_a_broker_and_its_own_database():
    environ = {"SHIORI_DATA_DIR": "/data"}
    for name in SERVICE_NAMES:
        assert load_config(name, environ)["AMQP_URI"] is None  # no default user, no default password
        assert load_config(name, {"AMQP_URI": "amqp://u:p@b/v"})["AMQP_URI"] == "amqp://u:p@b/v"
    assert {load_config(name, environ)["DATABASE_URL"] for name in ("patrons", "loans", "catalog")} == {
        "sqlite:////data/patrons.db", "sqlite:////data/loans.db", "sqlite:////data/catalog.db"}
    assert load_config("gateway", {})["WEB_SERVER_ADDRESS"] == "127.0.0.1:8000"
    assert load_config("gateway", {})["TOKEN_SECRET"] is None  # no default secret exists


def test_a_token_carries_who_and_where():
    issuer = TokenIssuer(SECRET, 60)
    claims = issuer.verify(issuer.issue(ACCOUNT))
    assert (claims["sub"], claims["tenant"], claims["role"], claims["libraries"]) == (
        "staff:7", "kaizu", "librarian", ["main"])


def test_forged_expired_and_unsigned_tokens_are_refused():
    issuer = TokenIssuer(SECRET, 60)
    forged = TokenIssuer("t" * 40, 60).issue(ACCOUNT)
    past = datetime.now(timezone.utc) - timedelta(hours=2)
    expired = jwt.encode({"iss": "shiori", "aud": "shiori", "iat": past, "exp": past + timedelta(hours=1),
                          "sub": "staff:7", "tenant": "kaizu", "role": "admin"}, SECRET, algorithm="HS256")
    unsigned = jwt.encode({"sub": "staff:7", "tenant": "kaizu", "role": "admin"}, None, algorithm="none")
    escalated = issuer.issue(ACCOUNT).rsplit(".", 1)[0] + ".AAAA"
    for token in (forged, expired, unsigned, escalated, "", "garbage"):
        with pytest.raises(NotAuthenticated):
            issuer.verify(token)


def test_a_short_or_missing_secret_is_refused():
    for secret in (None, "", "short"):
        with pytest.raises(ValueError):
            TokenIssuer(secret, 60)


@pytest.mark.parametrize("spec", ["", "k1:short", "k1:" + "A" * 10])
def test_a_missing_or_malformed_master_key_is_refused(spec):
    with pytest.raises((ConfigurationError, ValueError)):
        KeyRing(spec)
