"""Issue 11 part 4, PRIVACY.md 2 and 6, down to the files: after a return and after a hold ends, a copy of
every database file of the system (PostgreSQL's relation files and write-ahead log included, and the key
stores) names no patron for the copy or the work; after a patron's deletion, no file holds the key that
opened their record. PostgreSQL keeps deleted rows, so these read the server's own files after a CHECKPOINT."""
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from support import add_copy, check_in, check_out, in_database, register_patron


def database_files(system):
    """Every file that holds any of the system's databases: each SQLite file with its journals, and for
    PostgreSQL each database's folder and the server's write-ahead log, read after a CHECKPOINT."""
    files, wal = [], set()
    for url in system.database_urls.values():
        url = make_url(url)
        if url.get_backend_name() == "sqlite":
            path = Path(url.database)
            files += path.parent.glob(path.name + "*")
            continue
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text("CHECKPOINT"))
                data = Path(connection.execute(text("SHOW data_directory")).scalar())
                folder = data / Path(connection.execute(text("SELECT pg_relation_filepath('pg_class')")).scalar()).parent
        finally:
            engine.dispose()
        if not folder.is_dir():
            pytest.skip(f"PostgreSQL's files ({data}) are not readable here: the server runs elsewhere (a container?)")
        files += folder.iterdir()
        wal |= set((data / "pg_wal").iterdir())
    return [path for path in files + sorted(wal) if path.is_file()]


def files_holding(system, needles):
    """Which of ``needles`` (bytes) some database file of the system holds, and where."""
    found = {}
    for path in database_files(system):
        content = path.read_bytes()
        for needle in needles:
            if needle in content:
                found.setdefault(needle, []).append(str(path))
    return found


@pytest.mark.privacy(2)
def test_a_returned_loan_and_an_ended_hold_leave_nothing_in_any_file_that_names_their_patron(system, staff):
    patron = register_patron(staff)
    _work, item = add_copy(staff)
    held_work, _held_item = add_copy(staff)
    loan = check_out(staff, patron["card_number"], item["barcode"]).json()
    hold = staff.post(f"{staff.base_url}/api/v1/holds", timeout=10, json={
        "work_id": held_work["id"], "pickup_library": "main", "card_number": patron["card_number"]}).json()

    (loan_row,) = in_database(system, "loans", "SELECT * FROM loans WHERE id = :id", id=loan["loan_id"])
    (hold_row,) = in_database(system, "loans", "SELECT * FROM holds WHERE id = :id", id=hold["hold_id"])
    for row in (loan_row, hold_row):  # what PostgreSQL keeps of a deleted row: none of it names the patron
        assert not [column for column in row._mapping if "patron" in column or column == "age_band"], row._mapping
    refs = [loan_row.borrower_ref.encode(), hold_row.borrower_ref.encode()]
    # While they last, the store links the loan and the hold to the patron.
    assert in_database(system, "loan_borrowers", "SELECT patron_id FROM borrowers WHERE ref IN (:loan, :hold)",
                       loan=loan_row.borrower_ref, hold=hold_row.borrower_ref) == [(patron["id"],), (patron["id"],)]
    assert set(files_holding(system, refs)) == set(refs)

    assert check_in(staff, item["barcode"]).status_code == 200
    assert staff.delete(f"{staff.base_url}/api/v1/holds/{hold['hold_id']}", timeout=10).status_code == 204

    found = files_holding(system, [*refs, patron["card_number"].encode()])
    stores = [str(Path(make_url(system.database_urls[name]).database)) for name in ("loan_borrowers", "patron_keys")]
    # The loans database may keep the deleted rows and their refs (PostgreSQL does), but no store anywhere
    # still maps a ref to anyone, and the card number is in no file at all.
    assert not [path for paths in found.values() for path in paths if path.startswith(tuple(stores))], found
    if make_url(system.database_urls["loans"]).get_backend_name() == "postgresql":
        assert refs[0] in found  # PostgreSQL still holds the deleted loan: that is why its ref must lead nowhere
    assert patron["card_number"].encode() not in found, found
    assert in_database(system, "loan_borrowers", "SELECT count(*) FROM borrowers WHERE patron_id = :patron",
                       patron=patron["id"]) == [(0,)]


@pytest.mark.privacy(2)
def test_no_table_of_the_loans_database_names_a_patron(system):
    """Loans, holds and suspensions after a late return: who they are for is in the erasing store alone. A
    loan rule's patron category is a rule, not a person."""
    engine = create_engine(system.database_urls["loans"])
    try:
        tables = inspect(engine).get_table_names()
        naming = [(table, column["name"]) for table in tables for column in inspect(engine).get_columns(table)
                  if "patron" in column["name"] or column["name"] == "age_band"]
    finally:
        engine.dispose()
    assert "loans" in tables and naming == [("loan_policies", "patron_category")]


@pytest.mark.privacy(6, 10)
def test_a_deleted_patrons_data_key_is_in_no_file(system, staff):
    patron = register_patron(staff)
    (key_ref,) = in_database(system, "patrons", "SELECT key_ref FROM patrons WHERE id = :id", id=patron["id"])[0]
    (wrapped,) = in_database(system, "patron_keys", "SELECT wrapped FROM data_keys WHERE key_ref = :ref",
                             ref=key_ref)[0]
    wrapped = bytes(wrapped)
    assert wrapped in files_holding(system, [wrapped])

    assert staff.delete(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10).status_code == 204
    assert files_holding(system, [wrapped]) == {}
