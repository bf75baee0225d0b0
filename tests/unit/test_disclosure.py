"""Disclosure control of statistics answers and who may work at a library: pure rules, no broker."""
from datetime import date

import pytest

from services.statistics.rules import is_exact, protect, rounded
from shiori.roles import may_serve_at


@pytest.mark.parametrize("group_by, since, until, exact", [
    (["library"], date(2025, 11, 1), date(2025, 11, 30), True),
    ([], date(2025, 1, 1), date(2025, 12, 31), True),
    (["library"], date(2024, 2, 1), date(2024, 2, 29), True),
    (["library"], date(2025, 11, 2), date(2025, 11, 30), False),
    (["library"], date(2025, 11, 1), date(2025, 11, 29), False),
    (["day", "library"], date(2025, 11, 1), date(2025, 11, 30), False),
    (["library", "ndc_class"], date(2025, 11, 1), date(2025, 11, 30), False),
])
def test_only_library_by_whole_months_is_exact(group_by, since, until, exact):
    assert is_exact(group_by, since, until) is exact


def test_counts_round_to_the_nearest_multiple_halves_up():
    assert [rounded(count, 5) for count in (5, 7, 8, 12, 13)] == [5, 5, 10, 10, 15]
    assert [rounded(count, 1) for count in (1, 2, 3)] == [1, 2, 3]


def test_small_cells_fold_into_one_row_per_library_and_measure_naming_nothing_else():
    rows = [{"library": library, "ndc_class": ndc_class, "measure": measure, "count": count}
            for library, ndc_class, measure, count in (("main", "9", "checkouts", 8), ("main", "4", "checkouts", 1),
                                                       ("main", "2", "checkouts", 3), ("east", "4", "checkouts", 2),
                                                       ("main", "4", "renewals", 6))]
    assert protect(rows, ["library", "ndc_class"], 5) == [
        {"library": "main", "ndc_class": "9", "measure": "checkouts", "count": 10, "suppressed": False},
        {"library": "main", "ndc_class": "4", "measure": "renewals", "count": 5, "suppressed": False},
        {"library": "main", "ndc_class": None, "measure": "checkouts", "count": None, "suppressed": True},
        {"library": "east", "ndc_class": None, "measure": "checkouts", "count": None, "suppressed": True},
    ]


def test_a_minimum_of_one_shows_every_count_as_it_is():
    rows = [{"day": "2025-11-03", "measure": "checkouts", "count": 1}]
    assert protect(rows, ["day"], 1) == [dict(rows[0], suppressed=False)]


def test_staff_work_at_their_own_libraries_and_admins_everywhere():
    assert may_serve_at("admin", [], "main") and may_serve_at("operator", [], "main")
    assert may_serve_at("librarian", ["east"], "east") and not may_serve_at("librarian", ["east"], "main")
    assert not may_serve_at("patron", ["main"], "main") and not may_serve_at("public", [], "main")
    assert not may_serve_at("school_librarian", ["s1"], None)
