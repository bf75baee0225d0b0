"""What the patrons service accepts and returns, and the events it publishes (docs/events.md)."""
from datetime import date, timezone

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates, validates_schema

from services.patrons.rules import STATUSES, card_number_is_valid
from shiori.roles import STAFF_ROLES
from shiori.vocabulary import CODE as TENANT_CODE
from shiori.vocabulary import PATRON_CATEGORIES as CATEGORIES

SEXES = ("female", "male", "other", "unspecified")
# Hiragana, katakana (full and half width), prolonged sound mark, middle dot and spaces.
KANA = validate.Regexp(r"^[\u3041-\u309f\u30a0-\u30ff\uff65-\uff9f\u3000 ・ー]+$", error="kana only")
PHONE = validate.Regexp(r"^\+?[0-9][0-9-]{5,18}[0-9]$", error="a phone number such as 0584-53-1111")
PIN_DIGITS = validate.Regexp(r"^[0-9]{4,8}$", error="4 to 8 digits")


class CardNumber(fields.String):
    """A library-card number: 12 digits whose last one is a Luhn check digit."""

    def _deserialize(self, value, attr, data, **kwargs):
        card_number = super()._deserialize(value, attr, data, **kwargs).strip()
        if not card_number_is_valid(card_number):
            raise ValidationError("not a valid card number (12 digits with a check digit)")
        return card_number


class PatronSchema(Schema):
    # Personal fields (API.md): the only personal data the system keeps about a resident.
    name = fields.String(required=True, validate=validate.Length(1, 200))
    name_kana = fields.String(required=True, validate=[validate.Length(1, 200), KANA])
    birth_date = fields.Date(required=True)
    sex = fields.String(load_default="unspecified", validate=validate.OneOf(SEXES))
    address = fields.String(required=True, validate=validate.Length(1, 500))
    alt_address = fields.String(allow_none=True, validate=validate.Length(max=500))
    phone = fields.String(required=True, validate=PHONE)
    email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    home_library = fields.String(required=True, validate=validate.Length(1, 32))
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    # For the patron's own log-in; stored only as an Argon2 hash, never shown.
    pin = fields.String(load_only=True, allow_none=True, validate=PIN_DIGITS)
    # Kept by the system itself.
    id = fields.Integer(dump_only=True)
    card_number = fields.String(dump_only=True)
    registered_on = fields.Date(dump_only=True)
    expires_on = fields.Date(dump_only=True)
    last_used_on = fields.Date(dump_only=True, allow_none=True)
    total_uses = fields.Integer(dump_only=True)
    status = fields.String(dump_only=True)

    @validates("birth_date")
    def born_in_a_plausible_year(self, value, **_):
        if not date(1900, 1, 1) <= value <= date.today():
            raise ValidationError("must lie between 1900-01-01 and today")


# The personal fields of API.md, as the access record names them (the PIN is a credential, not among them).
PERSONAL_FIELDS = tuple(name for name, field in PatronSchema().fields.items()
                        if not field.dump_only and not field.load_only)


class CardStatusSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))


class PatronLookupSchema(Schema):
    """A desk's look-up: by card number, by phone number, or (for a patron who forgot their card) by the name's
    reading together with the birth date."""

    class Meta:
        unknown = EXCLUDE  # other query parameters are ignored, as browsers and proxies add their own

    card_number = CardNumber()
    phone = fields.String(validate=PHONE)
    name_reading = fields.String(validate=[validate.Length(1, 200), KANA])
    birth_date = fields.Date()
    page = fields.Integer(load_default=1, validate=validate.Range(1, 10_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(1, 100))

    @validates_schema
    def one_key_is_given(self, data, **_):
        # A reading alone would list every namesake: it finds a patron only with the birth date.
        for given, wanted in (("name_reading", "birth_date"), ("birth_date", "name_reading")):
            if given in data and wanted not in data:
                raise ValidationError("look up by name_reading and birth_date together", field_name=wanted)
        if sum(key in data for key in ("card_number", "phone", "name_reading")) != 1:
            raise ValidationError("look up by card_number, by phone, or by name_reading with birth_date "
                                  "(one of them)", field_name="card_number")


class StaffAccountSchema(Schema):
    id = fields.Integer(dump_only=True)
    username = fields.String(
        required=True, validate=validate.Regexp(r"^[A-Za-z0-9._-]{3,64}$", error="3-64 letters, digits, . _ -")
    )
    password = fields.String(required=True, load_only=True, validate=validate.Length(10, 200))
    role = fields.String(required=True, validate=validate.OneOf(STAFF_ROLES))
    libraries = fields.List(fields.String(validate=validate.Length(1, 32)), load_default=list)
    tenant = fields.String(dump_only=True)


class StaffAccountChangeSchema(Schema):
    password = fields.String(load_only=True, validate=validate.Length(10, 200))
    role = fields.String(validate=validate.OneOf(STAFF_ROLES))
    libraries = fields.List(fields.String(validate=validate.Length(1, 32)))


class CredentialsSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(1, 64))
    password = fields.String(required=True, validate=validate.Length(1, 200))
    # User names are each tenant's own; without one, the log-in is to the tenant the gateway serves.
    tenant = fields.String(validate=TENANT_CODE)


class PatronCredentialsSchema(Schema):
    card_number = CardNumber(required=True)
    pin = fields.String(required=True, validate=validate.Length(1, 32))


class OwnRecordChangeSchema(Schema):
    """What a patron changes of their own record (my page): their e-mail address, or none (notices then go
    to the desk's phone list). Everything else is changed at the desk, where the patron shows who they are;
    the PIN has a route of its own, which asks for the current one."""

    class Meta:
        unknown = EXCLUDE  # and named one by one below, with where they are changed

    email = fields.Email(required=True, allow_none=True, validate=validate.Length(max=254))

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def nothing_but_the_email(self, _data, original, **_):
        # Run even when a field is wrong, to name every refused field at once; a body that is no object at all
        # is refused by marshmallow already.
        others = sorted(set(original) - {"email"}) if isinstance(original, dict) else []
        if others:
            raise ValidationError({field: ["the PIN is changed at PUT /api/v1/me/pin, with the current one"
                                           if field == "pin" else
                                           "only the e-mail address is changed here; this is changed at the "
                                           "library's desk"] for field in others})


class PinChangeSchema(Schema):
    current_pin = fields.String(required=True, validate=validate.Length(1, 32))
    new_pin = fields.String(required=True, validate=PIN_DIGITS)


class RevocationQuerySchema(Schema):
    since = fields.AwareDateTime(required=True, default_timezone=timezone.utc)


class RevokedCredentialSchema(Schema):
    tenant = fields.String(required=True)
    subject = fields.String(required=True)
    not_before = fields.AwareDateTime(required=True)


class AccessEntrySchema(Schema):
    seq = fields.Integer()
    at = fields.AwareDateTime()
    actor = fields.String()
    role = fields.String()
    patron_id = fields.Integer()
    action = fields.String()
    fields_ = fields.List(fields.String(), data_key="fields", attribute="fields")
    address = fields.String(allow_none=True)
    route = fields.String(allow_none=True)


class OwnAccessEntrySchema(Schema):
    """What a patron sees of who read or changed their record: the role and staff id, when, what."""

    at = fields.AwareDateTime()
    actor = fields.String()
    role = fields.String()
    action = fields.String()
    fields_ = fields.List(fields.String(), data_key="fields", attribute="fields")


class AccessQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    patron_id = fields.Integer(validate=validate.Range(1, 2**31 - 1))
    actor = fields.String(validate=validate.Length(1, 64))
    since = fields.AwareDateTime(default_timezone=timezone.utc)
    until = fields.AwareDateTime(default_timezone=timezone.utc)
    page = fields.Integer(load_default=1, validate=validate.Range(1, 10_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(1, 100))


class PatronEventSchema(Schema):
    patron_id = fields.Integer(required=True)


class PatronRegisteredSchema(PatronEventSchema):
    home_library = fields.String(required=True)
    category = fields.String(required=True)


class CardRegisteredSchema(Schema):
    home_library = fields.String(required=True)
    category = fields.String(required=True)
    age_band = fields.String(required=True)
    registered_on = fields.Date(required=True)


class PatronUpdatedSchema(PatronEventSchema):
    changed_fields = fields.List(fields.String(), required=True)


class LibraryAddedEventSchema(Schema):
    """What the patrons service reads from the catalogue's ``library_added``."""

    class Meta:
        unknown = EXCLUDE

    library = fields.String(required=True)
    kind = fields.String(required=True)


class CardUsedEventSchema(Schema):
    """What the patrons service reads from ``patron_card_used`` (tolerant: ignores other fields)."""

    class Meta:
        unknown = EXCLUDE

    patron_id = fields.Integer(required=True)
    used_on = fields.Date(required=True)


class CredentialsRevokedSchema(Schema):
    subject = fields.String(required=True, validate=validate.Regexp(r"^(staff|patron):[0-9]+$"))
    not_before = fields.AwareDateTime(required=True)


class PatronsPastRetentionSchema(Schema):
    patron_ids = fields.List(fields.Integer(), required=True)
    retention_years = fields.Integer(required=True)


PUBLISHED_EVENTS = {
    "patron_registered": (1, PatronRegisteredSchema()),
    "card_registered": (1, CardRegisteredSchema()),
    "patron_updated": (1, PatronUpdatedSchema()),
    "patron_deleted": (1, PatronEventSchema()),
    "credentials_revoked": (1, CredentialsRevokedSchema()),
    "patrons_past_retention": (1, PatronsPastRetentionSchema()),
}
