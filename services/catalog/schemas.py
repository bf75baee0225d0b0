"""What the catalogue accepts and returns, and the events it publishes (docs/events.md)."""
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates

from services.catalog.rules import normalize_isbn

CODE = validate.Regexp(r"^[a-z0-9][a-z0-9-]{0,31}$", error="lower-case letters, digits and '-', at most 32")
BARCODE = validate.Regexp(r"^[A-Za-z0-9-]{1,32}$", error="letters, digits and '-', at most 32")
LIBRARY_KINDS = ("main", "branch", "school")
CONTRIBUTOR_ROLES = ("author", "translator", "editor", "illustrator", "contributor")


class TenantSchema(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(1, 200))


class LibrarySchema(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(1, 200))
    kind = fields.String(required=True, validate=validate.OneOf(LIBRARY_KINDS))


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
    title_reading = fields.String(allow_none=True, validate=validate.Length(max=1000))
    authors = fields.List(fields.Nested(ContributorSchema), load_default=list, validate=validate.Length(max=50))
    publisher = fields.String(allow_none=True, validate=validate.Length(max=500))
    published_year = fields.Integer(allow_none=True, validate=validate.Range(1, 2200))
    isbn = fields.String(allow_none=True, validate=validate.Length(max=32))
    ndc = fields.String(
        allow_none=True, validate=validate.Regexp(r"^\d{1,3}(\.\d{1,6})?$", error="an NDC class such as 913.6")
    )
    source_id = fields.String(allow_none=True, validate=validate.Length(max=100))
    availability = fields.List(fields.Nested(AvailabilitySchema), dump_only=True)

    @validates("isbn")
    def isbn_has_a_valid_check_digit(self, value, **_):
        if value is not None and normalize_isbn(value) is None:
            raise ValidationError("not a valid ISBN-10 or ISBN-13")


class ItemSchema(Schema):
    barcode = fields.String(required=True, validate=BARCODE)
    work_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    library = fields.String(required=True, validate=CODE)
    call_number = fields.String(allow_none=True, validate=validate.Length(max=100))
    shelf_location = fields.String(allow_none=True, validate=validate.Length(max=200))
    title = fields.String(dump_only=True)
    status = fields.String(dump_only=True)
    due_date = fields.Date(dump_only=True, allow_none=True)


class SearchQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE  # other query parameters are ignored, as browsers and proxies add their own

    q = fields.String(required=True, validate=validate.Length(1, 200))
    library = fields.String(validate=CODE)
    available = fields.Boolean(load_default=False)
    page = fields.Integer(load_default=1, validate=validate.Range(1, 10_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(1, 100))

    @validates("q")
    def q_is_not_blank(self, value, **_):
        if not value.strip():
            raise ValidationError("the query is empty")


class SearchHitSchema(Schema):
    id = fields.Integer()
    title = fields.String()
    title_reading = fields.String(allow_none=True)
    authors = fields.List(fields.Nested(ContributorSchema))
    publisher = fields.String(allow_none=True)
    published_year = fields.Integer(allow_none=True)
    availability = fields.List(fields.Nested(AvailabilitySchema))


class LoanStatusEventSchema(Schema):
    """What the catalogue reads from ``loan_created`` / ``loan_returned`` (tolerant: ignores other fields)."""

    class Meta:
        unknown = EXCLUDE

    item_barcode = fields.String(required=True)
    due_date = fields.Date(load_default=None)


class LibraryAddedSchema(Schema):
    library = fields.String(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True)


class WorkAddedSchema(Schema):
    work_id = fields.Integer(required=True)


class ItemAddedSchema(Schema):
    item_barcode = fields.String(required=True)
    work_id = fields.Integer(required=True)
    library = fields.String(required=True)


PUBLISHED_EVENTS = {
    "library_added": (1, LibraryAddedSchema()),
    "work_added": (1, WorkAddedSchema()),
    "item_added": (1, ItemAddedSchema()),
}
