"""What the notices service reads from events and accepts as settings."""
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates

from services.notices.templates import KINDS


class PatronEventSchema(Schema):
    """An event about a patron (a reminder, a ready hold, a deletion): the id, whatever else it carries."""

    class Meta:
        unknown = EXCLUDE

    patron_id = fields.Integer(required=True)


class HoldReadySchema(PatronEventSchema):
    pickup_library = fields.String(required=True)
    ready_until = fields.Date(required=True)


class LoansDueSoonSchema(PatronEventSchema):
    items = fields.Integer(required=True)
    due_date = fields.Date(required=True)


class LoansOverdueSchema(PatronEventSchema):
    items = fields.Integer(required=True)
    oldest_due_date = fields.Date(required=True)


class TemplateSchema(Schema):
    subject = fields.String(required=True, validate=validate.Length(1, 200))
    body = fields.String(required=True, validate=validate.Length(1, 4000))


class NoticeSettingsSchema(Schema):
    include_titles = fields.Boolean(required=True)
    templates = fields.Dict(keys=fields.String(), values=fields.Nested(TemplateSchema), load_default=dict)

    @validates("templates")
    def known_kinds(self, value, **_kwargs):
        unknown = sorted(set(value) - set(KINDS))
        if unknown:
            raise ValidationError(f"unknown kinds {unknown}; kinds are {list(KINDS)}")


class NoticeSchema(Schema):
    notice_id = fields.Integer(attribute="id")
    patron_id = fields.Integer()
    kind = fields.String()
    facts = fields.Dict()
    channel = fields.String()
    attempts = fields.Integer()
    next_attempt_at = fields.AwareDateTime()
    last_error = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
