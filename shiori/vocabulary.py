"""The words several services share: the kinds of copy, the patron categories and sexes, the form of a tenant's or
library's code, and the formats a bulk import reads. Each owner validates with them, and a service that filters
by another's words (loans' policies by item type and patron category) takes them from here, not from the owner's
code. The roles are in ``shiori.roles``."""
from marshmallow import validate

# A copy's kind, as loan rules tell them apart; a reference copy is never lent.
ITEM_TYPES = ("book", "magazine", "av", "reference")
PATRON_CATEGORIES = ("adult", "child", "student", "staff")
SEXES = ("female", "male", "other", "unspecified")  # as a patron chooses to give it
CODE = validate.Regexp(r"^[a-z0-9][a-z0-9-]{0,31}$", error="lower-case letters, digits and '-', at most 32")
IMPORT_FORMATS = ("aozora-csv", "marc21", "marcxml")
