"""What the loans service accepts and returns, and the events it publishes (docs/events.md).

No event pairs a patron with a copy or work: ``loan_created`` and ``loan_returned`` carry the copy,
``patron_card_used`` the patron, so no consumer (or dead-letter queue) ever holds the link.
"""
from marshmallow import Schema, fields, validate

# Whether a barcode, card or library exists is for their owners to say; here only the size is checked.
CODE = validate.Length(1, 32)


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
    work_id = fields.Integer()
    library = fields.String()
    loaned_on = fields.Date()
    due_date = fields.Date()


class LoanCreatedSchema(Schema):
    loan_id = fields.Integer(required=True)
    item_barcode = fields.String(required=True)
    work_id = fields.Integer(required=True)
    library = fields.String(required=True)
    loaned_on = fields.Date(required=True)
    due_date = fields.Date(required=True)


class LoanReturnedSchema(Schema):
    loan_id = fields.Integer(required=True)
    item_barcode = fields.String(required=True)
    work_id = fields.Integer(required=True)
    library = fields.String(required=True)
    returned_on = fields.Date(required=True)


class PatronCardUsedSchema(Schema):
    patron_id = fields.Integer(required=True)
    used_on = fields.Date(required=True)
    library = fields.String(required=True)


PUBLISHED_EVENTS = {
    "loan_created": (1, LoanCreatedSchema()),
    "loan_returned": (1, LoanReturnedSchema()),
    "patron_card_used": (1, PatronCardUsedSchema()),
}
