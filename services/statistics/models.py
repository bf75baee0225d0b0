"""The statistics service's one table of anonymous daily counts. No column can hold a patron id, a card
number, a title or a copy: only what the national surveys count by."""
from datetime import date

from sqlalchemy import Date, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shiori.events import ProcessedEventMixin


class Base(DeclarativeBase):
    pass


class DailyCount(Base):
    """How many ``measure`` (check-outs, registrations, ...) a library had on a day, per patron category,
    age band, item type and NDC class ("" where a measure has no such dimension or it is not known)."""

    __tablename__ = "daily_counts"

    tenant: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    measure: Mapped[str] = mapped_column(String(16), primary_key=True)
    library: Mapped[str] = mapped_column(String(32), primary_key=True)
    patron_category: Mapped[str] = mapped_column(String(16), primary_key=True)
    age_band: Mapped[str] = mapped_column(String(8), primary_key=True)
    item_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    ndc_class: Mapped[str] = mapped_column(String(1), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


DIMENSIONS = ("library", "patron_category", "age_band", "item_type", "ndc_class")


class ProcessedEvent(ProcessedEventMixin, Base):
    pass
