"""Library-card rules: card numbers with a check digit, card validity, who may borrow."""
import secrets
from datetime import date

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


def card_expiry(registered_on: date, validity_years: int) -> date:
    try:
        return registered_on.replace(year=registered_on.year + validity_years)
    except ValueError:  # registered on 29 February
        return registered_on.replace(year=registered_on.year + validity_years, day=28)


def borrowing_refusal(status, expires_on: date, today: date):
    """Why this card may not borrow today, or None when it may."""
    if status != "active":
        return f"the card is {status}"
    if expires_on < today:
        return "the card has expired"
    return None
