"""What the loans service accepts and returns, and the events it publishes (docs/events.md).

No event pairs a patron with a copy or work: ``loan_created`` and ``loan_returned`` carry the copy,
``patron_card_used`` the patron, so no consumer (or dead-letter queue) ever holds the link.
"""
from datetime import timedelta

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates, validates_schema

from services.loans.rules import LONGEST_CLOSURE_DAYS
from shiori.vocabulary import ITEM_TYPES, PATRON_CATEGORIES

# Whether a barcode, card or library exists is for their owners to say; here only the size is checked.
CODE = validate.Length(1, 32)
WORK_ID = validate.Range(1, 2**31 - 1)  # a key's range: a larger number is no work, and no database integer


class CheckoutSchema(Schema):
    card_number = fields.String(required=True, validate=CODE)
    item_barcode = fields.String(required=True, validate=CODE)
    library = fields.String(required=True, validate=CODE)


class CheckinSchema(Schema):
    item_barcode = fields.String(required=True, validate=CODE)
    library = fields.String(required=True, validate=CODE)


class LoanSchema(Schema):
    loan_id = fields.Integer(attribute="id")
    item_barcode = fields.String()
    item_type = fields.String()
    work_id = fields.Integer()
    library = fields.String()
    loaned_on = fields.Date()
    due_date = fields.Date()
    renewals = fields.Integer()


class HoldRequestSchema(Schema):
    """A hold on one work, or a series hold (順番予約) on several volumes in reading order. Staff name the
    patron by card number; a patron holds for themself."""

    work_id = fields.Integer(strict=True, validate=WORK_ID)
    works = fields.List(fields.Integer(strict=True, validate=WORK_ID), validate=validate.Length(2, 20))
    pickup_library = fields.String(required=True, validate=CODE)
    card_number = fields.String(validate=CODE)
    not_needed_after = fields.Date()

    @validates_schema
    def one_work_or_a_series(self, data, **_kwargs):
        if ("work_id" in data) == ("works" in data):
            raise ValidationError("give either work_id or works (a series, in reading order)", "work_id")
        if "works" in data and len(set(data["works"])) != len(data["works"]):
            raise ValidationError("a volume appears twice", "works")


class HoldSchema(Schema):
    hold_id = fields.Integer(attribute="id")
    work_id = fields.Integer()
    pickup_library = fields.String()
    status = fields.String()
    item_barcode = fields.String()
    ready_until = fields.Date()
    not_needed_after = fields.Date()
    series = fields.String()
    series_position = fields.Integer()
    placed_on = fields.Date()


class LoanPolicySchema(Schema):
    """A loan rule; a key left out (or null) matches any category, item type or library."""

    id = fields.Integer(dump_only=True)
    patron_category = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(PATRON_CATEGORIES))
    item_type = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(ITEM_TYPES))
    library = fields.String(load_default=None, allow_none=True, validate=CODE)
    loan_days = fields.Integer(required=True, strict=True, validate=validate.Range(1, 365))
    max_items = fields.Integer(required=True, strict=True, validate=validate.Range(0, 1000))
    max_items_of_type = fields.Integer(load_default=None, allow_none=True, strict=True,
                                       validate=validate.Range(0, 1000))
    renewals = fields.Integer(required=True, strict=True, validate=validate.Range(0, 20))
    max_holds = fields.Integer(required=True, strict=True, validate=validate.Range(0, 1000))


class CirculationSettingsSchema(Schema):
    renew_from = fields.String(required=True, validate=validate.OneOf(("today", "due_date")))
    renewal_grace_days = fields.Integer(required=True, strict=True, validate=validate.Range(0, 365))
    suspend_for_late_days = fields.Boolean(required=True)


class ClosureSchema(Schema):
    first = fields.Date(required=True)
    last = fields.Date(required=True)
    reason = fields.String(load_default="", validate=validate.Length(max=100))

    @validates_schema
    def check_period(self, data, **_kwargs):
        if data["last"] < data["first"]:
            raise ValidationError("ends before it begins", "last")
        if data["last"] - data["first"] > timedelta(days=LONGEST_CLOSURE_DAYS):
            raise ValidationError(f"longer than {LONGEST_CLOSURE_DAYS} days", "last")


class CalendarSchema(Schema):
    """A library's weekly closing days (0 = Monday … 6 = Sunday) and closed periods."""

    closed_weekdays = fields.List(fields.Integer(strict=True, validate=validate.Range(0, 6)), load_default=list)
    closures = fields.List(fields.Nested(ClosureSchema), load_default=list, validate=validate.Length(max=1000))

    @validates("closed_weekdays")
    def open_some_day(self, value, **_kwargs):
        if len(set(value)) > 6:
            raise ValidationError("a library must be open on at least one day of the week")


class UnplannedClosureSchema(ClosureSchema):
    """Libraries closed without notice (typhoon, earthquake, outage) for a period."""

    libraries = fields.List(fields.String(validate=CODE), required=True, validate=validate.Length(1, 100))


class PatronDeletedSchema(Schema):
    """What this service reads of the patrons service's ``patron_deleted``: the id, whatever else it comes
    to carry."""

    class Meta:
        unknown = EXCLUDE

    patron_id = fields.Integer(required=True)


class PatronsPastRetentionSchema(Schema):
    """What this service reads of the patrons service's ``patrons_past_retention``."""

    class Meta:
        unknown = EXCLUDE

    patron_ids = fields.List(fields.Integer(), required=True)


class CountedSchema(Schema):
    """What statistics count by; added within version 1, so optional."""

    patron_category = fields.String()
    age_band = fields.String(allow_none=True)
    item_type = fields.String()
    ndc_class = fields.String(allow_none=True)


class LoanCreatedSchema(CountedSchema):
    loan_id = fields.Integer(required=True)
    item_barcode = fields.String(required=True)
    work_id = fields.Integer(required=True)
    library = fields.String(required=True)
    loaned_on = fields.Date(required=True)
    due_date = fields.Date(required=True)


class LoanReturnedSchema(CountedSchema):
    loan_id = fields.Integer(required=True)
    item_barcode = fields.String(required=True)
    work_id = fields.Integer(required=True)
    library = fields.String(required=True)
    returned_on = fields.Date(required=True)


class PatronCardUsedSchema(Schema):
    patron_id = fields.Integer(required=True)
    used_on = fields.Date(required=True)
    library = fields.String(required=True)


class LoanDueDateChangedSchema(CountedSchema):
    loan_id = fields.Integer(required=True)
    item_barcode = fields.String(required=True)
    library = fields.String(required=True)
    due_date = fields.Date(required=True)
    reason = fields.String(required=True, validate=validate.OneOf(("renewal", "closure")))
    changed_on = fields.Date()


class LoansDueSoonSchema(Schema):
    patron_id = fields.Integer(required=True)
    items = fields.Integer(required=True)
    due_date = fields.Date(required=True)


class LoansOverdueSchema(Schema):
    patron_id = fields.Integer(required=True)
    items = fields.Integer(required=True)
    oldest_due_date = fields.Date(required=True)
    days_overdue = fields.Integer(required=True)


class HoldPlacedSchema(Schema):
    """For statistics: which work and where, and the patron's category, never who."""

    work_id = fields.Integer(required=True)
    pickup_library = fields.String(required=True)
    patron_category = fields.String(required=True)
    age_band = fields.String(allow_none=True)
    placed_on = fields.Date(required=True)


class HoldReadySchema(Schema):
    """For the notice to the patron: which library and until when, never which work."""

    patron_id = fields.Integer(required=True)
    pickup_library = fields.String(required=True)
    ready_until = fields.Date(required=True)


class CopyStatusChangedSchema(Schema):
    item_barcode = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(("available", "on_hold_shelf", "in_transit")))
    library = fields.String(required=True)  # where it is shelved or held, or where it travels to


PUBLISHED_EVENTS = {
    "loan_created": (1, LoanCreatedSchema()),
    "loan_returned": (1, LoanReturnedSchema()),
    "patron_card_used": (1, PatronCardUsedSchema()),
    "loan_due_date_changed": (1, LoanDueDateChangedSchema()),
    "loans_due_soon": (1, LoansDueSoonSchema()),
    "loans_overdue": (1, LoansOverdueSchema()),
    "hold_placed": (1, HoldPlacedSchema()),
    "hold_ready": (1, HoldReadySchema()),
    "copy_status_changed": (1, CopyStatusChangedSchema()),
}
