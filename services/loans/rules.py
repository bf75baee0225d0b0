"""Loan rules that need neither broker nor database."""
from datetime import date, timedelta


def due_date(loaned_on: date, loan_period_days: int) -> date:
    return loaned_on + timedelta(days=loan_period_days)


def checkin_action(owning_library, desk_library):
    """What the desk does with a returned copy: shelve it here, or send it home to its own library."""
    return "shelve" if owning_library == desk_library else "transit"
