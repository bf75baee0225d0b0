"""On SQLite a search reads only the works its gram index names: never every work of the tenant."""
import pytest
from sqlalchemy import event

from services.catalog.models import Base, Tenant
from services.catalog.search import search


@pytest.mark.parametrize("params", [{"q": "量子コンピュータ"}, {"q": "猫"}, {"q": "夏目漱石　こころ"},
                                    {"author": "夏目"}, {"q": "こころ", "publisher": "岩波"}])
def test_works_are_looked_up_by_the_ids_the_index_gives(sqlite_session, params):
    session = sqlite_session(Base.metadata)
    session.add(Tenant(code="kaizu", name="海津市"))
    session.commit()
    statements = []
    event.listen(session.get_bind(), "before_cursor_execute",
                 lambda _connection, _cursor, statement, parameters, _context, _many:
                 statements.append((statement, parameters)))
    search(session, "kaizu", dict(params, page=1, per_page=20))
    statement, parameters = next(entry for entry in statements if "row_number" in entry[0])
    plan = [row[3] for row in session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
    reads_of_works = [line for line in plan if line.startswith(("SEARCH works ", "SCAN works"))]
    assert reads_of_works and all("rowid=?" in line for line in reads_of_works), plan
