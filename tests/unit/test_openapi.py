"""The OpenAPI document describes what each route reads (services/gateway/openapi.py) in JSON Schema, while the
owning services validate it with their own marshmallow schemas, which the gateway may not import: here each
description is held to its owner's schema (the same fields, the same required ones, the same choices), so that
neither changes without the other."""
import re

import pytest
from marshmallow import fields, validate

from services.catalog.schemas import ItemSchema, LibrarySchema, SearchQuerySchema, WorkSchema
from services.gateway.openapi import DESCRIBED, openapi_document
from services.gateway.schemas import ImportQuerySchema, PageSchema, StatisticsFormatSchema
from services.gateway.service import GatewayService
from services.loans.schemas import (CalendarSchema, CheckinSchema, CheckoutSchema, CirculationSettingsSchema,
                                    HoldRequestSchema, LoanPolicySchema, LoanSchema, UnplannedClosureSchema)
from services.notices.schemas import NoticeSettingsSchema
from services.notices.templates import KINDS
from services.opac.service import OpacService
from services.patrons.schemas import (AccessQuerySchema, CardStatusSchema, CredentialsSchema, OwnRecordChangeSchema,
                                      PatronCredentialsSchema, PatronLookupSchema, PatronSchema, PinChangeSchema,
                                      StaffAccountChangeSchema, StaffAccountSchema)
from services.statistics.schemas import StatisticsQuerySchema
from shiori.vocabulary import CODE

PAGED = ("list_libraries", "my_loans", "my_holds", "my_access_log", "list_staff_accounts", "patron_loans",
         "patron_holds", "phone_list", "pending_notices")
# operationId: (the owner's schema of the JSON body, whether the owner loads it partially)
BODIES = {
    "staff_token": (CredentialsSchema(), False),
    "patron_token": (PatronCredentialsSchema(), False),
    "update_me": (OwnRecordChangeSchema(), False),
    "change_my_pin": (PinChangeSchema(), False),
    "create_staff_account": (StaffAccountSchema(), False),
    "update_staff_account": (StaffAccountChangeSchema(), False),
    "add_library": (LibrarySchema(), False),
    "register_patron": (PatronSchema(), False),
    "update_patron": (PatronSchema(), True),
    "set_card_status": (CardStatusSchema(), False),
    "add_work": (WorkSchema(), False),
    "add_item": (ItemSchema(), False),
    "checkout": (CheckoutSchema(), False),
    "checkin": (CheckinSchema(), False),
    "place_hold": (HoldRequestSchema(), False),
    "add_policy": (LoanPolicySchema(), False),
    "update_policy": (LoanPolicySchema(), True),
    "update_circulation_settings": (CirculationSettingsSchema(), False),
    "set_library_calendar": (CalendarSchema(), False),
    "close_unexpectedly": (UnplannedClosureSchema(), False),
    "update_notice_settings": (NoticeSettingsSchema(), False),
}
# operationId: the owners' schemas of its query, together
QUERIES = {
    **{operation: (PageSchema(),) for operation in PAGED},
    "search": (SearchQuerySchema(),),
    "find_patrons": (PatronLookupSchema(),),
    "access_record": (AccessQuerySchema(),),
    "statistics_counts": (StatisticsQuerySchema(), StatisticsFormatSchema()),
    # the chart asks for its own grouping
    "checkouts_chart": (StatisticsQuerySchema(exclude=("group_by",)),),
    "import_works": (ImportQuerySchema(),),
}


# operationId: the owner's schema of the record it answers
ANSWERS = {
    "register_patron": PatronSchema(), "get_patron": PatronSchema(), "me": PatronSchema(),
    "create_staff_account": StaffAccountSchema(), "add_library": LibrarySchema(), "add_work": WorkSchema(),
    "get_work": WorkSchema(), "add_item": ItemSchema(), "get_item": ItemSchema(), "checkout": LoanSchema(),
    "renew": LoanSchema(),
}


def loaded_fields(schema):
    """What a schema loads, by the name a client sends."""
    return {field.data_key or name: field for name, field in schema.fields.items() if not field.dump_only}


def choices(field):
    validators = field.validators if isinstance(field.validators, (list, tuple)) else [field.validators]
    return next((list(validator.choices) for validator in validators if isinstance(validator, validate.OneOf)), None)


def nested_schema(field):
    inner = field.inner if isinstance(field, fields.List) else field
    return inner.schema if isinstance(inner, fields.Nested) else None


def differences(described, schemas, partial=False, where=""):
    """How the JSON Schema ``described`` differs from what the marshmallow ``schemas`` load together."""
    owned = {name: field for schema in schemas for name, field in loaded_fields(schema).items()}
    found = []
    if set(described["properties"]) != set(owned):
        found.append(f"{where}fields {sorted(described['properties'])} != {sorted(owned)}")
    required = set() if partial else {name for name, field in owned.items() if field.required}
    if set(described.get("required", ())) != required:
        found.append(f"{where}required {sorted(described.get('required', ()))} != {sorted(required)}")
    for name in set(described["properties"]) & set(owned):
        property_, field = described["properties"][name], owned[name]
        if property_.get("enum") != choices(field) and choices(field) is not None:
            found.append(f"{where}{name}: choices {property_.get('enum')} != {choices(field)}")
        if bool(property_.get("nullable")) != field.allow_none:
            found.append(f"{where}{name}: nullable {bool(property_.get('nullable'))} != {field.allow_none}")
        inner = nested_schema(field)
        if inner is not None:
            shape = property_.get("items", property_)
            found.extend(differences(shape, (inner,), where=f"{where}{name}."))
    return found


@pytest.mark.parametrize("operation", sorted(BODIES))
def test_each_body_is_described_as_its_owner_loads_it(operation):
    schema, partial = BODIES[operation]
    assert differences(DESCRIBED[operation].body, (schema,), partial) == []


@pytest.mark.parametrize("operation", sorted(QUERIES))
def test_each_query_is_described_as_its_owners_load_it(operation):
    assert differences(DESCRIBED[operation].query, QUERIES[operation]) == []


@pytest.mark.parametrize("operation", sorted(ANSWERS))
def test_each_record_answered_is_described_by_fields_its_owner_dumps(operation):
    dumped = {field.data_key or name for name, field in ANSWERS[operation].fields.items() if not field.load_only}
    assert set(DESCRIBED[operation].answer["properties"]) <= dumped


def test_every_operation_that_reads_a_body_or_a_query_is_held_to_its_owner():
    reading = {operation for operation, described in DESCRIBED.items()
               if described.body is not None or described.query["properties"]}
    assert reading == set(BODIES) | set(QUERIES)


def test_every_route_is_described_and_every_description_is_a_route():
    operations = {operation["operationId"] for service in (GatewayService, OpacService)
                  for methods in openapi_document(service)["paths"].values() for operation in methods.values()}
    assert operations == set(DESCRIBED)


def test_the_statistics_grouping_names_the_owners_dimensions():
    pattern = re.compile(DESCRIBED["statistics_counts"].query["properties"]["group_by"]["pattern"])
    dimensions = choices(StatisticsQuerySchema().fields["group_by"].inner)
    assert all(pattern.fullmatch(f"day,{dimension}") for dimension in dimensions)
    assert not pattern.fullmatch("day,title")


def test_the_notice_templates_are_the_kinds_the_notices_service_sends():
    templates = DESCRIBED["update_notice_settings"].body["properties"]["templates"]["properties"]
    assert set(templates) == set(KINDS)


def test_the_codes_pattern_is_the_vocabularys():
    assert DESCRIBED["add_library"].body["properties"]["code"]["pattern"] == CODE.regex.pattern


def test_the_comparison_sees_a_field_left_out():
    described = {"properties": {"title": {"type": "string"}}, "required": ["title"]}
    assert differences(described, (WorkSchema(),)) != []
