"""The patrons service's own tables: library cards (patrons) and staff accounts.

A patron row holds exactly the personal fields of API.md and nothing about what they read.
"""
from datetime import date, datetime

from sqlalchemy import JSON, Date, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shiori.db import UtcDateTime
from shiori.events import ProcessedEventMixin
from shiori.idempotency import CommandRecordMixin
from shiori.outbox import OutboxEventMixin


class Base(DeclarativeBase):
    pass


class Patron(Base):
    """A library card. The personal fields are sealed with the patron's own data key (vault.py): the
    ``*_sealed`` columns hold ciphertext. Card, phone, and name reading with birth date are found through keyed
    hashes: a desk finds a patron who forgot their card by the reading and birth date, and no index of names
    in the clear exists for it."""

    __tablename__ = "patrons"
    # AUTOINCREMENT: SQLite would otherwise give a deleted patron's id to the next one, who would inherit the
    # access record of someone else.
    __table_args__ = (UniqueConstraint("tenant", "card_hash"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(32), index=True)
    key_ref: Mapped[str] = mapped_column(String(36))
    card_hash: Mapped[str] = mapped_column(String(64))
    phone_hash: Mapped[str] = mapped_column(String(64), index=True)
    reading_hash: Mapped[str] = mapped_column(String(64), index=True)
    card_number_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    name_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    name_kana_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    birth_date_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    sex_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    address_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    alt_address_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    email_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    # In the clear: who may see the patron depends on the home library; statistics count by category.
    home_library: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(16))
    registered_on: Mapped[date] = mapped_column(Date)
    expires_on: Mapped[date] = mapped_column(Date)
    last_used_on: Mapped[date | None] = mapped_column(Date)
    total_uses: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # For the patron's own log-in (card number + PIN), Argon2; never shown.
    pin_hash: Mapped[str | None] = mapped_column(String(200))


SEALED_FIELDS = ("card_number", "name", "name_kana", "birth_date", "sex", "address", "alt_address", "phone", "email")


class RetiredCard(Base):
    """A card number reported lost (its keyed hash, nothing that leads to the patron), so that the desk is
    told so when someone presents it."""

    __tablename__ = "retired_cards"

    tenant: Mapped[str] = mapped_column(String(32), primary_key=True)
    card_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    retired_on: Mapped[date] = mapped_column(Date)


class StaffAccount(Base):
    """A user name is the tenant's own: two municipalities may each have an ``admin``. (A database made
    before this held user names unique across tenants, and keeps that until it is migrated.)"""

    __tablename__ = "staff_accounts"
    __table_args__ = (UniqueConstraint("tenant", "username"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(32), index=True)
    username: Mapped[str] = mapped_column(String(64))
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
    """Log-in attempts per account, card or address, for throttling (services/patrons/credentials.py); the key
    holds no name or card number, only their keyed hash."""

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    first_failed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    blocked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


class RevokedCredential(Base):
    """Tokens of a staff member or patron issued before ``not_before`` no longer work (an account deleted or
    changed, a PIN changed, a card reported lost). Kept only as long as a token lives, for gateways that
    start or missed the broadcast ``credentials_revoked``."""

    __tablename__ = "revoked_credentials"

    tenant: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject: Mapped[str] = mapped_column(String(40), primary_key=True)
    not_before: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class ProcessedEvent(ProcessedEventMixin, Base):
    pass


class CommandRecord(CommandRecordMixin, Base):
    pass


class OutboxEvent(OutboxEventMixin, Base):
    pass
