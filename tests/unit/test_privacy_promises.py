"""PRIVACY.md's promises are requirements with tests: each numbered promise has at least one test marked
``@pytest.mark.privacy(n)`` that would fail if it broke. This module checks that none is left without, and
holds the tests of promise 1 that need no running system."""
import ast
import importlib
from pathlib import Path

import pytest

from services.patrons.models import SEALED_FIELDS, Patron

PROMISES = range(1, 13)
TESTS = Path(__file__).resolve().parent.parent
# API.md, "Personal fields of a patron": what the application collects, and what the system keeps itself.
COLLECTED = {"name", "name_kana", "birth_date", "sex", "address", "alt_address", "phone", "email", "home_library",
             "category"}
KEPT = {"card_number", "registered_on", "last_used_on", "total_uses", "expires_on", "status"}
# Columns of the patrons table that are no attribute of the resident: the row's own bookkeeping.
BOOKKEEPING = {"id", "tenant", "key_ref", "card_hash", "phone_hash", "reading_hash", "pin_hash"}
SERVICES_WITH_TABLES = ("patrons", "loans", "catalog", "statistics", "notices")
# Columns named like a personal field that are not the patron's: the network address a staff member or the
# patron called from, which the access record keeps (and drops after SHIORI_ADDRESS_RETENTION_DAYS).
NOT_THE_PATRONS = {("access_record", "address")}


def promises_marked(path):
    """The promise numbers named by ``pytest.mark.privacy(...)`` decorators in one test file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "privacy":
            found.update(argument.value for argument in node.args if isinstance(argument, ast.Constant))
    return found


def test_every_promise_has_a_test():
    marked = set().union(*(promises_marked(path) for path in TESTS.rglob("test_*.py")))
    assert set(PROMISES) - marked == set(), "PRIVACY.md promises without a test marked pytest.mark.privacy(n)"
    assert marked <= set(PROMISES), "a test is marked with a promise PRIVACY.md does not make"


@pytest.mark.privacy(1)
def test_the_patron_record_holds_only_the_listed_fields():
    columns = {column.name.removesuffix("_sealed") for column in Patron.__table__.columns}
    assert columns - BOOKKEEPING == COLLECTED | KEPT
    assert set(SEALED_FIELDS) <= COLLECTED | KEPT


@pytest.mark.privacy(1)
def test_no_other_table_keeps_a_personal_field_beside_a_patron():
    personal = COLLECTED - {"home_library", "category"}
    for service in SERVICES_WITH_TABLES:
        metadata = importlib.import_module(f"services.{service}.models").Base.metadata
        for table in metadata.tables.values():
            if table.name == "patrons" or not any("patron" in column.name for column in table.columns):
                continue
            names = {column.name.removesuffix("_sealed") for column in table.columns
                     if (table.name, column.name) not in NOT_THE_PATRONS}
            assert not names & personal, f"{service}.{table.name} keeps {names & personal} beside a patron"
