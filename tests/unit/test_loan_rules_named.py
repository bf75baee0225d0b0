"""The loans service's named rules, each asked of a plain snapshot: no broker, no database."""
from dataclasses import replace
from datetime import date, timedelta

import pytest

from services.loans.rules import (
    CHECKOUT_RULES, HOLD_RULES, RENEWAL_RULES, BorrowerInGoodStanding, Calendar, Checkin, Checkout, HoldRequest,
    ItemInCirculation, ItemLendable, LibraryOpen, NoHoldsWaiting, NotAlreadyBorrowed, NotHeldForAnotherPatron,
    NotSuspended, PickupLibraryAccepted, Policy, Renewal, RenewalAllowed, WithinHoldLimits, WithinLoanLimits,
    WorksCatalogued, check,
)
from shiori.errors import DomainError

TODAY = date(2026, 12, 2)  # a Wednesday
POLICY = Policy(loan_days=14, max_items=3, max_items_of_type=None, renewals=1, max_holds=2)
CHECKOUT = Checkout(item_barcode="K1", item_type="book", library="main", today=TODAY, calendar=Calendar(),
                    borrower_refs=frozenset({"mine"}), overdue_items=0, suspended_until=None, on_loan={},
                    policy=POLICY, copy_held_by=None)
RENEWAL = Renewal(today=TODAY, suspended_until=None, due_date=TODAY + timedelta(days=3), renewals=0,
                  policy=POLICY, grace_days=0, holds_waiting=0)
HOLD = HoldRequest(pickup_library="main", pickup_kind="main", work_ids=(5,), catalogued_work_ids=frozenset({5}),
                   borrowed_work_ids=frozenset(), holds=0, policy=POLICY)


def refused(rule, snapshot):
    refusal = rule.refusal(snapshot)
    return None if refusal is None else (refusal.code, refusal.details)


def test_a_snapshot_that_breaks_no_rule_passes_them_all():
    for rules, snapshot in ((CHECKOUT_RULES, CHECKOUT), (RENEWAL_RULES, RENEWAL), (HOLD_RULES, HOLD)):
        assert [rule for rule in rules if rule.refusal(snapshot) is not None] == []
        check(rules, snapshot)


def test_reference_copies_are_not_lent():
    assert refused(ItemLendable(), CHECKOUT) is None
    assert refused(ItemLendable(), replace(CHECKOUT, item_type="reference")) == \
        ("ITEM_NOT_FOR_LOAN", {"item_barcode": "K1"})


def test_a_desk_lends_only_on_its_library_s_open_days():
    closed_on_wednesdays = replace(CHECKOUT, calendar=Calendar([2]))
    assert refused(LibraryOpen(), closed_on_wednesdays) == ("LIBRARY_CLOSED", {"library": "main", "date": "2026-12-02"})
    inventory = Calendar([], [{"first": "2026-12-01", "last": "2026-12-05", "reason": "蔵書点検"}])
    assert refused(LibraryOpen(), replace(CHECKOUT, calendar=inventory))[0] == "LIBRARY_CLOSED"
    assert refused(LibraryOpen(), replace(CHECKOUT, calendar=Calendar([0]))) is None


def test_a_borrower_with_overdue_copies_borrows_nothing_more_before_a_suspension_is_even_looked_at():
    overdue_and_suspended = replace(CHECKOUT, overdue_items=2, suspended_until=TODAY)
    assert refused(BorrowerInGoodStanding(), overdue_and_suspended) == ("OVERDUE_ITEMS", {"overdue_items": 2})


def test_a_suspension_stops_borrowing_to_its_last_day_inclusive():
    assert refused(NotSuspended(), replace(RENEWAL, suspended_until=TODAY)) == \
        ("BORROWING_SUSPENDED", {"until": "2026-12-02"})
    assert NotSuspended().refusal(replace(RENEWAL, suspended_until=TODAY)).message == "2026-12-02まで貸出停止中です"
    assert refused(NotSuspended(), replace(RENEWAL, suspended_until=TODAY - timedelta(days=1))) is None
    assert refused(BorrowerInGoodStanding(), replace(CHECKOUT, suspended_until=TODAY + timedelta(days=4))) == \
        ("BORROWING_SUSPENDED", {"until": "2026-12-06"})


def test_the_loan_limit_counts_every_type_and_the_type_limit_its_own():
    assert refused(WithinLoanLimits(), replace(CHECKOUT, on_loan={"book": 2})) is None
    full = WithinLoanLimits().refusal(replace(CHECKOUT, on_loan={"book": 2, "av": 1}))
    assert (full.code, full.details, full.message) == ("LOAN_LIMIT_REACHED", {"max_items": 3, "on_loan": 3},
                                                        "貸出は3点までです")
    two_av = replace(CHECKOUT, item_type="av", on_loan={"av": 2}, policy=replace(POLICY, max_items_of_type=2))
    of_type = WithinLoanLimits().refusal(two_av)
    assert (of_type.details, of_type.message) == ({"item_type": "av", "max_items_of_type": 2, "on_loan": 2},
                                                  "この種類の資料の貸出は2点までです")
    assert refused(WithinLoanLimits(), replace(two_av, item_type="book")) is None


def test_a_copy_kept_for_a_hold_is_lent_to_that_hold_s_patron_only():
    assert refused(NotHeldForAnotherPatron(), replace(CHECKOUT, copy_held_by="mine")) is None
    assert refused(NotHeldForAnotherPatron(), replace(CHECKOUT, copy_held_by="theirs")) == \
        ("ITEM_HELD_FOR_ANOTHER_PATRON", {"item_barcode": "K1"})


def test_the_first_rule_broken_wins():
    everything_wrong = replace(CHECKOUT, item_type="reference", calendar=Calendar([2]), overdue_items=1,
                               on_loan={"book": 3}, copy_held_by="theirs")
    with pytest.raises(DomainError) as refusal:
        check(CHECKOUT_RULES, everything_wrong)
    assert refusal.value.code == "ITEM_NOT_FOR_LOAN"
    with pytest.raises(DomainError) as refusal:
        check(CHECKOUT_RULES, replace(everything_wrong, item_type="book"))
    assert refusal.value.code == "LIBRARY_CLOSED"
    with pytest.raises(DomainError) as refusal:
        check(RENEWAL_RULES, replace(RENEWAL, suspended_until=TODAY, renewals=1, holds_waiting=1))
    assert refusal.value.code == "BORROWING_SUSPENDED"


def test_a_loan_is_renewed_as_often_as_its_policy_allows_and_not_overdue_beyond_the_grace():
    assert refused(RenewalAllowed(), replace(RENEWAL, renewals=1)) == \
        ("RENEWAL_LIMIT_REACHED", {"renewals": 1, "allowed": 1})
    late = replace(RENEWAL, due_date=TODAY - timedelta(days=2))
    assert refused(RenewalAllowed(), late) == ("LOAN_OVERDUE", {"due_date": "2026-11-30", "grace_days": 0})
    assert refused(RenewalAllowed(), replace(late, grace_days=2)) is None
    assert refused(RenewalAllowed(), replace(late, renewals=1, grace_days=2))[0] == "RENEWAL_LIMIT_REACHED"


def test_a_copy_others_wait_for_is_not_renewed():
    assert refused(NoHoldsWaiting(), replace(RENEWAL, holds_waiting=3)) == ("HOLDS_WAITING", {"holds": 3})


def test_school_libraries_are_no_pickup_library():
    assert refused(PickupLibraryAccepted(), replace(HOLD, pickup_library="s1", pickup_kind="school")) == \
        ("WRONG_PICKUP_LIBRARY", {"pickup_library": "s1"})
    assert refused(PickupLibraryAccepted(), replace(HOLD, pickup_kind="branch")) is None


def test_works_the_catalogue_does_not_have_are_named_in_the_order_asked():
    series = replace(HOLD, work_ids=(9, 5, 7), catalogued_work_ids=frozenset({5}))
    assert refused(WorksCatalogued(), series) == ("WORK_NOT_FOUND", {"work_ids": [9, 7]})


def test_no_hold_on_a_work_the_patron_has_on_loan():
    assert refused(NotAlreadyBorrowed(), replace(HOLD, work_ids=(5, 6, 7), borrowed_work_ids=frozenset({7, 5}))) == \
        ("WORK_ALREADY_ON_LOAN", {"work_ids": [5, 7]})


def test_the_hold_limit_counts_the_holds_asked_for():
    assert refused(WithinHoldLimits(), replace(HOLD, holds=1)) is None
    series = WithinHoldLimits().refusal(replace(HOLD, holds=1, work_ids=(5, 6)))
    assert (series.code, series.details, series.message) == ("HOLD_LIMIT_REACHED", {"max_holds": 2, "holds": 1},
                                                             "予約は2件までです")


@pytest.mark.parametrize("whereabouts", ["in_transit", "held", "wanted"])
def test_a_copy_not_on_loan_is_checked_in_when_circulation_expects_it(whereabouts):
    nowhere = Checkin(item_barcode="K1", in_transit=False, held=False, wanted=False)
    assert refused(ItemInCirculation(), nowhere) == ("ITEM_NOT_ON_LOAN", {"item_barcode": "K1"})
    assert refused(ItemInCirculation(), replace(nowhere, **{whereabouts: True})) is None
