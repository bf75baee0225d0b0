"""One database per service: an engine per container, a session per worker.

SQLite (the embedded default) is set up so that deleted rows do not linger: ``secure_delete`` overwrites
freed cells, and ``checkpoint`` empties the write-ahead log, which otherwise keeps old page images.
"""
import os
import zlib
from datetime import timezone
from pathlib import Path

import orjson
from nameko.extensions import DependencyProvider
from sqlalchemy import DateTime, TypeDecorator, create_engine, event, insert, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA secure_delete=ON",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=5000",
)


class UtcDateTime(TypeDecorator):
    """An aware UTC instant on every backend (SQLite would hand back naive datetimes)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


def make_engine(url):
    # hide_parameters: an error message must never carry a row's values (personal data) into a log.
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        if url.database:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        return sqlite_engine(url, SQLITE_PRAGMAS)
    return create_engine(url, hide_parameters=True, pool_pre_ping=True, pool_size=10, max_overflow=10)


def sqlite_engine(url, pragmas):
    """An engine on a SQLite database that sets ``pragmas`` on every connection it opens."""
    engine = create_engine(url, hide_parameters=True, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def set_pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(pragma)
        cursor.close()

    return engine


def create_schema(engine, metadata):
    """Create missing tables; on PostgreSQL under a lock, so scaled-out replicas starting together don't race."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            lock_id = zlib.crc32(",".join(sorted(metadata.tables)).encode())
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
        metadata.create_all(connection)


def insert_rows(session, table, rows):
    """Insert ``rows`` (dicts with the same keys) into ``table`` in one statement; answers the new rows' ids
    in row order. On PostgreSQL the rows travel as one JSON parameter that the server unpacks into the
    table's row type: psycopg2 and SQLAlchemy adapting thousands of parameters one by one took a quarter of
    a bulk import's time, and the server does it in C in its own process (the JSON is made by orjson: the
    standard library's encoder took a twelfth of the catalogue's import time on the works' gram arrays).
    Every column with a default is given: the server knows only its own defaults, not the model's."""
    defaulted = [column.key for column in table.columns if column.default is not None and column.key not in rows[0]]
    if defaulted:
        raise ValueError(f"insert_rows into {table.name}: give {', '.join(defaulted)}")
    if session.get_bind().dialect.name != "postgresql":
        return list(session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars())
    quote = session.get_bind().dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in rows[0])
    name = quote(table.name)
    # Ids come from the table's sequence in the order the rows are inserted, the order of the JSON array.
    inserted = session.execute(text(
        f"INSERT INTO {name} ({columns}) SELECT {columns} FROM json_populate_recordset(NULL::{name}, :rows)"
        f" WITH ORDINALITY ORDER BY ordinality RETURNING id"), {"rows": orjson.dumps(rows).decode()})
    return sorted(inserted.scalars())


def insert_or_merge(session, table):
    """An INSERT into ``table`` in the session's dialect, which can say what a conflicting row does instead
    (``on_conflict_do_nothing`` or ``on_conflict_do_update``: PostgreSQL and SQLite spell it alike)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


def commit_unique(session, conflict):
    """Commit; if a unique constraint refuses the change, roll back and raise the domain error ``conflict``."""
    _unique(session.commit, session, conflict)


def flush_unique(session, conflict):
    """Flush (new rows get their ids, for the events that tell them before the commit); if a unique constraint
    refuses the change, roll back and raise the domain error ``conflict``."""
    _unique(session.flush, session, conflict)


def _unique(write, session, conflict):
    try:
        write()
    except IntegrityError:
        session.rollback()
        raise conflict from None


def checkpoint(session):
    """Fold the SQLite write-ahead log into the database and truncate it, so freed bytes leave the WAL too."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


MAIN_DATABASE = "DATABASE_URL"
FAULT_EXIT_AFTER_COMMIT = "SHIORI_FAULT_EXIT_AFTER_COMMIT"


class Database(DependencyProvider):
    """Hands each worker a fresh SQLAlchemy session on one of the service's own databases (the config key
    ``url_key`` names its URL; ``DATABASE_URL`` for the service's main database).

    For the chaos tests (tests/chaos/), when ``SHIORI_FAULT_EXIT_AFTER_COMMIT`` names a folder holding a file
    named for the service, the process deletes that file and exits (``os._exit``) right after a worker's next
    commit on the main database: the change is durable, its reply never sent."""

    def __init__(self, metadata, url_key=MAIN_DATABASE):
        self.metadata = metadata
        self.url_key = url_key
        self.engine = None
        self.sessions = {}
        self.exit_trigger = None

    def setup(self):
        self.engine = self.make_engine(self.container.config[self.url_key])
        create_schema(self.engine, self.metadata)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        faults = os.environ.get(FAULT_EXIT_AFTER_COMMIT)
        if faults and self.url_key == MAIN_DATABASE:
            self.exit_trigger = Path(faults) / self.container.service_name

    def make_engine(self, url):
        return make_engine(url)

    def stop(self):
        self.engine.dispose()

    def get_dependency(self, worker_ctx):
        session = self.session_factory()
        self.sessions[worker_ctx] = session
        if self.exit_trigger is not None:
            event.listen(session, "after_commit", self._exit_if_triggered)
        return session

    def _exit_if_triggered(self, _session):
        try:
            self.exit_trigger.unlink()
        except FileNotFoundError:
            return
        os._exit(70)  # EX_SOFTWARE: the supervisor starts the service again

    def worker_teardown(self, worker_ctx):
        session = self.sessions.pop(worker_ctx, None)
        if session is not None:
            session.close()


class ContainerCache(DependencyProvider):
    """One object made by ``factory`` when the service container starts and handed to every worker: what a
    service process remembers of its database between calls. Per container, not per class, because it
    stands for one database: tests run a service on SQLite and on PostgreSQL side by side in one process."""

    def __init__(self, factory):
        self.factory = factory
        self.cache = None

    def setup(self):
        self.cache = self.factory()

    def get_dependency(self, worker_ctx):
        return self.cache
