"""Catalogue rules that need neither broker nor database."""
import re

_ISBN_SEPARATORS = re.compile(r"[\s\-‐-―]")


def normalize_isbn(raw):
    """ISBN-10 or ISBN-13 (hyphens and spaces allowed) as a checked ISBN-13, or None if it is not one."""
    digits = _ISBN_SEPARATORS.sub("", raw or "").upper()
    if re.fullmatch(r"\d{9}[\dX]", digits):
        if _isbn10_check(digits[:9]) != digits[9]:
            return None
        digits = "978" + digits[:9]
        return digits + _isbn13_check(digits)
    if re.fullmatch(r"97[89]\d{10}", digits) and _isbn13_check(digits[:12]) == digits[12]:
        return digits
    return None


def _isbn10_check(first9):
    remainder = sum((10 - i) * int(d) for i, d in enumerate(first9)) % 11
    check = (11 - remainder) % 11
    return "X" if check == 10 else str(check)


def _isbn13_check(first12):
    total = sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(first12))
    return str((10 - total % 10) % 10)


def escape_like(text):
    """``text`` for a LIKE pattern (with ESCAPE '\\'), its % _ and \\ taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def ndc_class(ndc):
    """The NDC main class (類), its first digit, for statistics; None without a classification."""
    return ndc[0] if ndc and ndc[0].isdigit() else None


def is_available(item):
    """On the shelf for anyone to take now: neither lent nor kept for a hold nor travelling."""
    return not item.on_loan and item.shelf_status == "available"


def availability(items):
    """Per library: how many copies it holds and how many are on the shelf now."""
    per_library = {}
    for item in items:
        entry = per_library.setdefault(
            item.library.code, {"library": item.library.code, "name": item.library.name, "total": 0, "available": 0}
        )
        entry["total"] += 1
        entry["available"] += 1 if is_available(item) else 0
    return sorted(per_library.values(), key=lambda entry: entry["library"])
