"""Anonymous statistics, counted from events by a consumer that joined without any emitter changing, read as
JSON, CSV and a PNG chart; on SQLite and PostgreSQL. The test counts at a library of its own, so that other
tests' loans do not meet its numbers."""
import csv
import io

import pytest
import requests
from sqlalchemy import create_engine, inspect, text

from support import check_in, check_out, patrons_know, register_patron, unique, wait_until, wall_today

ALLOWED_COLUMNS = {"tenant", "day", "measure", "library", "patron_category", "age_band", "item_type", "ndc_class",
                   "count", "event_id", "processed_at"}


@pytest.fixture(scope="module", autouse=True)
def exact_counts(system):
    """This module counts ones and twos: its statistics service suppresses nothing and rounds nothing
    (test_statistics_disclosure.py tests what an answer withholds)."""
    system.stop("statistics")
    system.environ["SHIORI_STATISTICS_MIN_CELL"] = "1"
    system.start("statistics")


def counts(staff, library, group_by="library"):
    today = wall_today().isoformat()
    response = staff.get(f"{staff.base_url}/api/v1/statistics", timeout=10,
                         params={"from": today, "to": today, "library": library, "group_by": group_by})
    assert response.status_code == 200, response.text
    return {tuple(row[name] for name in group_by.split(",") + ["measure"]): row["count"]
            for row in response.json()["rows"]}


@pytest.mark.privacy(3)
def test_circulation_is_counted_anonymously_per_library_category_age_type_and_class(system, staff):
    library = unique("st").lower()
    assert staff.post(f"{staff.base_url}/api/v1/libraries", timeout=10,
                      json={"code": library, "name": "試験市 統計分館", "kind": "branch"}).status_code == 201
    patrons_know(system, library)
    adult = register_patron(staff, home_library=library, birth_date="1990-04-01")
    child = register_patron(staff, home_library=library, birth_date="2016-04-01", category="child")
    title = unique("統計の本 ")
    copies = []
    for ndc, item_type in (("913.6", "book"), (None, "magazine")):
        work = staff.post(f"{staff.base_url}/api/v1/works", json={"title": title, "ndc": ndc}, timeout=10).json()
        copies.append(staff.post(f"{staff.base_url}/api/v1/items", timeout=10, json={
            "barcode": unique("S"), "work_id": work["id"], "library": library, "item_type": item_type}).json())
    loan = check_out(staff, adult["card_number"], copies[0]["barcode"], library=library).json()
    check_out(staff, child["card_number"], copies[1]["barcode"], library=library)
    assert staff.post(f"{staff.base_url}/api/v1/loans/{loan['loan_id']}/renew", timeout=10).status_code == 200
    assert check_in(staff, copies[1]["barcode"], library=library).status_code == 200
    assert staff.post(f"{staff.base_url}/api/v1/holds", timeout=10, json={
        "work_id": work["id"], "pickup_library": library, "card_number": adult["card_number"]}).status_code == 201

    expected = {(library, "registrations"): 2, (library, "checkouts"): 2, (library, "renewals"): 1,
                (library, "checkins"): 1, (library, "holds_placed"): 1}
    wait_until(lambda: counts(staff, library) == expected, message="the counts")
    assert counts(staff, library, "age_band,patron_category") == {
        ("30-39", "adult", "registrations"): 1, ("6-12", "child", "registrations"): 1,
        ("30-39", "adult", "checkouts"): 1, ("6-12", "child", "checkouts"): 1, ("30-39", "adult", "renewals"): 1,
        ("6-12", "child", "checkins"): 1, ("30-39", "adult", "holds_placed"): 1}
    by_class = counts(staff, library, "item_type,ndc_class")
    assert (by_class[("book", "9", "checkouts")], by_class[("magazine", "", "checkouts")]) == (1, 1)

    today = wall_today().isoformat()
    as_csv = staff.get(f"{staff.base_url}/api/v1/statistics", timeout=10,
                       params={"from": today, "to": today, "library": library, "format": "csv"})
    assert as_csv.headers["Content-Type"].startswith("text/csv")
    assert {"day": today, "library": library, "measure": "checkouts", "count": "2"} in \
        list(csv.DictReader(io.StringIO(as_csv.text)))
    chart = staff.get(f"{staff.base_url}/api/v1/statistics/checkouts.png", params={"from": today, "to": today},
                      timeout=30)
    assert chart.headers["Content-Type"] == "image/png" and chart.content.startswith(b"\x89PNG\r\n\x1a\n")

    # What reached the statistics database: counts by coarse dimensions, never a patron, card or title.
    engine = create_engine(system.database_urls["statistics"])
    with engine.connect() as connection:
        columns = {column["name"] for table in inspect(connection).get_table_names()
                   for column in inspect(connection).get_columns(table)}
        values = {str(value) for row in connection.execute(text("SELECT * FROM daily_counts")) for value in row}
    engine.dispose()
    assert columns <= ALLOWED_COLUMNS
    assert not values & {adult["card_number"], child["card_number"], title, copies[0]["barcode"]}


def test_statistics_queries_are_checked_and_staff_only(system, staff):
    for params in ({"from": "2026-11-25", "to": "2026-11-01"}, {"to": "2026-11-25"},
                   {"from": "2026-11-01", "to": "2026-11-25", "group_by": "name"},
                   {"from": "2026-11-01", "to": "2026-11-25", "format": "xml"},
                   {"from": "2020-01-01", "to": "2026-11-25"}, {"from": "yesterday", "to": "2026-11-25"}):
        response = staff.get(f"{staff.base_url}/api/v1/statistics", params=params, timeout=10)
        assert response.status_code == 400, (params, response.text)
    assert requests.get(f"{system.url}/api/v1/statistics", params={"from": "2026-11-01", "to": "2026-11-25"},
                        timeout=10).status_code == 401
