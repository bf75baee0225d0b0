"""Bulk inserts (shiori.db.insert_rows); on PostgreSQL the import tests exercise them (work ids in record order)."""
import pytest
from sqlalchemy import select

from services.catalog.models import Base, Item, Library
from shiori.db import insert_rows


def test_rows_come_back_as_ids_in_row_order(sqlite_session):
    session = sqlite_session(Base.metadata)
    ids = insert_rows(session, Library.__table__, [
        {"tenant": "kaizu", "code": code, "name": code, "kind": "branch"} for code in ("c", "a", "b")])
    codes = dict(session.execute(select(Library.id, Library.code)).all())
    assert [codes[library_id] for library_id in ids] == ["c", "a", "b"]


def test_a_column_left_to_its_model_default_is_refused(sqlite_session):
    session = sqlite_session(Base.metadata)
    with pytest.raises(ValueError, match="insert_rows into items: give item_type, on_loan, shelf_status"):
        insert_rows(session, Item.__table__, [{"tenant": "kaizu", "barcode": "K1", "work_id": 1, "library_id": 1}])
