"""Disclosure control: what an answer may show of the daily counts without telling who borrowed what.

A count of one at a library on a day, for a patron category, age band or class of book, together with a
patron's ``last_used_on``, says what that patron borrowed. So every answer finer than library × month (broken
down by day or by any dimension besides the library, or over a period that is not whole calendar months) is
protected; answers by library over whole months, the figures of the national surveys, are exact.

In a protected answer
- a cell below ``min_cell`` is *suppressed*: it is not shown on its own. The suppressed cells of each library
  and measure are folded into one row whose other keys are null and whose count is withheld (null, and
  ``suppressed: true``), so that neither its count nor which day, category, band, type or class it was is told.
  A suppressed cell listed on its own row would tell by being there ("class 9: fewer than five") what the exact
  library total minus the other rows would then complete.
- every other cell is rounded to the nearest multiple of ``min_cell``. Subtracting the shown cells from an
  exact total (library × month) leaves the folded remainder give or take the rounding, and it names no value of
  any dimension; the difference of two overlapping periods, or of two breakdowns, is not exact either.

What it leaves open: a caller who asks many overlapping periods can find where a rounded total steps and so
bound (not name) a day's count, and several breakdowns of one period taken together can narrow a withheld
cell. Closing those would take a fixed set of periods, or noise that is the same for the same cells each time
(as statistics offices' table builders add); the periods the desks ask for are free today.
"""
from datetime import timedelta

COARSEST_DIMENSION = "library"


def is_exact(group_by, since, until):
    """Whether an answer is library × month or coarser: by library at most, over whole calendar months."""
    return set(group_by) <= {COARSEST_DIMENSION} and since.day == 1 and (until + timedelta(days=1)).day == 1


def rounded(count, base):
    """``count`` to the nearest multiple of ``base``, halves up."""
    return base * ((count + base // 2) // base)


def protect(rows, group_by, min_cell):
    """The rows (dicts of the ``group_by`` keys, ``measure`` and ``count``) as a protected answer shows them:
    each with ``suppressed``, small cells folded into one suppressed row per library and measure, the other
    counts rounded to multiples of ``min_cell``."""
    base = max(1, min_cell)
    shown, folded = [], {}
    for row in rows:
        if row["count"] < base:
            kept = {key: row[key] if key in (COARSEST_DIMENSION, "measure") else None for key in row}
            folded[tuple(kept.items())] = dict(kept, count=None, suppressed=True)
        else:
            shown.append(dict(row, count=rounded(row["count"], base), suppressed=False))
    return shown + list(folded.values())
