"""Library-card rules: card numbers with a check digit, how a phone number and a name's reading are looked
up, card validity, who may borrow, who may see whom, how failed log-ins are throttled, which PINs are too easy
to guess, and the rules on staff accounts."""
import math
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from services.patrons import errors
from shiori.errors import InvalidInput
from shiori.roles import ADMIN, LIBRARIAN, PATRON, SCHOOL_LIBRARIAN, WHOLE_TENANT

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


# Katakana ァ..ヶ and the iteration marks ヽ ヾ, as the hiragana 0x60 code points below them.
_KATAKANA_AS_HIRAGANA = str.maketrans({chr(code): chr(code - 0x60)
                                       for code in (*range(0x30a1, 0x30f7), 0x30fd, 0x30fe)})
# What separates family and given name in a reading, after NFKC (which makes the ideographic space a space and
# the half-width ･ a ・).
_READING_SEPARATORS = re.compile(r"[\s\u30fb]+")


def reading_key(name_kana):
    """A name's reading as the desk's look-up compares it, so that the desk need not type it as it was
    registered: NFKC (ｼｹﾝ = シケン), katakana as hiragana (シケン = しけん), and no spaces or middle dots
    (シケン・ハナコ = シケン ハナコ = シケンハナコ). Small kana and ー stay: they are part of the sound."""
    folded = unicodedata.normalize("NFKC", name_kana).translate(_KATAKANA_AS_HIRAGANA)
    return _READING_SEPARATORS.sub("", folded)


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
    """After ``max_failures`` failed log-ins within ``window``, the key is refused for ``block``; each time
    the limit is reached again after a block, the next block lasts twice as long, up to ``max_block``. A key
    left alone for ``max_block`` after its last block starts again from the first block.

    ``failures`` counts every failure since the key's first block series began, so its blocks so far are
    ``failures // max_failures``; ``first_failed_at`` is when the current round of tries began."""

    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    block: timedelta = timedelta(minutes=15)
    max_block: timedelta = timedelta(days=1)

    def retry_after(self, blocked_until, now: datetime):
        """Seconds until a blocked key may try again, or 0 when it may try now."""
        if blocked_until is None or blocked_until <= now:
            return 0
        return math.ceil((blocked_until - now).total_seconds())

    def block_for(self, blocks_before):
        """How long the block after ``blocks_before`` earlier ones lasts."""
        return min(self.block * 2 ** min(blocks_before, 32), self.max_block)

    def after_failure(self, failures, first_failed_at, now: datetime, blocked_until=None):
        """The (failures, first_failed_at, blocked_until) to keep after one more failure (of a key that is
        not blocked now)."""
        in_round = failures % self.max_failures
        if failures and not in_round:  # a block has ended: a new round of tries, or a fresh start
            if blocked_until is None or now - blocked_until > self.max_block:
                failures = 0
            first_failed_at = now
        elif first_failed_at is None or now - first_failed_at > self.window:
            failures, first_failed_at = failures - in_round, now  # this round's failures are too old to count
        failures += 1
        if failures % self.max_failures == 0:
            blocked_until = now + self.block_for(failures // self.max_failures - 1)
        return failures, first_failed_at, blocked_until

    def refunded(self, failures, blocked_until, now: datetime):
        """The (failures, blocked_until) to keep when an attempt counted in advance succeeded: one failure
        fewer, and no block if that attempt alone reached the limit."""
        if failures and failures % self.max_failures == 0 and self.retry_after(blocked_until, now):
            blocked_until = None
        return max(failures - 1, 0), blocked_until


# An address is shared by a whole library behind one router: it gets this many times an account's tries.
ADDRESS_FACTOR = 10


def login_throttle(max_failures, block: timedelta, shared_address=False):
    """The throttle of an account or card (``max_failures`` tries), or of a client address (``shared_address``)."""
    return Throttle(max_failures * (ADDRESS_FACTOR if shared_address else 1), block, block)


# The PINs tried first by anyone holding a found card: besides same digits and runs (0000, 1234, 9876).
WELL_KNOWN_PINS = frozenset({"1212", "1122", "1313", "1010", "0101", "2580", "0852", "1004", "2000", "2001",
                             "6969", "5683", "1192", "4649"})


def pin_refusal(pin, field="pin"):
    """Why this PIN may not be chosen (a domain error to raise, naming the input ``field`` it came in), or
    None when it may."""
    steps = {int(after) - int(before) for before, after in zip(pin, pin[1:])}
    if pin in WELL_KNOWN_PINS or steps in ({0}, {1}, {-1}):
        return errors.PinTooCommon(details={field: [errors.PinTooCommon.field_message]})
    return None


@dataclass(frozen=True)
class AdminRemains:
    """A tenant keeps an admin: the account of its last one can neither be deleted (``role_after`` None) nor
    given another role. ``admins``: how many admin accounts the tenant has, this one among them."""

    role: str
    admins: int
    role_after: str | None = None

    def refusal(self):
        if self.role != ADMIN or self.admins != 1 or self.role_after == ADMIN:
            return None
        if self.role_after is None:
            return errors.LastAdmin()
        return errors.LastAdmin("the tenant's last admin account must stay an admin", {"role": self.role_after})


@dataclass(frozen=True)
class WorksAtListedLibraries:
    """Librarians work at listed libraries of the tenant (an admin at all of them, listed or not); a school
    librarian at exactly one school library. ``known``: the tenant's libraries, code to kind."""

    role: str
    libraries: list
    known: dict

    def refusal(self):
        unknown = [code for code in self.libraries if code not in self.known]
        if unknown:
            return InvalidInput(details={"libraries": [f"no library has the code {code}" for code in unknown]})
        if self.role != ADMIN and not self.libraries:
            return InvalidInput(details={"libraries": ["a librarian works at one library at least"]})
        if self.role == SCHOOL_LIBRARIAN and (len(self.libraries) != 1 or self.known[self.libraries[0]] != "school"):
            return InvalidInput(details={"libraries": ["a school librarian works at exactly one school library"]})
        return None
