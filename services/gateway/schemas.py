"""Query parameters the gateway itself reads (the services validate their own payloads), and what it reads of
the revoked credentials the patrons service tells it of."""
from marshmallow import EXCLUDE, Schema, fields, validate

from shiori.errors import load
from shiori.vocabulary import IMPORT_FORMATS


class PageSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    page = fields.Integer(load_default=1, validate=validate.Range(1, 10_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(1, 100))


class StatisticsFormatSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv")))


class ImportQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    format = fields.String(required=True, validate=validate.OneOf(IMPORT_FORMATS))


class RevocationSchema(Schema):
    """A revoked credential: ``credentials_revoked``'s data (the tenant is the envelope's), or one of the
    patrons service's ``recent_revocations``."""

    class Meta:
        unknown = EXCLUDE

    tenant = fields.String()
    subject = fields.String(required=True)
    not_before = fields.AwareDateTime(required=True)


def page_of(items, query):
    """One page of a list a service answered whole, in the API's list shape."""
    params = load(PageSchema(), query)
    start = (params["page"] - 1) * params["per_page"]
    return {"items": items[start:start + params["per_page"]], "total": len(items), **params}
