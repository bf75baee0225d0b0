"""The notices service's tables: notices not yet sent (or, without an e-mail address, not yet phoned), and
each tenant's notice settings. A notice is deleted once sent or phoned: no copy of what was told stays."""
from datetime import datetime

from sqlalchemy import JSON, Boolean, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shiori.db import UtcDateTime
from shiori.events import ProcessedEventMixin


class Base(DeclarativeBase):
    pass


class Notice(Base):
    """``kind``: hold_ready, due_soon or overdue; ``facts``: the dates, counts and library the event told
    (never a title: those are looked up when sending, where the tenant wants them). ``channel``: email, or
    phone for patrons without an address (listed for the desk)."""

    __tablename__ = "notices"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(32), index=True)
    patron_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    facts: Mapped[dict] = mapped_column(JSON)
    channel: Mapped[str] = mapped_column(String(8), default="email")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    # Why the last attempt failed, as the mail library said it (about the server, never the recipient).
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class NoticeSettings(Base):
    """Whether notices name the titles (off by default: a family member may read the e-mail), and the
    tenant's own wording of each kind of notice ({kind: {"subject", "body"}}; missing kinds use the default)."""

    __tablename__ = "notice_settings"

    tenant: Mapped[str] = mapped_column(String(32), primary_key=True)
    include_titles: Mapped[bool] = mapped_column(Boolean, default=False)
    templates: Mapped[dict] = mapped_column(JSON, default=dict)


class ProcessedEvent(ProcessedEventMixin, Base):
    pass
