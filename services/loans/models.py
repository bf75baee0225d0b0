"""The loans service's tables: loans, and the circulation rules of each tenant (loan policies, library
calendars, settings). A loan or hold row names no patron: its ``borrower_ref`` is a random value that only the
erasing store (borrowers.py) maps to one, until the row is deleted (not flagged) at check-in or when the
hold ends."""
from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, Integer, String, UniqueConstraint, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shiori.db import UtcDateTime
from shiori.events import ProcessedEventMixin
from shiori.idempotency import CommandRecordMixin, forget_answers_with
from shiori.outbox import OutboxEventMixin


class Base(DeclarativeBase):
    pass


class Loan(Base):
    __tablename__ = "loans"
    # A copy can be on loan once at a time: the database refuses a second loan, whatever races above it.
    # AUTOINCREMENT: a loan id is never given again once its loan is deleted (events name loans by id).
    __table_args__ = (UniqueConstraint("tenant", "item_barcode", name="one_loan_per_item"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(32))
    borrower_ref: Mapped[str] = mapped_column(String(32), unique=True)
    item_barcode: Mapped[str] = mapped_column(String(32))
    work_id: Mapped[int] = mapped_column(Integer)
    item_type: Mapped[str] = mapped_column(String(16), default="book")
    ndc_class: Mapped[str | None] = mapped_column(String(1))
    library: Mapped[str] = mapped_column(String(32))
    loaned_on: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date, index=True)
    renewals: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Hold(Base):
    """A title-level hold (予約) on a work, in a FIFO queue per work (by id). Like a loan's, its patron is in
    the erasing store only, and the row is deleted when the hold ends: lent, cancelled, lapsed or not
    picked up.

    ``status``: ``pending`` (a later volume of a series hold, not yet in the queue), ``waiting``,
    ``in_transit`` (a copy is reserved and on its way to the pickup library) or ``ready`` (on the hold
    shelf until ``ready_until``)."""

    __tablename__ = "holds"
    __table_args__ = (UniqueConstraint("tenant", "item_barcode", name="one_hold_per_copy"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(32))
    borrower_ref: Mapped[str] = mapped_column(String(32), unique=True)
    work_id: Mapped[int] = mapped_column(Integer, index=True)
    pickup_library: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    item_barcode: Mapped[str | None] = mapped_column(String(32))
    ready_until: Mapped[date | None] = mapped_column(Date)
    not_needed_after: Mapped[date | None] = mapped_column(Date)
    # 順番予約: volumes of a series, each active only once the one before has been lent to the patron.
    series: Mapped[str | None] = mapped_column(String(36), index=True)
    series_position: Mapped[int | None] = mapped_column(Integer)
    placed_on: Mapped[date] = mapped_column(Date)


class Transit(Base):
    """A copy on its way between libraries (to a hold's pickup library, or home), until checked in there."""

    __tablename__ = "transits"

    tenant: Mapped[str] = mapped_column(String(32), primary_key=True)
    item_barcode: Mapped[str] = mapped_column(String(32), primary_key=True)
    from_library: Mapped[str] = mapped_column(String(32))
    to_library: Mapped[str] = mapped_column(String(32), index=True)
    since: Mapped[date] = mapped_column(Date)


class LoanPolicy(Base):
    """A loan rule for patron category × item type × library; an empty key matches any. The rule with the
    most keys set wins (rules.governing_policy)."""

    __tablename__ = "loan_policies"
    __table_args__ = (UniqueConstraint("tenant", "scope"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(32), index=True)
    patron_category: Mapped[str | None] = mapped_column(String(16))
    item_type: Mapped[str | None] = mapped_column(String(16))
    library: Mapped[str | None] = mapped_column(String(32))
    loan_days: Mapped[int] = mapped_column(Integer)
    max_items: Mapped[int] = mapped_column(Integer)  # on loan at once, all types together
    max_items_of_type: Mapped[int | None] = mapped_column(Integer)  # of this rule's item type
    renewals: Mapped[int] = mapped_column(Integer)
    max_holds: Mapped[int] = mapped_column(Integer)
    # The three keys as one string ("child|*|main"): to a UNIQUE constraint every NULL differs, so one rule
    # per combination is enforced on this.
    scope: Mapped[str] = mapped_column(String(80))


@event.listens_for(LoanPolicy, "before_insert")
@event.listens_for(LoanPolicy, "before_update")
def _set_scope(_mapper, _connection, policy):
    policy.scope = "|".join(key or "*" for key in (policy.patron_category, policy.item_type, policy.library))


class CirculationSettings(Base):
    """A tenant's choices where Japanese libraries differ."""

    __tablename__ = "circulation_settings"

    tenant: Mapped[str] = mapped_column(String(32), primary_key=True)
    renew_from: Mapped[str] = mapped_column(String(16), default="today")  # or "due_date"
    renewal_grace_days: Mapped[int] = mapped_column(Integer, default=0)
    # After a late return, no borrowing for as many days as the copy was late.
    suspend_for_late_days: Mapped[bool] = mapped_column(Boolean, default=False)


class LibraryCalendar(Base):
    """A library's weekly closing days (0 = Monday … 6 = Sunday) and closed periods (holidays, 蔵書点検,
    unplanned closures) as [{"first": date, "last": date, "reason": str}]."""

    __tablename__ = "library_calendars"

    tenant: Mapped[str] = mapped_column(String(32), primary_key=True)
    library: Mapped[str] = mapped_column(String(32), primary_key=True)
    closed_weekdays: Mapped[list] = mapped_column(JSON, default=list)
    closures: Mapped[list] = mapped_column(JSON, default=list)


class DailyPass(Base):
    """The days the overdue pass has run, so that a restart or a second replica does not run it twice."""

    __tablename__ = "daily_passes"

    day: Mapped[date] = mapped_column(Date, primary_key=True)


class ProcessedEvent(ProcessedEventMixin, Base):
    pass


class OutboxEvent(OutboxEventMixin, Base):
    """Events not yet published: each a ref only, its envelope waiting in the erasing store (shiori/outbox.py)."""


class CommandRecord(CommandRecordMixin, Base):
    pass


# A check-out's or renewal's answer names the copy lent; a hold's, the work held: kept no longer than they are.
forget_answers_with(Loan, CommandRecord, lambda loan: [f"loan:{loan.id}"])
forget_answers_with(Hold, CommandRecord,
                    lambda hold: [f"hold:{hold.id}"] + ([f"series:{hold.series}"] if hold.series else []))
