"""What a statistics answer withholds (services/statistics/rules.py), on SQLite and PostgreSQL. Answers finer than
library × month suppress small cells and round the rest; answers by library over whole months are exact. The
counts are written straight into the statistics database, for a library of this module's own in a past month."""
import csv
import io
from datetime import date

import pytest
import requests

from support import in_database, patrons_know, unique

NOVEMBER = {"from": "2025-11-01", "to": "2025-11-30"}
# (day, patron category, age band, NDC class, check-outs): class 9 has 8, class 4 has 1, class 2 has 3 (12 in all).
CHECKOUTS = ((3, "adult", "30-39", "9", 6), (4, "adult", "30-39", "9", 2), (5, "child", "6-12", "4", 1),
             (6, "adult", "40-49", "2", 3))


def write_counts(system, library, rows):
    for day, category, band, ndc_class, count in rows:
        in_database(system, "statistics", "INSERT INTO daily_counts (tenant, day, measure, library, patron_category,"
                    " age_band, item_type, ndc_class, count) VALUES ('testcity', :day, 'checkouts', :library,"
                    " :category, :band, 'book', :ndc_class, :count)", day=date(2025, 11, day), library=library,
                    category=category, band=band, ndc_class=ndc_class, count=count)


@pytest.fixture(scope="module")
def library(system):
    code = unique("sd").lower()[:12]
    write_counts(system, code, CHECKOUTS)
    return code


def answer(staff, library, **params):
    response = staff.get(f"{staff.base_url}/api/v1/statistics", timeout=10,
                         params={**NOVEMBER, "library": library, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_library_by_whole_months_is_exact(staff, library):
    counted = answer(staff, library, group_by="library")
    assert counted["disclosure_control"] is None
    assert counted["rows"] == [{"library": library, "measure": "checkouts", "count": 12, "suppressed": False}]


@pytest.mark.privacy(3)
def test_small_cells_are_folded_into_one_withheld_row_and_the_rest_rounded(staff, library):
    by_class = answer(staff, library, group_by="library,ndc_class")
    assert by_class["disclosure_control"] == {"min_cell": 5, "rounded_to": 5}
    assert by_class["rows"] == [
        {"library": library, "ndc_class": "9", "measure": "checkouts", "count": 10, "suppressed": False},
        {"library": library, "ndc_class": None, "measure": "checkouts", "count": None, "suppressed": True}]
    # The exact month (12) less what is shown (10) is 2: neither withheld cell (1 and 3), and no row says which
    # classes they were. Without the fold, rows "class 4: suppressed" and "class 2: suppressed" would say so.
    by_day = answer(staff, library, group_by="day,library")
    assert by_day["rows"] == [
        {"day": "2025-11-03", "library": library, "measure": "checkouts", "count": 5, "suppressed": False},
        {"day": None, "library": library, "measure": "checkouts", "count": None, "suppressed": True}]
    by_reader = answer(staff, library, group_by="patron_category,age_band")
    assert [(row["patron_category"], row["age_band"], row["count"]) for row in by_reader["rows"]] == [
        ("adult", "30-39", 10), (None, None, None)]


@pytest.mark.privacy(3)
def test_a_period_short_of_whole_months_is_protected_so_overlapping_periods_do_not_subtract(staff, library):
    from_the_3rd = answer(staff, library, **{"from": "2025-11-03", "group_by": "library"})
    from_the_4th = answer(staff, library, **{"from": "2025-11-04", "group_by": "library"})
    assert from_the_3rd["disclosure_control"] == {"min_cell": 5, "rounded_to": 5}
    assert (from_the_3rd["rows"][0]["count"], from_the_4th["rows"][0]["count"]) == (10, 5)  # 12 and 6
    only_the_4th = answer(staff, library, **{"from": "2025-11-04", "to": "2025-11-04", "group_by": "library"})
    assert only_the_4th["rows"] == [{"library": library, "measure": "checkouts", "count": None, "suppressed": True}]


def test_csv_marks_a_withheld_count_x_and_the_chart_leaves_it_out(system, staff, library):
    as_csv = staff.get(f"{staff.base_url}/api/v1/statistics", timeout=10,
                       params={**NOVEMBER, "library": library, "group_by": "library,ndc_class", "format": "csv"})
    assert list(csv.DictReader(io.StringIO(as_csv.text))) == [
        {"library": library, "ndc_class": "9", "measure": "checkouts", "count": "10"},
        {"library": library, "ndc_class": "", "measure": "checkouts", "count": "x"}]
    chart = staff.get(f"{staff.base_url}/api/v1/statistics/checkouts.png", params={**NOVEMBER, "library": library},
                      timeout=30)
    assert chart.status_code == 200 and chart.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_staff_of_a_library_read_its_statistics_and_no_other_library_s(system, staff, library):
    own = unique("so").lower()[:12]
    assert staff.post(f"{system.url}/api/v1/libraries", json={"code": own, "name": "統計の分館", "kind": "branch"},
                      timeout=10).status_code == 201
    patrons_know(system, own)
    write_counts(system, own, [(10, "adult", "30-39", "9", 7)])
    username = unique("stats-clerk-")
    assert staff.post(f"{system.url}/api/v1/staff", timeout=10, json={
        "username": username, "password": "a-long-password-1", "role": "librarian", "libraries": [own]}).status_code == 201
    token = requests.post(f"{system.url}/api/v1/auth/token", json={"username": username, "password": "a-long-password-1"},
                          timeout=10).json()["access_token"]
    with requests.Session() as clerk:
        clerk.headers["Authorization"] = f"Bearer {token}"
        refused = clerk.get(f"{system.url}/api/v1/statistics", params={**NOVEMBER, "library": library}, timeout=10)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "FORBIDDEN"
        theirs = clerk.get(f"{system.url}/api/v1/statistics", params={**NOVEMBER, "group_by": "library"}, timeout=10)
        assert theirs.json()["rows"] == [{"library": own, "measure": "checkouts", "count": 7, "suppressed": False}]


def test_the_smallest_cell_shown_is_a_setting(system, staff, library):
    system.stop("statistics")
    system.environ["SHIORI_STATISTICS_MIN_CELL"] = "2"
    system.start("statistics")
    by_class = answer(staff, library, group_by="library,ndc_class")
    assert by_class["disclosure_control"] == {"min_cell": 2, "rounded_to": 2}
    assert [(row["ndc_class"], row["count"]) for row in by_class["rows"]] == [("2", 4), ("9", 8), (None, None)]
