"""What the notices service decides without broker or database: how long a failed notice waits before the
next try, which library speaks to the patron, and which titles a notice is about."""


def retry_pause(attempts, first_seconds, longest_seconds):
    """Seconds before the next try after ``attempts`` failed ones: doubling from ``first_seconds``, never
    more than ``longest_seconds``."""
    return min(first_seconds * 2 ** (attempts - 1), longest_seconds)


def notice_library(facts, home_library):
    """The library a notice speaks for, and whose desk phones a patron without e-mail: the one it is about
    (a pickup), else the patron's own."""
    return facts.get("library") or home_library


def titles_about(kind, facts, current, today):
    """The titles a notice is about among the patron's ``current`` holds (for ``hold_ready``) or loans, as
    the loans service lists them: the holds ready at the pickup library, the loans due on the notice's date,
    or those overdue ``today``."""
    if kind == "hold_ready":
        return [hold["title"] for hold in current
                if hold["status"] == "ready" and hold["pickup_library"] == facts["library"]]
    if kind == "due_soon":
        return [loan["title"] for loan in current if loan["due_date"] == facts["date"]]
    return [loan["title"] for loan in current if loan["due_date"] < today.isoformat()]
