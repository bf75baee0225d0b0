"""The transactional outbox: an event is a row written in the same transaction as the change it tells, and a
relay in the emitting process publishes each committed row to the service's events exchange, then deletes it.

- **Written with the change.** ``EventPublisher`` (shiori/events.py) adds an ``outbox`` row to the worker's
  own session: a change that is rolled back leaves no event, and one that commits leaves its event even if the
  process dies at once. The emitter publishes before it commits.
- **Relayed at once, and again.** A commit that wrote rows wakes the relay, which publishes within
  milliseconds; it also looks every second, for rows a stopped or crashed process left. Rows are read oldest
  first and deleted only once the broker has confirmed each message (publisher confirms, persistent delivery).
  If the broker does not answer or refuses, the rows stay and are tried again after a growing pause.
- **Several relays.** On PostgreSQL a relay locks the rows it takes (``FOR UPDATE SKIP LOCKED``): processes of
  one service relay side by side, each row by one of them. A relay that dies after publishing and before its
  delete commits publishes those rows again: an event may arrive twice, and consumers ignore a second delivery
  by ``event_id`` (``first_delivery``). SQLite has one writer and one process per database.
- **Envelopes kept in an erasing store.** A service whose events name a patron or describe one (the loans
  service: ``patron_card_used``, a borrower's age band) must not leave them in its database's files, where
  PostgreSQL keeps deleted rows, next to the loan the same transaction wrote (docs/storage.md). Its outbox rows
  hold a random ref only; the envelope waits in the service's erasing store (shiori/keystore.py), written just
  before the transaction commits and erased once published. The ref is not the event id, which consumers
  record: nothing left in the service's database leads to the published event.
"""
import json
import logging
import secrets
from datetime import datetime, timedelta, timezone

import eventlet
from eventlet.event import Event
from kombu import Connection
from sqlalchemy import BigInteger, Integer, String, Text, delete, event, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from shiori.db import UtcDateTime, create_schema
from shiori.keystore import erasing_engine

log = logging.getLogger(__name__)

BATCH = 100
POLL_SECONDS = 1.0
FIRST_PAUSE_SECONDS, LONGEST_PAUSE_SECONDS = 0.5, 15.0
STOP_WAIT_SECONDS = 10
PUBLISH_TIMEOUT_SECONDS = 10  # for the broker to take a message and confirm it
# A kept envelope older than this that no outbox row names was left by a commit that failed.
ORPHAN_AFTER = timedelta(minutes=10)


class OutboxEventMixin:
    """A service's events not yet published, oldest first (by ``id``). ``envelope`` is the event's JSON, or
    None when it waits in an erasing store under ``envelope_ref``."""

    __tablename__ = "outbox"

    # BIGINT on PostgreSQL, whose sequence every event ever written advances; on SQLite the rowid.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    envelope: Mapped[str | None] = mapped_column(Text)
    envelope_ref: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class EnvelopeStoreBase(DeclarativeBase):
    pass


class KeptEnvelope(EnvelopeStoreBase):
    __tablename__ = "outbox_envelopes"

    ref: Mapped[str] = mapped_column(String(32), primary_key=True)
    envelope: Mapped[str] = mapped_column(Text)
    kept_at: Mapped[datetime] = mapped_column(UtcDateTime)


class KeptEnvelopes:
    """Envelopes waiting in an erasing store, by ref. Every change commits at once."""

    def __init__(self, url, setting):
        self.engine = erasing_engine(url, setting)
        create_schema(self.engine, EnvelopeStoreBase.metadata)
        self.sessions = sessionmaker(self.engine)

    def keep(self, envelopes):
        now = datetime.now(timezone.utc)
        with self.sessions() as session:
            session.add_all(KeptEnvelope(ref=ref, envelope=text, kept_at=now) for ref, text in envelopes.items())
            session.commit()

    def read(self, refs):
        with self.sessions() as session:
            return dict(session.execute(select(KeptEnvelope.ref, KeptEnvelope.envelope)
                                        .where(KeptEnvelope.ref.in_(refs))).all())

    def erase(self, refs):
        if refs:
            with self.sessions() as session:
                session.execute(delete(KeptEnvelope).where(KeptEnvelope.ref.in_(list(refs))))
                session.commit()

    def sweep(self, live_refs):
        """Erase envelopes no outbox row names (``live_refs()``: the refs it holds), but for recent ones."""
        with self.sessions() as session:
            old = set(session.scalars(select(KeptEnvelope.ref).where(
                KeptEnvelope.kept_at < datetime.now(timezone.utc) - ORPHAN_AFTER)))
        orphans = old - live_refs() if old else set()
        self.erase(orphans)
        return len(orphans)

    def dispose(self):
        self.engine.dispose()


class Outbox:
    """One service's outbox: ``model`` (an ``OutboxEventMixin`` table of its database), sessions from
    ``sessions()`` (the service's Database, set up before the outbox is used), and ``kept`` when envelopes
    wait in an erasing store."""

    def __init__(self, model, sessions, kept=None):
        self.model, self.sessions, self.kept = model, sessions, kept

    def writer(self, session, committed):
        return OutboxWriter(self, session, committed)

    def backlog(self):
        """How many events wait, and for how long the oldest has (seconds), for /health."""
        with self.sessions() as session:
            waiting, oldest = session.execute(select(func.count(), func.min(self.model.created_at))).one()
        age = (datetime.now(timezone.utc) - oldest).total_seconds() if oldest is not None else None
        return {"waiting": waiting, "oldest_seconds": round(age, 3) if age is not None else None}

    def live_refs(self):
        with self.sessions() as session:
            return set(session.scalars(select(self.model.envelope_ref).where(self.model.envelope_ref.is_not(None))))


class OutboxWriter:
    """One worker's events, written in its session's transaction. With an erasing store, the envelopes are
    kept there just before the session commits, and erased again if it rolls back instead."""

    def __init__(self, outbox, session, committed):
        self.outbox, self.session, self.committed = outbox, session, committed
        self.unkept = {}  # ref -> envelope, to keep at the commit
        self.kept = []  # refs kept for a commit that has not happened yet
        event.listen(session, "after_commit", self._after_commit)
        if outbox.kept is not None:
            event.listen(session, "before_commit", self._before_commit)
            event.listen(session, "after_rollback", self._after_rollback)

    def add(self, event_type, body):
        text = json.dumps(body, ensure_ascii=False)
        row = self.outbox.model(event_type=event_type, created_at=datetime.now(timezone.utc))
        if self.outbox.kept is None:
            row.envelope = text
        else:
            row.envelope_ref = secrets.token_hex(16)
            self.unkept[row.envelope_ref] = text
        self.session.add(row)

    def _before_commit(self, _session):
        if self.unkept:
            self.outbox.kept.keep(self.unkept)
            self.kept += list(self.unkept)
            self.unkept = {}

    def _after_commit(self, _session):
        self.kept = []
        self.committed()

    def _after_rollback(self, _session):
        self.abandon()

    def abandon(self):
        """The transaction did not commit: its envelopes go (one that cannot be erased now, the sweep erases)."""
        self.unkept = {}
        refs, self.kept = self.kept, []
        if not refs:
            return
        try:
            self.outbox.kept.erase(refs)
        except Exception as error:  # noqa: BLE001 — the worker's own failure matters more; the sweep follows
            log.warning("envelopes of an undone transaction left for the sweep: %s", type(error).__name__)


class Relay:
    """Publishes a service's committed outbox rows (see the module's text). ``exchange`` is the service's
    events exchange; ``connect()`` opens a broker connection with publisher confirms."""

    def __init__(self, outbox, exchange, connect, serializer, name):
        self.outbox, self.exchange, self.connect, self.serializer = outbox, exchange, connect, serializer
        self.name = name
        self.wakeup, self.stop_requested, self.thread = Event(), Event(), None
        self.connection = self.producer = None
        self.next_sweep = datetime.now(timezone.utc)

    def start(self, spawn):
        self.thread = spawn(self.run)

    def wake(self):
        if not self.wakeup.ready():
            self.wakeup.send()

    def stop(self):
        """Let the batch under way finish (a stop in the middle of one publishes it again after a restart)."""
        if self.thread is None:
            return
        if not self.stop_requested.ready():
            self.stop_requested.send()
        self.wake()
        try:
            with eventlet.Timeout(STOP_WAIT_SECONDS):
                self.thread.wait()
        except eventlet.Timeout:
            self.thread.kill()
        self.thread = None
        self.disconnect()

    def run(self):
        failures = 0
        while not self.stop_requested.ready():
            self.wakeup = Event()  # before reading: a commit from now on wakes the next round
            try:
                while self.relay_batch() == BATCH and not self.stop_requested.ready():
                    pass
                self.sweep_when_due()
            except Exception as error:  # noqa: BLE001 — whatever failed, the rows stay and are tried again
                failures += 1
                self.disconnect()
                pause = min(LONGEST_PAUSE_SECONDS, FIRST_PAUSE_SECONDS * 2 ** (failures - 1))
                log.warning("%s: could not relay events (%s: %s); trying again in %.1f s", self.name,
                            type(error).__name__, str(error)[:200], pause)
                self.rest(self.stop_requested, pause)  # a commit does not cut a pause short
            else:
                failures = 0
                self.rest(self.wakeup, POLL_SECONDS)

    @staticmethod
    def rest(until, seconds):
        with eventlet.Timeout(seconds, False):
            until.wait()

    def relay_batch(self):
        """Publish the oldest rows no other relay holds, and delete them; answers how many there were."""
        model = self.outbox.model
        with self.outbox.sessions() as session:
            rows = session.scalars(select(model).order_by(model.id).limit(BATCH)
                                   .with_for_update(skip_locked=True)).all()
            if not rows:
                return 0
            refs = [row.envelope_ref for row in rows if row.envelope_ref is not None]
            kept = self.outbox.kept.read(refs) if refs else {}
            for row in rows:
                text = row.envelope if row.envelope_ref is None else kept.get(row.envelope_ref)
                if text is None:  # its transaction's commit failed after all, or the sweep took it: nothing to tell
                    log.error("%s: outbox row %d (%s) has no envelope; dropped", self.name, row.id, row.event_type)
                    continue
                self.publish(row.event_type, json.loads(text))
            session.execute(delete(model).where(model.id.in_([row.id for row in rows])))
            session.commit()
        if refs:
            self.outbox.kept.erase(refs)  # after the delete: a crash between leaves orphans, which the sweep erases
        return len(rows)

    def publish(self, event_type, body):
        """As nameko's EventDispatcher does (exchange, routing key = event type, no headers), with a confirm."""
        if self.producer is None:
            self.connection = self.connect()
            self.producer = self.connection.Producer(serializer=self.serializer)
        self.producer.publish(body, exchange=self.exchange, routing_key=event_type, headers={}, delivery_mode=2,
                              mandatory=False, retry=False, timeout=PUBLISH_TIMEOUT_SECONDS)

    def disconnect(self):
        connection, self.connection, self.producer = self.connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # noqa: BLE001 — a broken connection is dropped either way
                pass

    def sweep_when_due(self):
        if self.outbox.kept is None or datetime.now(timezone.utc) < self.next_sweep:
            return
        self.next_sweep = datetime.now(timezone.utc) + ORPHAN_AFTER
        if swept := self.outbox.kept.sweep(self.outbox.live_refs):
            log.info("%s: erased %d envelopes of transactions that did not commit", self.name, swept)


# A connection attempt that fails is tried once more at once; the relay's own pauses follow.
CONNECT_RETRIES = {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.5}


def confirming_connection(amqp_uri, ssl=None, login_method=None):
    """A broker connection whose publishes wait for the broker's confirm (raising if it refuses)."""
    return Connection(amqp_uri, ssl=ssl, login_method=login_method,
                      transport_options={"confirm_publish": True, **CONNECT_RETRIES})
