"""The access record (PRIVACY.md 8): every read and change of a patron's personal data, append-only and
hash-chained per tenant, so that editing or deleting an entry is detectable.

Each entry's hash covers its content and the previous entry's hash. Appends take the tenant's chain head
row first (an UPDATE: a row lock on PostgreSQL, the write lock on SQLite), so concurrent appends line up
instead of forking the chain.
"""
import hashlib
import json
from datetime import datetime, timezone

from sqlalchemy import JSON, Integer, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from services.patrons.models import Base
from shiori.clock import now
from shiori.db import UtcDateTime

GENESIS = "0" * 64


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
    address: Mapped[str | None] = mapped_column(String(64))
    route: Mapped[str | None] = mapped_column(String(200))
    previous_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ChainHead(Base):
    __tablename__ = "access_record_head"

    tenant: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


def entry_hash(entry):
    content = {
        "tenant": entry.tenant, "seq": entry.seq, "at": entry.at.astimezone(timezone.utc).isoformat(), "actor": entry.actor,
        "role": entry.role, "patron_id": entry.patron_id, "action": entry.action, "fields": list(entry.fields),
        "address": entry.address, "route": entry.route, "previous_hash": entry.previous_hash,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def record(session, caller, action, patron_ids, fields):
    """Append one entry per patron to the caller's tenant's chain, in the session's open transaction (the
    caller commits, with the change the entries describe)."""
    tenant = caller.tenant
    for patron_id in patron_ids:
        moved = session.execute(update(ChainHead).where(ChainHead.tenant == tenant).values(seq=ChainHead.seq + 1))
        if moved.rowcount == 0:
            session.add(ChainHead(tenant=tenant, seq=1, hash=GENESIS))
            session.flush()
        head = session.get(ChainHead, tenant, populate_existing=True)
        entry = AccessEntry(
            tenant=tenant, seq=head.seq, at=now(), actor=caller.actor, role=caller.role or "unknown",
            patron_id=patron_id, action=action, fields=sorted(fields), address=caller.address, route=caller.route,
            previous_hash=head.hash,
        )
        entry.hash = entry_hash(entry)
        head.hash = entry.hash
        session.add(entry)


def verify(session, tenant, batch=5000):
    """Walk the tenant's chain: answers ``{"entries": n, "intact": bool, "first_broken": seq or None}``."""
    previous, expected_seq, count, last_seq = GENESIS, 1, 0, 0
    while True:
        entries = session.scalars(select(AccessEntry).where(AccessEntry.tenant == tenant, AccessEntry.seq > last_seq)
                                  .order_by(AccessEntry.seq).limit(batch)).all()
        if not entries:
            break
        for entry in entries:
            if entry.seq != expected_seq or entry.previous_hash != previous or entry_hash(entry) != entry.hash:
                return {"entries": count, "intact": False, "first_broken": expected_seq}
            previous, expected_seq, count, last_seq = entry.hash, expected_seq + 1, count + 1, entry.seq
    head = session.get(ChainHead, tenant)
    if head is not None and (head.seq != count or head.hash != previous):
        return {"entries": count, "intact": False, "first_broken": count + 1}  # entries cut off the end
    return {"entries": count, "intact": True, "first_broken": None}
