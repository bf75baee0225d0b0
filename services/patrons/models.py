"""The patrons service's own tables: library cards (patrons) and staff accounts.

A patron row holds exactly the personal fields of API.md and nothing about what they read.
"""
from datetime import date, datetime

from sqlalchemy import JSON, Date, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shiori.db import UtcDateTime
from shiori.events import ProcessedEventMixin


class Base(DeclarativeBase):
    pass


class Patron(Base):
    __tablename__ = "patrons"
    # AUTOINCREMENT: SQLite would otherwise give a deleted patron's id to the next one, who would inherit the
    # access record of someone else.
    __table_args__ = (UniqueConstraint("tenant", "card_number"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(32), index=True)
    card_number: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    name_kana: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(500))
    alt_address: Mapped[str | None] = mapped_column(String(500))
    phone: Mapped[str] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(254))
    home_library: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(16))
    registered_on: Mapped[date] = mapped_column(Date)
    expires_on: Mapped[date] = mapped_column(Date)
    last_used_on: Mapped[date | None] = mapped_column(Date)
    total_uses: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # For the patron's own log-in (card number + PIN), Argon2; never shown.
    pin_hash: Mapped[str | None] = mapped_column(String(200))


class StaffAccount(Base):
    __tablename__ = "staff_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(32), index=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    libraries: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class KnownLibrary(Base):
    """The tenant's libraries and their kinds, projected from the catalogue's ``library_added`` events: who
    may see a patron depends on whether their home library is a school's."""

    __tablename__ = "known_libraries"

    tenant: Mapped[str] = mapped_column(String(32), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))


class LoginFailure(Base):
    """Failed log-ins per account, card or address, for throttling; the key holds no name or card number."""

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    first_failed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    blocked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ProcessedEvent(ProcessedEventMixin, Base):
    pass
