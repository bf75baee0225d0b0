"""The loans service's one table. A loan row is the only place that links a patron to a copy, and it is
deleted, not flagged, at check-in."""
from datetime import date, datetime

from sqlalchemy import Date, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shiori.db import UtcDateTime
from shiori.events import ProcessedEventMixin


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
    patron_id: Mapped[int] = mapped_column(Integer, index=True)
    item_barcode: Mapped[str] = mapped_column(String(32))
    work_id: Mapped[int] = mapped_column(Integer)
    library: Mapped[str] = mapped_column(String(32))
    loaned_on: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ProcessedEvent(ProcessedEventMixin, Base):
    pass
