"""The catalogue's own tables: tenants, their libraries, works, copies (items) and copy availability."""
from datetime import date, datetime

from sqlalchemy import Boolean, Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shiori.db import UtcDateTime
from shiori.events import ProcessedEventMixin


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    """A municipality renting the service (e.g. 海津市)."""

    __tablename__ = "tenants"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Library(Base):
    __tablename__ = "libraries"
    __table_args__ = (UniqueConstraint("tenant", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.code"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))


class Work(Base):
    """A bibliographic record (書誌)."""

    __tablename__ = "works"
    __table_args__ = (UniqueConstraint("tenant", "source_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.code"), index=True)
    title: Mapped[str] = mapped_column(String(1000))
    title_reading: Mapped[str | None] = mapped_column(String(1000))
    publisher: Mapped[str | None] = mapped_column(String(500))
    published_year: Mapped[int | None] = mapped_column(Integer)
    isbn: Mapped[str | None] = mapped_column(String(13), index=True)
    ndc: Mapped[str | None] = mapped_column(String(16))
    # Where an imported record came from (e.g. "aozora:000879"), so a re-import updates instead of duplicating.
    source_id: Mapped[str | None] = mapped_column(String(100))

    authors: Mapped[list["Contributor"]] = relationship(
        order_by="Contributor.position", cascade="all, delete-orphan", lazy="selectin"
    )
    items: Mapped[list["Item"]] = relationship(back_populates="work", lazy="selectin")


class Contributor(Base):
    """A person credited on a work, with their role (author, translator, ...)."""

    __tablename__ = "contributors"

    id: Mapped[int] = mapped_column(primary_key=True)
    work_id: Mapped[int] = mapped_column(ForeignKey("works.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(32))


class Item(Base):
    """A physical copy with its barcode. ``on_loan``/``due_date`` are a projection of loan events: the
    catalogue knows that a copy is out and until when, never to whom."""

    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("tenant", "barcode"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.code"), index=True)
    barcode: Mapped[str] = mapped_column(String(32))
    work_id: Mapped[int] = mapped_column(ForeignKey("works.id"), index=True)
    library_id: Mapped[int] = mapped_column(ForeignKey("libraries.id"), index=True)
    call_number: Mapped[str | None] = mapped_column(String(100))
    shelf_location: Mapped[str | None] = mapped_column(String(200))
    on_loan: Mapped[bool] = mapped_column(Boolean, default=False)
    due_date: Mapped[date | None] = mapped_column(Date)
    # Time of the loan event last applied: an older event arriving late must not undo a newer one.
    loan_status_as_of: Mapped[datetime | None] = mapped_column(UtcDateTime)

    work: Mapped[Work] = relationship(back_populates="items")
    library: Mapped[Library] = relationship(lazy="joined")


class ProcessedEvent(ProcessedEventMixin, Base):
    pass
