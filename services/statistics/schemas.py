"""What the statistics service reads from events (only the counted fields: anything else, ids included,
is dropped on arrival) and the queries it answers."""
from datetime import timedelta

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate, validates_schema

from services.statistics.models import DIMENSIONS

LONGEST_PERIOD_DAYS = 3 * 366


class CountedEventSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    patron_category = fields.String(load_default=None, allow_none=True)
    age_band = fields.String(load_default=None, allow_none=True)
    item_type = fields.String(load_default=None, allow_none=True)
    ndc_class = fields.String(load_default=None, allow_none=True)


class LoanCreatedSchema(CountedEventSchema):
    library = fields.String(required=True)
    loaned_on = fields.Date(required=True)


class LoanReturnedSchema(CountedEventSchema):
    library = fields.String(required=True)
    returned_on = fields.Date(required=True)


class LoanDueDateChangedSchema(CountedEventSchema):
    library = fields.String(required=True)
    reason = fields.String(required=True)
    changed_on = fields.Date(load_default=None)


class HoldPlacedSchema(CountedEventSchema):
    pickup_library = fields.String(required=True)
    placed_on = fields.Date(required=True)


class CardRegisteredSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    home_library = fields.String(required=True)
    category = fields.String(required=True)
    age_band = fields.String(required=True)
    registered_on = fields.Date(required=True)


class StatisticsQuerySchema(Schema):
    """A period (both days included) and what to break the counts down by (``day`` and the dimensions)."""

    class Meta:
        unknown = EXCLUDE  # the gateway's own parameters (format) pass through

    since = fields.Date(required=True, data_key="from")
    until = fields.Date(required=True, data_key="to")
    library = fields.String(validate=validate.Length(1, 32))
    group_by = fields.List(fields.String(validate=validate.OneOf(("day",) + DIMENSIONS)),
                           load_default=["day", "library"])

    @pre_load
    def split_group_by(self, data, **_kwargs):
        """``group_by=day,library`` in a query string."""
        if isinstance(data.get("group_by"), str):
            return {**data, "group_by": [part for part in data["group_by"].split(",") if part]}
        return data

    @validates_schema
    def check_period(self, data, **_kwargs):
        if data["until"] < data["since"]:
            raise ValidationError("ends before it begins", "to")
        if data["until"] - data["since"] > timedelta(days=LONGEST_PERIOD_DAYS):
            raise ValidationError(f"at most {LONGEST_PERIOD_DAYS} days", "to")
