"""Who has each loan and hold: the one part of circulation that names a patron, kept out of the loans
database in an erasing store of its own (shiori/keystore.py, ``BORROWERS_DATABASE_URL``).

A loan or hold row in the loans database carries a random ``borrower_ref`` and nothing about its patron;
the store maps that ref to the patron (and, for a loan, the borrower's category and age band, which
renewals and statistics need). At check-in, or when a hold ends, the store's row is erased: whatever the
loans database keeps of the deleted row (PostgreSQL's dead tuples, its write-ahead log, a backup) is then a
copy and a random ref that nothing in the system leads back to a patron.

The store is written on either side of the loans database's commit: a borrower is recorded before the row
that names it commits (a failed commit forgets it again), and forgotten after the row's deletion commits (a
forget that fails leaves an orphan that ``sweep`` erases).
"""
import secrets
from contextlib import contextmanager
from datetime import date, datetime, timedelta

from sqlalchemy import Date, Integer, String, UniqueConstraint, delete, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shiori.db import UtcDateTime
from shiori.keystore import ErasingStore

# A borrower recorded longer ago than this with no loan or hold naming it was left by a commit that failed.
ORPHAN_AFTER = timedelta(minutes=10)


class StoreBase(DeclarativeBase):
    pass


class Borrower(StoreBase):
    __tablename__ = "borrowers"
    # One hold per patron and work: enforced here, where the patron is (loans leave held_work_id empty).
    __table_args__ = (UniqueConstraint("tenant", "patron_id", "held_work_id", name="one_hold_per_work"),)

    ref: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(32))
    patron_id: Mapped[int] = mapped_column(Integer, index=True)
    # A loan's borrower when lent: which loan policy governs renewals, and what statistics count.
    patron_category: Mapped[str | None] = mapped_column(String(16))
    age_band: Mapped[str | None] = mapped_column(String(8))
    held_work_id: Mapped[int | None] = mapped_column(Integer)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Suspension(StoreBase):
    """No borrowing until ``until`` (inclusive), after a late return; deleted once it has passed. Here, not
    in the loans database: written as a loan is returned, it would share the return's transaction (and its
    id in PostgreSQL's dead row) there."""

    __tablename__ = "suspensions"

    tenant: Mapped[str] = mapped_column(String(32), primary_key=True)
    patron_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    until: Mapped[date] = mapped_column(Date)


def new_ref():
    return secrets.token_hex(16)


class Borrowers:
    """One worker's access to the store. Every change commits at once: a write never waits on the loans
    database or on another service while it holds the store."""

    def __init__(self, session):
        self.session = session

    @contextmanager
    def recorded(self, borrowers):
        """Record ``borrowers`` (Borrower rows) for the block, which commits the rows naming them; if the
        block fails they are forgotten. A hold the patron already has on the work raises IntegrityError
        before the block runs."""
        self.session.add_all(borrowers)
        try:
            self.session.commit()
        except Exception:
            self.session.rollback()
            raise
        try:
            yield
        except BaseException:
            self.forget([borrower.ref for borrower in borrowers])
            raise

    def forget(self, refs):
        """Erase these borrowers (once the rows naming them are deleted and committed)."""
        if refs:
            self.session.execute(delete(Borrower).where(Borrower.ref.in_(list(refs))))
            self.session.commit()

    def of(self, refs):
        """The borrowers of these refs, by ref."""
        refs = list(refs)
        if not refs:
            return {}
        return {borrower.ref: borrower for borrower in self.session.scalars(
            select(Borrower).where(Borrower.ref.in_(refs)))}

    def get(self, ref):
        return self.session.get(Borrower, ref)

    def refs_of(self, tenant, patron_ids):
        """The refs of these patrons' loans and holds."""
        return list(self.session.scalars(select(Borrower.ref).where(
            Borrower.tenant == tenant, Borrower.patron_id.in_(list(patron_ids)))))

    def suspension(self, tenant, patron_id):
        return self.session.get(Suspension, (tenant, patron_id))

    def suspend(self, tenant, patron_id, until):
        """No borrowing until ``until``, or a later day a suspension already runs to."""
        suspension = self.suspension(tenant, patron_id)
        if suspension is None:
            self.session.add(Suspension(tenant=tenant, patron_id=patron_id, until=until))
        else:
            suspension.until = max(suspension.until, until)
        self.session.commit()

    def lift_suspensions(self, today):
        """Drop the suspensions that ended before ``today``."""
        self.session.execute(delete(Suspension).where(Suspension.until < today))
        self.session.commit()

    def lift_suspension(self, tenant, patron_id):
        """Drop a patron's suspension (the patron is deleted)."""
        self.session.execute(delete(Suspension).where(Suspension.tenant == tenant, Suspension.patron_id == patron_id))
        self.session.commit()

    def sweep(self, live_refs, now):
        """Erase borrowers that no loan or hold names (``live_refs``: every ref the loans database holds),
        but for those recorded too recently before ``now`` to tell. Answers how many."""
        orphans = [ref for ref in self.session.scalars(
            select(Borrower.ref).where(Borrower.recorded_at < now - ORPHAN_AFTER)) if ref not in live_refs]
        self.forget(orphans)
        return len(orphans)


class BorrowerStore(ErasingStore):
    """The loans service's erasing store, handed to workers as ``Borrowers``."""

    def __init__(self):
        super().__init__(StoreBase.metadata, url_key="BORROWERS_DATABASE_URL")

    def get_dependency(self, worker_ctx):
        return Borrowers(super().get_dependency(worker_ctx))
