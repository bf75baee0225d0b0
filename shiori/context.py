"""Signed caller contexts: who a call is for, in a form that cannot be forged by anyone who reaches the broker.

Every RPC carries its caller's context as nameko context data (message headers): tenant, actor, role, the
staff member's libraries, the client's address and route, an expiry, and for a write the request it carries out. The process that decided who the
caller is signs it with its own Ed25519 key — the staff gateway for HTTP requests, the operators' commands
for the operator, a service for its own timers and event work — and every service verifies it before a
worker runs. Verifying needs only public keys, so no service can sign for another: a compromised loans
process cannot claim to be the gateway, or an operator. What each signer may claim is limited
(``may_claim``): the gateway never signs for the operator, and for the system only as ``system:gateway`` in
the ``system`` role (which opens no tenant's data); a service only for ``system:<itself>``.

The public catalogue (OPAC) holds no signing key at all: its calls are anonymous, and a service answers an
anonymous call only on the methods it marks public (the catalogue's search, works and libraries), as the
anonymous public. Everything else refuses an unsigned, altered or expired context.
"""
import base64
import json
import logging
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shiori.errors import DomainError
from shiori.roles import OPERATOR, PUBLIC, SYSTEM

security_log = logging.getLogger("shiori.security")

# What a signature covers: everything a service decides by, and what the access record writes down; and which
# request a command carries out (shiori.idempotency), so that a replayed message is absorbed like a retry.
SIGNED_FIELDS = ("tenant", "actor", "role", "libraries", "address", "route", "signer", "expires",
                 "idempotency_key", "request_digest")
DEFAULT_LIFETIME_SECONDS = 60
# Hosts of one deployment keep time by NTP; a context is not refused for a few seconds of skew.
CLOCK_SKEW_SECONDS = 5
GATEWAY, OPERATOR_SIGNER = "gateway", "operator"
# The gateway's own housekeeping (asking the patrons service which credentials were revoked), as the system.
GATEWAY_SYSTEM_ACTOR = f"system:{GATEWAY}"


class ContextRefused(DomainError):
    code = "CONTEXT_REFUSED"
    default_message = "the call's caller context is unsigned, altered or expired"


def _allowed_by_gateway(data):
    if data.get("role") == SYSTEM or data.get("actor") == GATEWAY_SYSTEM_ACTOR:
        return data.get("role") == SYSTEM and data.get("actor") == GATEWAY_SYSTEM_ACTOR
    return data.get("role") != OPERATOR and not str(data.get("actor", "")).startswith(("operator", "system:"))


def _allowed_by_operator(data):
    return data.get("role") == OPERATOR and data.get("actor") == "operator"


def _allowed_by_service(signer, data):
    actor = str(data.get("actor", ""))
    return actor == f"system:{signer}" or actor.startswith(f"system:{signer}:")


def may_claim(signer, data):
    """Whether ``signer`` may vouch for this context at all (its signature aside)."""
    if signer == GATEWAY:
        return _allowed_by_gateway(data)
    if signer == OPERATOR_SIGNER:
        return _allowed_by_operator(data)
    return _allowed_by_service(signer, data)


def _canonical(data):
    return json.dumps({field: data.get(field) for field in SIGNED_FIELDS}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode()


def _b64(raw):
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_signing_key():
    """A new private key, as its configuration text."""
    return _b64(Ed25519PrivateKey.generate().private_bytes_raw())


def public_key_of(signing_key):
    """The public half of a signing key's configuration text, as configuration text."""
    public = Ed25519PrivateKey.from_private_bytes(_unb64(signing_key)).public_key()
    return _b64(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


def keyring_text(signing_keys):
    """``{signer: signing key}`` -> the ``SHIORI_CONTEXT_VERIFY_KEYS`` text every process gets."""
    return ",".join(f"{signer}:{public_key_of(key)}" for signer, key in sorted(signing_keys.items()))


class ContextSigner:
    def __init__(self, name, signing_key, lifetime_seconds=DEFAULT_LIFETIME_SECONDS):
        self.name = name
        self.key = Ed25519PrivateKey.from_private_bytes(_unb64(signing_key))
        self.lifetime_seconds = lifetime_seconds

    def sign(self, data):
        """``data`` (tenant, actor, role …) as a context this signer vouches for, valid for its lifetime."""
        signed = {key: value for key, value in data.items() if key != "signature"}
        signed["signer"] = self.name
        signed["expires"] = int((time.time() + self.lifetime_seconds) * 1000)
        if not may_claim(self.name, signed):
            raise ValueError(f"{self.name} may not sign for {signed.get('actor')!r} as {signed.get('role')!r}")
        signed["signature"] = _b64(self.key.sign(_canonical(signed)))
        return SignedContext(signed, self)


class SignedContext(dict):
    """A context that signs itself again when it is about to expire.

    nameko builds each outgoing call's headers from ``worker_ctx.data.copy()``; a worker whose context this
    process signed (a long bulk import at the gateway, an operator's command, a daily pass) hands that copy a
    fresh signature, so the work is not cut off by its own deadline while a forwarded context keeps the
    deadline of the request it belongs to."""

    def __init__(self, data, signer):
        super().__init__(data)
        self.signer = signer

    def copy(self):
        if self["expires"] - time.time() * 1000 < self.signer.lifetime_seconds * 500:
            self.update(self.signer.sign(self))
        return dict(self)


class ContextVerifier:
    def __init__(self, public_keys):
        self.public_keys = {signer: Ed25519PublicKey.from_public_bytes(_unb64(key))
                            for signer, key in public_keys.items()}

    @classmethod
    def from_text(cls, text):
        entries = [entry.partition(":") for entry in (text or "").replace(" ", "").split(",") if entry]
        return cls({signer: key for signer, _, key in entries})

    def verify(self, data):
        """The context, if it is signed by a known signer that may claim it, unaltered and in time."""
        signer, signature = data.get("signer"), data.get("signature")
        if not signature or not signer:
            raise ContextRefused("the call carries no signed caller context")
        key = self.public_keys.get(signer)
        if key is None:
            raise ContextRefused(f"unknown context signer {signer!r}", {"signer": signer})
        try:
            key.verify(_unb64(signature), _canonical(data))
        except (InvalidSignature, ValueError):
            raise ContextRefused("the caller context's signature does not match it", {"signer": signer}) from None
        if not isinstance(data.get("expires"), int) or data["expires"] < (time.time() - CLOCK_SKEW_SECONDS) * 1000:
            raise ContextRefused("the caller context has expired", {"signer": signer})
        if not may_claim(signer, data):
            raise ContextRefused(f"{signer} may not vouch for this caller", {"signer": signer})
        return data


def anonymous(data):
    """An unsigned call to a public method: the anonymous public of the tenant it names, whatever it claims."""
    return {"tenant": data.get("tenant"), "actor": "public", "role": PUBLIC}


def refusal_logged(service, method, error, data):
    security_log.warning("refused a call to %s.%s: %s (signer %r, claimed actor %r, role %r)",
                         service, method, error.message, data.get("signer"), data.get("actor"), data.get("role"))
