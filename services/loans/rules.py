"""Circulation rules that need neither broker nor database: which loan policy governs a loan, library
calendars and due dates, renewals and lateness."""
from dataclasses import dataclass
from datetime import date, timedelta

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


def renewal_refusal(loan, policy, grace_days, today):
    """Why the loan itself may not be renewed (holds and the patron are asked elsewhere), or None."""
    if loan.renewals >= policy.renewals:
        return errors.RenewalLimitReached(
            f"延長は{policy.renewals}回までです", {"renewals": loan.renewals, "allowed": policy.renewals})
    if today > loan.due_date + timedelta(days=grace_days):
        return errors.LoanOverdue("返却期限を過ぎているため延長できません",
                                  {"due_date": loan.due_date.isoformat(), "grace_days": grace_days})
    return None


def days_late(due, returned_on, checkin_calendar):
    """How late a return is. Days the check-in library was closed right after the due date do not count:
    returning on its first open day is on time."""
    return max(0, (returned_on - checkin_calendar.next_open(due)).days)
