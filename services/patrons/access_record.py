"""The access record (PRIVACY.md 8): every read and change of a patron's personal data, append-only and
chained per tenant, so that editing or deleting an entry is detectable.

Each entry's seal is an HMAC-SHA256, under a key kept outside the database (``ACCESS_RECORD_KEY``), of its
content and the previous entry's seal. Whoever can write the database but lacks the key cannot reseal an
entry they changed, nor the entries after it: an unkeyed hash they could simply compute again.

The client's address is kept only for a while (``ADDRESS_RETENTION_DAYS``), yet the entry stays verifiable
after it is dropped: the seal covers a commitment to the address, ``SHA-256(nonce || address)`` with a random
nonce of the entry's own, never the address itself. While the address is there, it must open its
commitment; when it is dropped, the nonce goes with it, and the commitment that stays can no longer be
opened, not even by trying every IPv4 address, as it could if the address were hashed alone.

Appends take the tenant's chain head row first (an UPDATE: a row lock on PostgreSQL, the write lock on
SQLite), so concurrent appends line up instead of forking the chain.
"""
import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime, timezone

from nameko.exceptions import ConfigurationError
from nameko.extensions import DependencyProvider
from sqlalchemy import JSON, Integer, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from services.patrons.models import Base
from shiori.db import UtcDateTime, checkpoint

GENESIS = "0" * 64
NONCE_BYTES = 16


class AccessEntry(Base):
    __tablename__ = "access_record"

    tenant: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(32))
    patron_id: Mapped[int] = mapped_column(Integer, index=True)
    action: Mapped[str] = mapped_column(String(16))
    fields: Mapped[list] = mapped_column(JSON)
    # Dropped (with its nonce) after the address retention period; the commitment stays in the chain.
    address: Mapped[str | None] = mapped_column(String(64))
    address_nonce: Mapped[str | None] = mapped_column(String(2 * NONCE_BYTES))
    address_commitment: Mapped[str | None] = mapped_column(String(64))
    route: Mapped[str | None] = mapped_column(String(200))
    previous_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ChainHead(Base):
    __tablename__ = "access_record_head"

    tenant: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


def address_commitment(nonce, address):
    return hashlib.sha256(bytes.fromhex(nonce) + address.encode()).hexdigest()


def sealed_content(entry):
    """The bytes an entry's seal covers: everything but the address itself (and its nonce)."""
    content = {
        "tenant": entry.tenant, "seq": entry.seq, "at": entry.at.astimezone(timezone.utc).isoformat(),
        "actor": entry.actor, "role": entry.role, "patron_id": entry.patron_id, "action": entry.action,
        "fields": list(entry.fields), "address_commitment": entry.address_commitment, "route": entry.route,
        "previous_hash": entry.previous_hash,
    }
    return json.dumps(content, sort_keys=True, ensure_ascii=False).encode()


class AccessChain:
    """The access record under its key: appending, verifying, and dropping addresses past their time."""

    def __init__(self, key):
        self.key = key

    def seal(self, entry):
        return hmac.new(self.key, sealed_content(entry), hashlib.sha256).hexdigest()

    def record(self, session, caller, at, action, patron_ids, fields):
        """Append one entry per patron, made ``at`` that moment, to the caller's tenant's chain, in the
        session's open transaction (the caller commits, with the change the entries describe)."""
        tenant = caller.tenant
        for patron_id in patron_ids:
            moved = session.execute(update(ChainHead).where(ChainHead.tenant == tenant)
                                    .values(seq=ChainHead.seq + 1))
            if moved.rowcount == 0:
                session.add(ChainHead(tenant=tenant, seq=1, hash=GENESIS))
                session.flush()
            head = session.get(ChainHead, tenant, populate_existing=True)
            entry = AccessEntry(
                tenant=tenant, seq=head.seq, at=at, actor=caller.actor, role=caller.role or "unknown",
                patron_id=patron_id, action=action, fields=sorted(fields), route=caller.route,
                previous_hash=head.hash,
            )
            if caller.address is not None:
                entry.address, entry.address_nonce = caller.address, secrets.token_hex(NONCE_BYTES)
                entry.address_commitment = address_commitment(entry.address_nonce, entry.address)
            entry.hash = self.seal(entry)
            head.hash = entry.hash
            session.add(entry)

    def verify(self, session, tenant, batch=5000):
        """Walk the tenant's chain: answers ``{"entries": n, "intact": bool, "first_broken": seq or None}``."""
        previous, expected_seq, count, last_seq = GENESIS, 1, 0, 0
        while True:
            entries = session.scalars(select(AccessEntry).where(
                AccessEntry.tenant == tenant, AccessEntry.seq > last_seq).order_by(AccessEntry.seq).limit(batch)).all()
            if not entries:
                break
            for entry in entries:
                if entry.seq != expected_seq or entry.previous_hash != previous or not self._intact(entry):
                    return {"entries": count, "intact": False, "first_broken": expected_seq}
                previous, expected_seq, count, last_seq = entry.hash, expected_seq + 1, count + 1, entry.seq
        head = session.get(ChainHead, tenant)
        if head is not None and (head.seq != count or head.hash != previous):
            return {"entries": count, "intact": False, "first_broken": count + 1}  # entries cut off the end
        return {"entries": count, "intact": True, "first_broken": None}

    def _intact(self, entry):
        if not hmac.compare_digest(self.seal(entry), entry.hash):
            return False
        if entry.address is None:  # none was recorded, or it was dropped with its nonce
            return entry.address_nonce is None
        return entry.address_nonce is not None and entry.address_commitment == address_commitment(
            entry.address_nonce, entry.address)

    @staticmethod
    def drop_addresses(session, recorded_before):
        """Drop the address (and its nonce) of every entry recorded before this instant, of every tenant;
        the entries stay, and their chain still verifies. Answers how many entries lost their address."""
        dropped = session.execute(update(AccessEntry).where(
            AccessEntry.at < recorded_before, AccessEntry.address.is_not(None)).values(
            address=None, address_nonce=None)).rowcount
        session.commit()
        checkpoint(session)  # the dropped addresses leave SQLite's write-ahead log too
        return dropped


class AccessRecord(DependencyProvider):
    """The access record's key, from configuration (never from the database it protects)."""

    def setup(self):
        key = base64.urlsafe_b64decode(self.container.config.get("ACCESS_RECORD_KEY") or "")
        if len(key) < 32:
            raise ConfigurationError("ACCESS_RECORD_KEY (SHIORI_ACCESS_RECORD_KEY) must be 32 bytes or more, "
                                     "base64url")
        self.chain = AccessChain(key)

    def get_dependency(self, worker_ctx):
        return self.chain
