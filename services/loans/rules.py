"""Circulation rules that need neither broker nor database: which loan policy governs a loan, library
calendars and due dates, lateness, and the named rules a check-out, a renewal, a hold and a check-in are
refused by.

A named rule (in the manner of pgorecki/python-ddd's ``BidCanBeRetracted``) answers, from a snapshot of plain
values the service gathered before asking it, the domain error it refuses with, or None. ``check`` asks an
entrypoint's rules in their order, so that the same error wins when several apply."""
from dataclasses import dataclass
from datetime import date, timedelta

from services.catalog.errors import WorkNotFound
from services.loans import errors

# A calendar closed for longer than this is an error in the calendar, not a due date a year away.
LONGEST_CLOSURE_DAYS = 366


@dataclass(frozen=True)
class Policy:
    loan_days: int
    max_items: int
    max_items_of_type: int | None
    renewals: int
    max_holds: int


def governing_policy(policies, category, item_type, library, default):
    """The most specific of ``policies`` (rows with patron_category, item_type, library, any of them None for
    "any") that matches, else ``default``. More keys set is more specific; between rules with as many keys,
    the library counts before the item type, the item type before the category."""
    matching = [policy for policy in policies
                if policy.patron_category in (None, category) and policy.item_type in (None, item_type)
                and policy.library in (None, library)]
    if not matching:
        return default

    def specificity(policy):
        keys = (policy.library is not None, policy.item_type is not None, policy.patron_category is not None)
        return sum(keys), keys
    chosen = max(matching, key=specificity)
    return Policy(chosen.loan_days, chosen.max_items, chosen.max_items_of_type, chosen.renewals, chosen.max_holds)


class Calendar:
    """When a library is open: every day but its weekly closing days and its closed periods."""

    def __init__(self, closed_weekdays=(), closures=()):
        self.closed_weekdays = frozenset(closed_weekdays)
        self.closures = [(date.fromisoformat(str(closure["first"])), date.fromisoformat(str(closure["last"])))
                         for closure in closures]

    def is_open(self, day):
        return day.weekday() not in self.closed_weekdays and not any(first <= day <= last
                                                                     for first, last in self.closures)

    def next_open(self, day):
        """``day`` itself when the library is open then, else the first day after it that it is."""
        for offset in range(LONGEST_CLOSURE_DAYS + 1):
            candidate = day + timedelta(days=offset)
            if self.is_open(candidate):
                return candidate
        raise errors.LibraryClosed(f"この図書館は{day.isoformat()}から1年以上開館日がありません",
                                   {"from": day.isoformat()})


def due_date(start, loan_days, calendar):
    """``loan_days`` after ``start``, moved to the next day the lending library is open."""
    return calendar.next_open(start + timedelta(days=loan_days))


def renewed_due_date(loan, policy, renew_from, today, calendar):
    """The new due date of a renewal, counted from today or from the current due date; never earlier than
    the current one."""
    start = today if renew_from == "today" else loan.due_date
    return max(loan.due_date, due_date(start, policy.loan_days, calendar))


def days_late(due, returned_on, checkin_calendar):
    """How late a return is. Days the check-in library was closed right after the due date do not count:
    returning on its first open day is on time."""
    return max(0, (returned_on - checkin_calendar.next_open(due)).days)


# --- the snapshots the named rules read -------------------------------------------------------------

@dataclass(frozen=True)
class Checkout:
    """What a check-out is decided on: the copy, the desk's day, and the borrower's loans and holds."""

    item_barcode: str
    item_type: str
    library: str
    today: date
    calendar: Calendar  # the lending library's
    borrower_refs: frozenset  # the refs of the borrower's loans and holds
    overdue_items: int
    suspended_until: date | None
    on_loan: dict  # item type -> copies the borrower has on loan
    policy: Policy
    copy_held_by: str | None  # the borrower ref of the hold the copy is kept or travelling for


@dataclass(frozen=True)
class Renewal:
    """What a renewal is decided on: the loan, its borrower's suspension, and the tenant's rules."""

    today: date
    suspended_until: date | None
    due_date: date
    renewals: int
    policy: Policy
    grace_days: int
    holds_waiting: int  # on the loan's work


@dataclass(frozen=True)
class HoldRequest:
    """What a hold (or a series hold) is decided on: the pickup library, the works, and the patron's loans and
    holds."""

    pickup_library: str
    pickup_kind: str
    work_ids: tuple
    catalogued_work_ids: frozenset  # those of work_ids the catalogue knows
    borrowed_work_ids: frozenset  # those of work_ids the patron has on loan
    holds: int  # the patron's holds already
    policy: Policy


@dataclass(frozen=True)
class Checkin:
    """A copy checked in that is not on loan (a returned copy is always taken in): where else it may be due."""

    item_barcode: str
    in_transit: bool
    held: bool  # kept or travelling for a hold
    wanted: bool  # its work has a hold waiting


# --- the named rules ----------------------------------------------------------------------------------

class Rule:
    """A named circulation rule: ``refusal(snapshot)`` is the domain error it refuses with, or None."""

    def refusal(self, snapshot):
        raise NotImplementedError


def check(rules, snapshot):
    """Raise the refusal of the first of ``rules`` that ``snapshot`` breaks."""
    for rule in rules:
        refusal = rule.refusal(snapshot)
        if refusal is not None:
            raise refusal


class ItemLendable(Rule):
    """Reference copies are for use in the library only."""

    def refusal(self, checkout):
        if checkout.item_type == "reference":
            return errors.ItemNotForLoan(details={"item_barcode": checkout.item_barcode})
        return None


class LibraryOpen(Rule):
    """A desk lends on the days its library is open."""

    def refusal(self, checkout):
        if not checkout.calendar.is_open(checkout.today):
            return errors.LibraryClosed(details={"library": checkout.library, "date": checkout.today.isoformat()})
        return None


class NotSuspended(Rule):
    """No borrowing or renewing while a suspension after a late return runs (to its last day, inclusive)."""

    def refusal(self, snapshot):
        until = snapshot.suspended_until
        if until is not None and until >= snapshot.today:
            return errors.BorrowingSuspended(f"{until.isoformat()}まで貸出停止中です", {"until": until.isoformat()})
        return None


class BorrowerInGoodStanding(Rule):
    """A borrower with overdue copies, or suspended, borrows nothing more."""

    def refusal(self, checkout):
        if checkout.overdue_items:
            return errors.OverdueItems(details={"overdue_items": checkout.overdue_items})
        return NotSuspended().refusal(checkout)


class WithinLoanLimits(Rule):
    """The governing policy's limits: copies on loan at once, and copies of the item's type."""

    def refusal(self, checkout):
        policy, on_loan = checkout.policy, sum(checkout.on_loan.values())
        if on_loan >= policy.max_items:
            return errors.LoanLimitReached(f"貸出は{policy.max_items}点までです",
                                           {"max_items": policy.max_items, "on_loan": on_loan})
        of_type = checkout.on_loan.get(checkout.item_type, 0)
        if policy.max_items_of_type is not None and of_type >= policy.max_items_of_type:
            return errors.LoanLimitReached(
                f"この種類の資料の貸出は{policy.max_items_of_type}点までです",
                {"item_type": checkout.item_type, "max_items_of_type": policy.max_items_of_type, "on_loan": of_type})
        return None


class NotHeldForAnotherPatron(Rule):
    """A copy kept or travelling for a hold is lent to that hold's patron only."""

    def refusal(self, checkout):
        if checkout.copy_held_by is not None and checkout.copy_held_by not in checkout.borrower_refs:
            return errors.ItemHeldForAnotherPatron(details={"item_barcode": checkout.item_barcode})
        return None


class RenewalAllowed(Rule):
    """The loan itself: renewed no more often than its policy allows, and not once overdue beyond the grace
    days."""

    def refusal(self, renewal):
        if renewal.renewals >= renewal.policy.renewals:
            return errors.RenewalLimitReached(f"延長は{renewal.policy.renewals}回までです",
                                              {"renewals": renewal.renewals, "allowed": renewal.policy.renewals})
        if renewal.today > renewal.due_date + timedelta(days=renewal.grace_days):
            return errors.LoanOverdue("返却期限を過ぎているため延長できません",
                                      {"due_date": renewal.due_date.isoformat(), "grace_days": renewal.grace_days})
        return None


class NoHoldsWaiting(Rule):
    """A copy others wait for goes back to them, not to its borrower again."""

    def refusal(self, renewal):
        if renewal.holds_waiting:
            return errors.HoldsWaiting(details={"holds": renewal.holds_waiting})
        return None


class PickupLibraryAccepted(Rule):
    """School libraries are no pickup library: their desks serve their own pupils."""

    def refusal(self, request):
        if request.pickup_kind == "school":
            return errors.WrongPickupLibrary(details={"pickup_library": request.pickup_library})
        return None


class WorksCatalogued(Rule):
    """Every work held is one the catalogue has."""

    def refusal(self, request):
        missing = [work_id for work_id in request.work_ids if work_id not in request.catalogued_work_ids]
        if missing:
            return WorkNotFound(details={"work_ids": missing})
        return None


class NotAlreadyBorrowed(Rule):
    """No hold on a work the patron has on loan."""

    def refusal(self, request):
        if request.borrowed_work_ids:
            return errors.WorkAlreadyOnLoan(details={"work_ids": sorted(request.borrowed_work_ids)})
        return None


class WithinHoldLimits(Rule):
    """The governing policy's limit on holds at once, counting those asked for."""

    def refusal(self, request):
        if request.holds + len(request.work_ids) > request.policy.max_holds:
            return errors.HoldLimitReached(f"予約は{request.policy.max_holds}件までです",
                                           {"max_holds": request.policy.max_holds, "holds": request.holds})
        return None


class ItemInCirculation(Rule):
    """A copy not on loan is checked in when it is travelling, kept for a hold (scanned again on the hold
    shelf), or wanted by a waiting one (taken from the shelf for it); else there is nothing to check in."""

    def refusal(self, checkin):
        if not (checkin.in_transit or checkin.held or checkin.wanted):
            return errors.ItemNotOnLoan(details={"item_barcode": checkin.item_barcode})
        return None


# What each entrypoint asks, in the order the refusals win.
CHECKOUT_RULES = (ItemLendable(), LibraryOpen(), BorrowerInGoodStanding(), WithinLoanLimits(),
                  NotHeldForAnotherPatron())
RENEWAL_RULES = (NotSuspended(), RenewalAllowed(), NoHoldsWaiting())
HOLD_RULES = (PickupLibraryAccepted(), WorksCatalogued(), NotAlreadyBorrowed(), WithinHoldLimits())
CHECKIN_RULES = (ItemInCirculation(),)
