"""What counts as text here: a string without U+0000, which PostgreSQL does not store, and without half of a
surrogate pair (JSON's "\\ud800" alone), which UTF-8 cannot encode. No text of a library's holds either, so the
gateway refuses them in every request, and the catalogue in every record an import file brings."""
import re

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def not_text(value):
    """Whether a string anywhere in ``value`` (a string, or lists and objects of them, keys too) holds U+0000 or a
    lone surrogate (checked without recursion)."""
    pending = [value]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if "\x00" in value or _LONE_SURROGATE.search(value):
                return True
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False
