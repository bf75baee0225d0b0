"""Pure domain rules: no broker, no database."""
from datetime import date
from types import SimpleNamespace

import pytest

from services.catalog.rules import availability, escape_like, normalize_isbn
from services.loans.rules import checkin_action, due_date
from services.patrons.rules import (
    borrowing_refusal, card_number_is_valid, luhn_check_digit, new_card_number, years_after,
)


def test_card_numbers_carry_a_luhn_check_digit():
    assert luhn_check_digit("7992739871") == "3"  # the textbook Luhn example
    for _ in range(200):
        card = new_card_number()
        assert len(card) == 12 and card_number_is_valid(card)


@pytest.mark.parametrize("card", ["", "12345678901", "1234567890123", "12345678901X", "１２３４５６７８９０１２",
                                  None, 123456789012])
def test_malformed_card_numbers_are_invalid(card):
    assert not card_number_is_valid(card)


def test_every_single_digit_error_is_caught():
    card = new_card_number()
    for position in range(12):
        for digit in "0123456789":
            if digit != card[position]:
                assert not card_number_is_valid(card[:position] + digit + card[position + 1:])


def test_years_after_handles_leap_days_both_ways():
    assert years_after(date(2024, 2, 29), 3) == date(2027, 2, 28)
    assert years_after(date(2026, 4, 1), 3) == date(2029, 4, 1)
    assert years_after(date(2028, 2, 29), -5) == date(2023, 2, 28)


def test_who_may_borrow():
    today = date(2026, 11, 25)
    assert borrowing_refusal("active", date(2027, 1, 1), today) is None
    assert borrowing_refusal("active", date(2026, 11, 24), today) == "the card has expired"
    assert borrowing_refusal("suspended", date(2027, 1, 1), today) == "the card is suspended"


def test_due_date_and_where_a_returned_copy_goes():
    assert due_date(date(2026, 12, 25), 14) == date(2027, 1, 8)
    assert checkin_action("main", "main") == "shelve"
    assert checkin_action("main", "east") == "transit"


@pytest.mark.parametrize("raw, expected", [
    ("4-00-310112-X", "9784003101124"),
    ("400310112x", "9784003101124"),
    ("978-4-00-310112-4", "9784003101124"),
    ("９７８４００３１０１１２４".translate(str.maketrans("０１２３４５６７８９", "0123456789")), "9784003101124"),
    ("978 4 00 310112 4", "9784003101124"),
    ("978-4-00-310112-5", None),
    ("4-00-310112-1", None),
    ("12345", None),
    ("", None),
])
def test_isbns_are_checked_and_normalised_to_13_digits(raw, expected):
    assert normalize_isbn(raw) == expected


def test_like_patterns_take_metacharacters_literally():
    assert escape_like("100%_\\") == "100\\%\\_\\\\"


def test_availability_counts_copies_per_library():
    main = SimpleNamespace(code="main", name="本館")
    east = SimpleNamespace(code="east", name="東分館")
    items = [SimpleNamespace(library=main, on_loan=False), SimpleNamespace(library=main, on_loan=True),
             SimpleNamespace(library=east, on_loan=True)]
    assert availability(items) == [
        {"library": "east", "name": "東分館", "total": 1, "available": 0},
        {"library": "main", "name": "本館", "total": 2, "available": 1},
    ]


def test_who_sees_which_patron():
    from services.patrons.rules import Scope

    schools = {"school1"}
    assert Scope("admin").covers(1, "school1", schools)
    assert Scope("librarian", ("main",)).covers(1, "east", schools)  # every non-school library's patrons
    assert not Scope("librarian", ("main",)).covers(1, "school1", schools)
    assert Scope("school_librarian", ("school1",)).covers(1, "school1", schools)
    assert not Scope("school_librarian", ("school1",)).covers(1, "main", schools)
    assert Scope("patron", patron_id=7).covers(7, "main", schools)
    assert not Scope("patron", patron_id=7).covers(8, "main", schools)
    assert not Scope("patron", patron_id=7).covers(None, "main", schools)
    assert not Scope("public").covers(7, "main", schools) and not Scope(None).covers(7, "main", schools)


def test_failed_log_ins_are_counted_within_a_window_then_blocked():
    from datetime import datetime, timedelta, timezone

    from services.patrons.rules import Throttle

    throttle = Throttle(max_failures=3, window=timedelta(minutes=15), block=timedelta(minutes=10))
    start = datetime(2026, 11, 25, tzinfo=timezone.utc)
    state = (0, None)
    for minute in range(2):
        failures, first, blocked = throttle.after_failure(*state, start + timedelta(minutes=minute))
        state = (failures, first)
        assert blocked is None
    failures, first, blocked = throttle.after_failure(*state, start + timedelta(minutes=2))
    assert failures == 3 and blocked == start + timedelta(minutes=12)
    assert throttle.retry_after(blocked, start + timedelta(minutes=11, seconds=30)) == 30
    assert throttle.retry_after(blocked, start + timedelta(minutes=13)) == 0
    # failures older than the window start the count again
    assert throttle.after_failure(2, start, start + timedelta(minutes=20)) == (1, start + timedelta(minutes=20), None)
