"""Pure domain rules: no broker, no database."""
from datetime import date
from types import SimpleNamespace

import pytest
from marshmallow import ValidationError

from services.catalog.rules import availability, escape_like, normalize_isbn
from services.catalog.schemas import WorkSchema
from services.loans.rules import (
    Calendar, Policy, Renewal, RenewalAllowed, days_late, due_date, governing_policy, renewed_due_date,
)
from services.patrons.rules import (
    age_band, borrowing_refusal, card_number_is_valid, luhn_check_digit, new_card_number, years_after,
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
    assert borrowing_refusal("active", date(2026, 11, 24), today).code == "CARD_EXPIRED"
    assert borrowing_refusal("suspended", date(2027, 1, 1), today).code == "PATRON_SUSPENDED"


# 海津市: closed on Mondays (0), New Year holidays, and a 蔵書点検 week in February.
KAIZU_MAIN = Calendar([0], [{"first": "2026-12-28", "last": "2027-01-04", "reason": "年末年始"},
                            {"first": "2027-02-15", "last": "2027-02-19", "reason": "蔵書点検"}])


@pytest.mark.parametrize("start, days, expected", [
    (date(2026, 11, 25), 14, date(2026, 12, 9)),    # a Wednesday: open
    (date(2026, 11, 16), 14, date(2026, 12, 1)),    # would be Monday 30 Nov: Tuesday instead
    (date(2026, 12, 14), 14, date(2027, 1, 5)),     # would be 28 Dec: after the New Year closure (and its Monday)
    (date(2027, 2, 1), 14, date(2027, 2, 20)),      # would be in the 蔵書点検 week
])
def test_a_due_date_on_a_closed_day_moves_to_the_next_open_day(start, days, expected):
    assert due_date(start, days, KAIZU_MAIN) == expected
    assert due_date(start, days, Calendar()) == date.fromordinal(start.toordinal() + days)


def test_a_library_never_open_is_an_error_not_a_date():
    with pytest.raises(Exception) as refused:
        Calendar([], [{"first": "2027-01-01", "last": "2028-12-31"}]).next_open(date(2027, 1, 1))
    assert refused.value.code == "LIBRARY_CLOSED"


def test_the_most_specific_loan_policy_wins():
    def rule(category=None, item_type=None, library=None, loan_days=14):
        return SimpleNamespace(patron_category=category, item_type=item_type, library=library, loan_days=loan_days,
                               max_items=10, max_items_of_type=None, renewals=1, max_holds=10)
    default = Policy(14, 10, None, 1, 10)
    rules = [rule(loan_days=15), rule(item_type="av", loan_days=7), rule("child", "av", loan_days=10),
             rule(library="hirata", loan_days=21), rule("child", library="hirata", loan_days=28)]
    assert governing_policy([], "adult", "book", "main", default) == default
    assert governing_policy(rules, "adult", "book", "main", default).loan_days == 15
    assert governing_policy(rules, "adult", "av", "main", default).loan_days == 7
    assert governing_policy(rules, "child", "av", "main", default).loan_days == 10
    assert governing_policy(rules, "adult", "book", "hirata", default).loan_days == 21
    assert governing_policy(rules, "adult", "av", "hirata", default).loan_days == 21  # library before item type
    assert governing_policy(rules, "child", "av", "hirata", default).loan_days == 28  # two keys before one


def renewal_refusal(loan, policy, grace_days, today):
    """The renewal rule asked of the loan alone: no suspension, no holds waiting."""
    return RenewalAllowed().refusal(Renewal(today=today, suspended_until=None, due_date=loan.due_date,
                                            renewals=loan.renewals, policy=policy, grace_days=grace_days,
                                            holds_waiting=0))


def test_renewals_count_from_today_or_from_the_due_date_and_are_refused_with_the_reason():
    policy = Policy(14, 10, None, 2, 10)
    loan = SimpleNamespace(due_date=date(2026, 12, 9), renewals=0)
    today = date(2026, 12, 3)
    assert renewed_due_date(loan, policy, "today", today, Calendar()) == date(2026, 12, 17)
    assert renewed_due_date(loan, policy, "due_date", today, Calendar()) == date(2026, 12, 23)
    assert renewed_due_date(loan, policy, "today", today, KAIZU_MAIN) == date(2026, 12, 17)
    early = SimpleNamespace(due_date=date(2026, 12, 30), renewals=0)  # moved by a closure: never shortened
    assert renewed_due_date(early, policy, "today", today, Calendar()) == date(2026, 12, 30)
    assert renewal_refusal(loan, policy, 0, today) is None
    assert renewal_refusal(SimpleNamespace(due_date=loan.due_date, renewals=2), policy, 0, today).code == \
        "RENEWAL_LIMIT_REACHED"
    assert renewal_refusal(loan, policy, 0, date(2026, 12, 10)).code == "LOAN_OVERDUE"
    assert renewal_refusal(loan, policy, 3, date(2026, 12, 12)) is None  # within the grace
    assert renewal_refusal(loan, policy, 3, date(2026, 12, 13)).code == "LOAN_OVERDUE"


def test_days_the_check_in_library_was_closed_after_the_due_date_are_not_late():
    assert days_late(date(2026, 12, 9), date(2026, 12, 9), KAIZU_MAIN) == 0
    assert days_late(date(2026, 12, 9), date(2026, 12, 12), KAIZU_MAIN) == 3
    assert days_late(date(2026, 12, 28), date(2027, 1, 5), KAIZU_MAIN) == 0  # closed from the due day to 4 Jan
    assert days_late(date(2026, 12, 28), date(2027, 1, 6), KAIZU_MAIN) == 1
    assert days_late(date(2026, 12, 28), date(2027, 1, 5), Calendar()) == 8


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


@pytest.mark.parametrize("raw, loaded", [("4-00-310112-X", "9784003101124"), (None, None)])
def test_a_work_s_isbn_is_loaded_as_its_isbn_13(raw, loaded):
    assert WorkSchema().load({"title": "こころ", "isbn": raw})["isbn"] == loaded


@pytest.mark.parametrize("raw, message", [
    ("978-4-00-310112-5", "not a valid ISBN-10 or ISBN-13"), ("", "not a valid ISBN-10 or ISBN-13"),
    ("9" * 33, "not a valid ISBN-10 or ISBN-13"), (9784003101124, "Not a valid string."),
])
def test_a_work_s_bad_isbn_is_refused(raw, message):
    with pytest.raises(ValidationError) as refused:
        WorkSchema().load({"title": "こころ", "isbn": raw})
    assert refused.value.messages == {"isbn": [message]}


def test_like_patterns_take_metacharacters_literally():
    assert escape_like("100%_\\") == "100\\%\\_\\\\"


def test_availability_counts_copies_per_library():
    main = SimpleNamespace(code="main", name="本館")
    east = SimpleNamespace(code="east", name="東分館")
    def copy(library, on_loan=False, shelf_status="available"):
        return SimpleNamespace(library=library, on_loan=on_loan, shelf_status=shelf_status)
    items = [copy(main), copy(main, on_loan=True), copy(main, shelf_status="on_hold_shelf"),
             copy(east, on_loan=True), copy(east, shelf_status="in_transit")]
    assert availability(items) == [
        {"library": "east", "name": "東分館", "total": 2, "available": 0},
        {"library": "main", "name": "本館", "total": 3, "available": 1},
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


@pytest.mark.parametrize("birth_date, band", [
    (date(2020, 11, 26), "0-5"), (date(2020, 11, 25), "6-12"), (date(2013, 11, 26), "6-12"),
    (date(2010, 4, 2), "16-18"), (date(1996, 11, 25), "30-39"), (date(1956, 11, 25), "70+"),
])
def test_statistics_see_an_age_band_never_a_birth_date(birth_date, band):
    assert age_band(birth_date, date(2026, 11, 25)) == band
