"""What the catalogue accepts and returns, and the events it publishes (docs/events.md)."""
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from services.catalog.rules import normalize_isbn
from services.catalog.text import words
from shiori.text import not_text
from shiori.vocabulary import CODE, ITEM_TYPES

BARCODE = validate.Regexp(r"^[A-Za-z0-9-]{1,32}$", error="letters, digits and '-', at most 32")
LIBRARY_KINDS = ("main", "branch", "school")
CONTRIBUTOR_ROLES = ("author", "translator", "editor", "illustrator", "contributor")
# relevance: how the words match, and within a match class the more often borrowed first; newest: by year of
# publication; popular: the most often borrowed first (services/catalog/search.py).
SORTS = ("relevance", "newest", "popular")


class TenantSchema(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(1, 200))


class LibrarySchema(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(1, 200))
    kind = fields.String(required=True, validate=validate.OneOf(LIBRARY_KINDS))


class Isbn(fields.String):
    """An ISBN-10 or ISBN-13, hyphens and spaces allowed, checked, and loaded as its ISBN-13."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        isbn = normalize_isbn(text) if len(text) <= 32 else None
        if isbn is None:
            raise ValidationError("not a valid ISBN-10 or ISBN-13")
        return isbn


class ContributorSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 300))
    role = fields.String(load_default="author", validate=validate.OneOf(CONTRIBUTOR_ROLES))


class AvailabilitySchema(Schema):
    library = fields.String()
    name = fields.String()
    total = fields.Integer()
    available = fields.Integer()


class WorkSchema(Schema):
    id = fields.Integer(dump_only=True)
    title = fields.String(required=True, validate=validate.Length(1, 1000))
    subtitle = fields.String(allow_none=True, validate=validate.Length(max=1000))
    responsibility = fields.String(allow_none=True, validate=validate.Length(max=1000))
    title_reading = fields.String(allow_none=True, validate=validate.Length(max=1000))
    authors = fields.Nested(ContributorSchema, many=True, load_default=list, validate=validate.Length(max=50))
    publisher = fields.String(allow_none=True, validate=validate.Length(max=500))
    published_year = fields.Integer(allow_none=True, validate=validate.Range(1, 2200))
    isbn = Isbn(allow_none=True)
    ndc = fields.String(
        allow_none=True, validate=validate.Regexp(r"^\d{1,3}(\.\d{1,6})?$", error="an NDC class such as 913.6")
    )
    ddc = fields.String(
        allow_none=True, validate=validate.Regexp(r"^\d{1,3}(\.\d{1,10})?$", error="a DDC class such as 895.63")
    )
    subjects = fields.List(fields.String(validate=validate.Length(1, 500)), load_default=list,
                           validate=validate.Length(max=50))
    # None for a record of no source; an empty one would be taken for none, yet stored as one that repeats
    source_id = fields.String(allow_none=True, validate=validate.Length(1, 100))
    availability = fields.List(fields.Nested(AvailabilitySchema), dump_only=True)

    @validates_schema
    def holds_only_text(self, data, **_):
        # The gateway refuses such text in a request; a record read from an import file has not passed it.
        refused = sorted(name for name, value in data.items() if not_text(value))
        if refused:
            raise ValidationError({name: ["holds a NUL character or a lone surrogate, which is not text"]
                                   for name in refused})


class ItemSchema(Schema):
    barcode = fields.String(required=True, validate=BARCODE)
    work_id = fields.Integer(required=True, strict=True, validate=validate.Range(1, 2**31 - 1))  # a key's range
    library = fields.String(required=True, validate=CODE)
    call_number = fields.String(allow_none=True, validate=validate.Length(max=100))
    item_type = fields.String(load_default="book", validate=validate.OneOf(ITEM_TYPES))
    shelf_location = fields.String(allow_none=True, validate=validate.Length(max=200))
    title = fields.String(dump_only=True)
    status = fields.String(dump_only=True)
    due_date = fields.Date(dump_only=True, allow_none=True)


class SearchQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE  # other query parameters are ignored, as browsers and proxies add their own

    q = fields.String(validate=validate.Length(max=200))
    title = fields.String(validate=validate.Length(max=200))
    author = fields.String(validate=validate.Length(max=200))
    publisher = fields.String(validate=validate.Length(max=200))
    isbn = fields.String(validate=validate.Length(max=32))
    ndc = fields.String(validate=validate.Regexp(r"^\d{1,3}(\.\d{0,6})?$", error="an NDC class such as 913"))
    # Filters: they narrow what the words find, and are the links of the answer's facets.
    library = fields.String(validate=CODE)
    available = fields.Boolean(load_default=False)
    ndc_class = fields.String(validate=validate.Regexp(r"^\d$", error="an NDC main class, one digit 0-9"))
    year_from = fields.Integer(validate=validate.Range(1, 2200))
    year_to = fields.Integer(validate=validate.Range(1, 2200))
    sort = fields.String(load_default="relevance", validate=validate.OneOf(SORTS))
    facets = fields.Boolean(load_default=False)  # counted only when asked: they cost a third of a search
    page = fields.Integer(load_default=1, validate=validate.Range(1, 10_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(1, 100))

    @validates_schema
    def something_is_asked(self, data, **_):
        texts = [data.get(field, "") for field in ("q", "title", "author", "publisher", "isbn", "ndc")]
        if not any(words(text) for text in texts):
            raise ValidationError("give a query (q) or a field to search (title, author, publisher, isbn, ndc)",
                                  field_name="q")

    @validates_schema
    def years_in_order(self, data, **_):
        if data.get("year_from", 0) > data.get("year_to", 2200):
            raise ValidationError("year_from is after year_to", field_name="year_to")


class LoanStatusEventSchema(Schema):
    """What the catalogue reads from ``loan_created``, ``loan_due_date_changed`` and ``loan_returned``
    (tolerant: ignores other fields)."""

    class Meta:
        unknown = EXCLUDE

    item_barcode = fields.String(required=True)
    due_date = fields.Date(load_default=None)


class CopyStatusEventSchema(Schema):
    """What the catalogue reads from ``copy_status_changed`` (tolerant: ignores other fields)."""

    class Meta:
        unknown = EXCLUDE

    item_barcode = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(("available", "on_hold_shelf", "in_transit")))


class LibraryAddedSchema(Schema):
    library = fields.String(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True)


class WorksSavedSchema(Schema):
    added = fields.List(fields.Integer(), required=True)
    updated = fields.List(fields.Integer(), required=True)


class ItemAddedSchema(Schema):
    item_barcode = fields.String(required=True)
    item_type = fields.String()  # added after version 1 first shipped: optional, so still version 1
    work_id = fields.Integer(required=True)
    library = fields.String(required=True)


class ItemsAddedSchema(Schema):
    items = fields.List(fields.Nested(ItemAddedSchema), required=True)


PUBLISHED_EVENTS = {
    "library_added": (1, LibraryAddedSchema()),
    "works_saved": (1, WorksSavedSchema()),
    "items_added": (1, ItemsAddedSchema()),
}
