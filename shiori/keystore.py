"""Erasing stores: the small SQLite files that hold what must be really gone once it is deleted (the
patrons' data keys, who borrowed or holds what), whatever database the service itself runs on.

PostgreSQL does not erase: a deleted row stays in its table's pages until a vacuum reuses the space, and in
the write-ahead log, its archives and every backup. What links a resident to something must therefore live
where a delete overwrites the bytes. An erasing store is a SQLite file with

- ``secure_delete``: a deleted row's cell, and any page freed, is overwritten with zeros in the file;
- a rollback journal that is deleted at each commit (``journal_mode=DELETE``): the old images of the pages a
  transaction changed exist only while it runs, and no write-ahead log keeps them afterwards;
- temporary files in memory, and the file and its journal readable by this user alone (0600).

Several processes on one machine may share a store (SQLite locks the file); processes on different machines
may not, nor may a store sit on a network file system. See docs/security.md ("No trace after return").
"""
import os
from pathlib import Path

from nameko.exceptions import ConfigurationError
from sqlalchemy import event
from sqlalchemy.engine import make_url

from shiori.db import Database, sqlite_engine

ERASING_PRAGMAS = (
    "PRAGMA journal_mode=DELETE",
    "PRAGMA secure_delete=ON",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=5000",
)


def erasing_engine(url, setting):
    """An engine on the erasing store at ``url`` (``sqlite:///path``); ``setting`` names it in errors."""
    url = make_url(url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise ConfigurationError(f"{setting} must be a SQLite file (sqlite:///path): the key store has to erase "
                                 "what it deletes, and PostgreSQL keeps deleted rows in its files")
    path = Path(url.database)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    path.chmod(0o600)  # SQLite gives its journal the database file's mode
    engine = sqlite_engine(url, ERASING_PRAGMAS)

    @event.listens_for(engine, "connect")
    def refuse_a_write_ahead_log(dbapi_connection, _record):
        # A store that another process still holds in WAL mode cannot leave it: refuse to run on it.
        mode = dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "delete":
            raise ConfigurationError(f"{setting}: {path} is in journal mode {mode!r} (another process holds it)")

    return engine


class ErasingStore(Database):
    """Sessions on a service's erasing store, named by the config key ``url_key``."""

    def make_engine(self, url):
        return erasing_engine(url, self.url_key)
