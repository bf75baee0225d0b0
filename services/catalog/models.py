"""The catalogue's own tables: tenants, their libraries, works, copies (items) and copy availability."""
from datetime import date, datetime

from sqlalchemy import (
    DDL, JSON, BigInteger, Boolean, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint, cast, event,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import UserDefinedType
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shiori.db import UtcDateTime
from shiori.events import ProcessedEventMixin
from shiori.idempotency import CommandRecordMixin
from shiori.outbox import OutboxEventMixin


class Base(DeclarativeBase):
    pass


class GramArray(UserDefinedType):
    """A PostgreSQL bigint[] sent as one array literal: psycopg2 would adapt its forty-odd numbers one by one,
    which was a third of an import's time."""

    cache_ok = True

    def get_col_spec(self):
        return "BIGINT[]"

    def bind_processor(self, dialect):
        return lambda grams: None if grams is None else "{%s}" % ",".join(map(str, grams))

    def bind_expression(self, bindvalue):
        return cast(bindvalue, ARRAY(BigInteger))


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
    # Titles and readings equal to a word or starting with it are looked up directly, ahead of a query's
    # other matches (services/catalog/search.py). PostgreSQL: text_pattern_ops, so LIKE 'word%' uses the
    # index whatever the database's collation; SQLite compares bytes, and is asked for a range.
    __table_args__ = (UniqueConstraint("tenant", "source_id"),
                      Index("works_title_folded", "title_folded", postgresql_ops={"title_folded": "text_pattern_ops"}),
                      Index("works_reading_folded", "reading_folded",
                            postgresql_ops={"reading_folded": "text_pattern_ops"}))

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.code"), index=True)
    title: Mapped[str] = mapped_column(String(1000))
    subtitle: Mapped[str | None] = mapped_column(String(1000))
    responsibility: Mapped[str | None] = mapped_column(String(1000))
    title_reading: Mapped[str | None] = mapped_column(String(1000))
    publisher_id: Mapped[int | None] = mapped_column(ForeignKey("publishers.id"), index=True)
    published_year: Mapped[int | None] = mapped_column(Integer)
    isbn: Mapped[str | None] = mapped_column(String(13), index=True)
    ndc: Mapped[str | None] = mapped_column(String(16), index=True)
    ddc: Mapped[str | None] = mapped_column(String(32))
    subjects: Mapped[list] = mapped_column(JSON, default=list)
    # Where an imported record came from (e.g. "aozora:000879"), so a re-import updates instead of duplicating.
    source_id: Mapped[str | None] = mapped_column(String(100))
    # Folded forms for search (services/catalog/text.py): the title and its reading for ranking, and every
    # title form / every contributor's name and reading for checking a candidate really matches.
    title_folded: Mapped[str] = mapped_column(String(1000), default="")
    reading_folded: Mapped[str] = mapped_column(String(2000), default="")
    title_key: Mapped[str] = mapped_column(Text, default="")
    people_key: Mapped[str] = mapped_column(Text, default="")
    # The search index on PostgreSQL (services/catalog/search.py): the work's grams under a GIN index, which
    # intersects them itself. SQLite has no such index; there the same grams are rows of work_grams.
    # Deferred: only the database reads it; a work loaded for display would carry a hundred numbers along.
    grams: Mapped[list | None] = mapped_column(JSON().with_variant(GramArray(), "postgresql"), deferred=True)

    publisher_entry: Mapped["Publisher | None"] = relationship(lazy="joined")
    authors: Mapped[list["Contributor"]] = relationship(
        order_by="Contributor.position", cascade="all, delete-orphan", lazy="selectin"
    )
    items: Mapped[list["Item"]] = relationship(back_populates="work", lazy="selectin")

    @property
    def publisher(self):
        return self.publisher_entry.name if self.publisher_entry else None


class Publisher(Base):
    __tablename__ = "publishers"
    __table_args__ = (UniqueConstraint("tenant", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(500))
    folded: Mapped[str] = mapped_column(String(500))


class Person(Base):
    """Someone credited on works (著者, 翻訳者, ...), once per tenant, with the folded name and reading."""

    __tablename__ = "people"
    # The folded forms are looked up whole: a query that is someone's name ranks their works first (search.py).
    __table_args__ = (UniqueConstraint("tenant", "name"), Index("people_by_folded_name", "tenant", "folded"),
                      Index("people_by_folded_reading", "tenant", "reading_folded"))

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(300))
    folded: Mapped[str] = mapped_column(String(300))
    reading_folded: Mapped[str] = mapped_column(String(600))


class Contributor(Base):
    """A person credited on a work, with their role (author, translator, ...)."""

    __tablename__ = "contributors"

    id: Mapped[int] = mapped_column(primary_key=True)
    work_id: Mapped[int] = mapped_column(ForeignKey("works.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(32))

    person: Mapped[Person] = relationship(lazy="joined")

    @property
    def name(self):
        return self.person.name


event.listen(Work.__table__, "after_create",
             DDL("CREATE INDEX works_grams ON works USING gin (grams)").execute_if(dialect="postgresql"))


class WorkGram(Base):
    """The search index on SQLite: one row per gram of a work's titles, people and publisher."""

    __tablename__ = "work_grams"
    __table_args__ = {"sqlite_with_rowid": False}

    gram: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    work_id: Mapped[int] = mapped_column(ForeignKey("works.id", ondelete="CASCADE"), primary_key=True, index=True)


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
    # What loan rules apply (services/loans): book, magazine, av or reference (not for loan).
    item_type: Mapped[str] = mapped_column(String(16), default="book")
    shelf_location: Mapped[str | None] = mapped_column(String(200))
    on_loan: Mapped[bool] = mapped_column(Boolean, default=False)
    # When not on loan: available, on_hold_shelf (kept for a patron) or in_transit (copy_status_changed).
    shelf_status: Mapped[str] = mapped_column(String(16), default="available")
    due_date: Mapped[date | None] = mapped_column(Date)
    # Time of the loan event last applied: an older event arriving late must not undo a newer one. Lending
    # (on_loan, due_date) and the shelf (shelf_status) keep a time each: the two come by different events, on
    # different queues, so a copy's return may be applied after the newer news that it is back on the shelf.
    loan_status_as_of: Mapped[datetime | None] = mapped_column(UtcDateTime)
    shelf_status_as_of: Mapped[datetime | None] = mapped_column(UtcDateTime)

    work: Mapped[Work] = relationship(back_populates="items")
    library: Mapped[Library] = relationship(lazy="joined")


class LoanCount(Base):
    """How often a work has been lent (popularity, for ranking): a number per work, never who borrowed it.
    A table of its own, so that a catalogue created before it gets it when the service starts."""

    __tablename__ = "loan_counts"

    work_id: Mapped[int] = mapped_column(ForeignKey("works.id", ondelete="CASCADE"), primary_key=True)
    loans: Mapped[int] = mapped_column(Integer)


class CopyLent(Base):
    """The time of the newest ``loan_created`` counted for each copy: a copy is lent once at a time, so the same
    loan told again carries a time not newer than this one and is not counted twice (services/catalog/
    repository.py ``count_loan``)."""

    __tablename__ = "copies_lent"

    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    lent_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ProcessedEvent(ProcessedEventMixin, Base):
    pass


class CommandRecord(CommandRecordMixin, Base):
    pass


class OutboxEvent(OutboxEventMixin, Base):
    pass
