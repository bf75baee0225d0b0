"""Erasing stores (shiori/keystore.py) and the loans' store of borrowers on one: what is deleted leaves the
files, a borrower outlives no failed commit, and orphans are swept."""
from datetime import datetime, timedelta, timezone

import pytest
from nameko.exceptions import ConfigurationError
from sqlalchemy.orm import sessionmaker

from services.loans.borrowers import ORPHAN_AFTER, Borrower, Borrowers, StoreBase
from shiori.db import create_schema
from shiori.keystore import erasing_engine


@pytest.fixture
def store(tmp_path):
    engine = erasing_engine(f"sqlite:///{tmp_path}/keys/borrowers.db", "BORROWERS_DATABASE_URL")
    create_schema(engine, StoreBase.metadata)
    session = sessionmaker(engine)()
    yield Borrowers(session)
    session.close()
    engine.dispose()


def borrower(ref, patron_id=7, age=timedelta()):
    return Borrower(ref=ref, tenant="kaizu", patron_id=patron_id, recorded_at=datetime.now(timezone.utc) - age)


def store_files(tmp_path):
    return list((tmp_path / "keys").iterdir())


@pytest.mark.parametrize("url", ["postgresql+psycopg2://shiori@db/loans", "sqlite://", "sqlite:///:memory:"])
def test_an_erasing_store_is_a_sqlite_file_never_a_database_that_keeps_deleted_rows(url):
    with pytest.raises(ConfigurationError, match="SQLite file"):
        erasing_engine(url, "BORROWERS_DATABASE_URL")


def test_a_row_erased_from_the_store_leaves_no_byte_of_it_in_any_of_its_files(store, tmp_path):
    ref = "5e1ec7ed" * 4
    with store.recorded([borrower(ref), borrower("0" * 32, patron_id=8)]):
        pass
    assert any(ref.encode() in path.read_bytes() for path in store_files(tmp_path))
    store.forget([ref])
    assert [path.name for path in store_files(tmp_path)] == ["borrowers.db"]  # no journal or log kept
    assert ref.encode() not in (tmp_path / "keys" / "borrowers.db").read_bytes()
    assert (tmp_path / "keys" / "borrowers.db").stat().st_mode & 0o777 == 0o600
    assert list(store.of(["0" * 32])) == ["0" * 32]


def test_borrowers_recorded_for_a_commit_that_fails_are_forgotten(store):
    with pytest.raises(RuntimeError):
        with store.recorded([borrower("a" * 32)]):
            raise RuntimeError("the loans database refused the commit")
    assert store.of(["a" * 32]) == {}


def test_the_sweep_erases_orphans_but_not_borrowers_recorded_too_recently_to_tell(store):
    old = ORPHAN_AFTER + timedelta(minutes=1)
    with store.recorded([borrower("a" * 32, age=old), borrower("b" * 32, age=old), borrower("c" * 32)]):
        pass
    assert store.sweep(live_refs={"b" * 32}, now=datetime.now(timezone.utc)) == 1
    assert sorted(store.of(["a" * 32, "b" * 32, "c" * 32])) == ["b" * 32, "c" * 32]
