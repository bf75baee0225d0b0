"""Library-card rules: card numbers with a check digit, card validity, who may borrow, who may see whom,
and how failed log-ins are throttled."""
import math
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from services.patrons import errors
from shiori.roles import LIBRARIAN, PATRON, SCHOOL_LIBRARIAN, WHOLE_TENANT

CARD_BODY_DIGITS = 11


def luhn_check_digit(body):
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def new_card_number(randbelow=secrets.randbelow):
    """A random 12-digit card number whose last digit is a Luhn check digit. Random rather than sequential,
    so a card number says nothing about when or how many cards were issued and cannot be guessed."""
    body = str(randbelow(9 * 10 ** (CARD_BODY_DIGITS - 1)) + 10 ** (CARD_BODY_DIGITS - 1))
    return body + luhn_check_digit(body)


def card_number_is_valid(card_number):
    return (
        isinstance(card_number, str)
        and len(card_number) == CARD_BODY_DIGITS + 1
        and card_number.isascii() and card_number.isdigit()
        and luhn_check_digit(card_number[:-1]) == card_number[-1]
    )


def phone_digits(phone):
    """A phone number as looked up: its digits only (0584-53-1111 = 0584531111)."""
    return "".join(char for char in phone if char.isdigit())


def years_after(day: date, years: int) -> date:
    """The same day ``years`` later (or earlier, when negative): a card's expiry, a retention cut-off."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


STATUSES = ("active", "suspended")
# Age bands for statistics (the national surveys count children, young adults and adults apart): a birth
# date becomes a band at the moment of an event, and only the band travels.
AGE_BANDS = ((6, "0-5"), (13, "6-12"), (16, "13-15"), (19, "16-18"), (30, "19-29"), (40, "30-39"),
             (50, "40-49"), (60, "50-59"), (70, "60-69"))


def age_band(birth_date: date, today: date):
    age = today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))
    return next((band for below, band in AGE_BANDS if age < below), "70+")


def borrowing_refusal(status, expires_on: date, today: date):
    """Why this card may not borrow today (a domain error to raise), or None when it may."""
    if status == "suspended":
        return errors.PatronSuspended(details={"status": status})
    if expires_on < today:
        return errors.CardExpired(details={"expires_on": expires_on.isoformat()})
    return None


@dataclass(frozen=True)
class Scope:
    """The patrons a caller may see and change: the whole tenant (admin, operator), every patron of a
    non-school library (librarian), the patrons of their own school (school librarian), themself (patron)."""

    role: str
    libraries: tuple = ()
    patron_id: int | None = None

    def covers(self, patron_id, home_library, school_libraries):
        if self.role in WHOLE_TENANT:
            return True
        if self.role == PATRON:
            return patron_id is not None and patron_id == self.patron_id
        if self.role == LIBRARIAN:
            return home_library not in school_libraries
        if self.role == SCHOOL_LIBRARIAN:
            return home_library in self.libraries
        return False


@dataclass(frozen=True)
class Throttle:
    """After ``max_failures`` failed log-ins within ``window``, the key is refused for ``block``."""

    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    block: timedelta = timedelta(minutes=15)

    def retry_after(self, blocked_until, now: datetime):
        """Seconds until a blocked key may try again, or 0 when it may try now."""
        if blocked_until is None or blocked_until <= now:
            return 0
        return math.ceil((blocked_until - now).total_seconds())

    def after_failure(self, failures, first_failed_at, now: datetime):
        """The (failures, first_failed_at, blocked_until) to keep after one more failure."""
        if first_failed_at is None or now - first_failed_at > self.window:
            failures, first_failed_at = 0, now
        failures += 1
        return failures, first_failed_at, (now + self.block if failures >= self.max_failures else None)
