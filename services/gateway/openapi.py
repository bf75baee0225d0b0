"""The OpenAPI 3 description, built from the gateway's own routes so it cannot drift from them.

The routes give the paths, methods, path parameters and who may call. What a route reads and answers is
described here by operation (``DESCRIBED``): the owning services validate the bodies and queries with their own
schemas, which the gateway does not import, so tests/unit/test_openapi.py holds each description to its owner's
schema. Which statuses an operation answers follows from its shape (a token, a body, a path id) and the refusals
named for it; tests/integration/test_api_fuzz.py fuzzes the live gateways against this document.
"""
import re
from dataclasses import dataclass, field
from http import HTTPStatus

from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from services.gateway.entrypoints import MAX_ID, Route
from shiori.roles import STAFF_ROLES
from shiori.vocabulary import IMPORT_FORMATS, ITEM_TYPES, PATRON_CATEGORIES, SEXES

_PATH_PARAMETER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message", "details"], "properties": {
        "code": {"type": "string", "example": "ITEM_ALREADY_ON_LOAN"},
        "message": {"type": "string"},
        "details": {"type": "object"},
    }}},
}

# What each error status means here (API.md, "Conventions").
ERROR_STATUSES = {
    400: "invalid input: details name each field or parameter and what is wrong with it",
    401: "no token, or one that is invalid, expired or revoked",
    403: "not allowed for this role or library",
    404: "no such record (an id, barcode, card or library)",
    408: "the body did not arrive in time",
    409: "the record's state does not allow it (on loan, holds waiting, a limit reached, ...)",
    413: "the body is larger than this route accepts",
    415: "the body is not application/json",
    429: "too many failed log-ins: wait as Retry-After says",
    503: "a backing service did not answer in time",
}


# --- JSON Schema, in the words of the services' marshmallow fields ------------------------------------------

NO_NUL = r"^[^\x00]*$"  # the gateway refuses U+0000 in any text (entrypoints.refuse_what_is_not_text)


def text(shortest=1, longest=None, pattern=NO_NUL):
    schema = {"type": "string", "minLength": shortest, "pattern": pattern}
    if longest is not None:
        schema["maxLength"] = longest
    return schema


def one_of(values):
    return {"type": "string", "enum": list(values)}


def integer(lowest=None, highest=None):
    schema = {"type": "integer"}
    if lowest is not None:
        schema["minimum"] = lowest
    if highest is not None:
        schema["maximum"] = highest
    return schema


def list_of(items, shortest=0, longest=None):
    schema = {"type": "array", "items": items, "minItems": shortest}
    if longest is not None:
        schema["maxItems"] = longest
    return schema


def nullable(schema):
    return {**schema, "nullable": True}


def fields_of(properties, required=(), closed=True):
    """An object with these properties; a closed one refuses any other (marshmallow's default)."""
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


BOOLEAN = {"type": "boolean"}
DATE = {"type": "string", "format": "date"}
INSTANT = {"type": "string", "format": "date-time"}
EMAIL = {"type": "string", "format": "email", "maxLength": 254}
ANY_OBJECT = {"type": "object"}
CODE = text(1, 32, r"^[a-z0-9][a-z0-9-]{0,31}$")  # a tenant's or library's code (shiori.vocabulary.CODE)
SHORT_CODE = text(1, 32)  # a code or barcode whose existence its owner checks
CARD_NUMBER = text(12, 12, r"^[0-9]{12}$")  # with a Luhn check digit
WORK_ID = integer(1, MAX_ID)
PIN = text(4, 8, r"^[0-9]{4,8}$")
KANA = r"^[\u3041-\u309f\u30a0-\u30ff\uff65-\uff9f\u3000 ・ー]+$"
PHONE = r"^\+?[0-9][0-9-]{5,18}[0-9]$"
PAGE = {"page": integer(1, 10_000), "per_page": integer(1, 100)}
PERIOD = {"from": DATE, "to": DATE, "library": text(1, 32)}
_DIMENSION = "(day|library|patron_category|age_band|item_type|ndc_class)"
GROUP_BY = text(0, None, f"^({_DIMENSION}(,{_DIMENSION})*)?$")  # day,library

PATRON = {
    "name": text(1, 200), "name_kana": text(1, 200, KANA), "birth_date": DATE, "sex": one_of(SEXES),
    "address": text(1, 500), "alt_address": nullable(text(0, 500)), "phone": text(7, 21, PHONE),
    "email": nullable(EMAIL), "home_library": text(1, 32), "category": one_of(PATRON_CATEGORIES),
    "pin": nullable(PIN),
}
STAFF_ACCOUNT = {"username": text(3, 64, r"^[A-Za-z0-9._-]{3,64}$"), "password": text(10, 200),
                 "role": one_of(STAFF_ROLES), "libraries": list_of(text(1, 32))}
LIBRARY_KINDS = ("main", "branch", "school")
LOAN_POLICY = {
    "patron_category": nullable(one_of(PATRON_CATEGORIES)), "item_type": nullable(one_of(ITEM_TYPES)),
    "library": nullable(SHORT_CODE), "loan_days": integer(1, 365), "max_items": integer(0, 1000),
    "max_items_of_type": nullable(integer(0, 1000)), "renewals": integer(0, 20), "max_holds": integer(0, 1000),
}
CLOSURE = {"first": DATE, "last": DATE, "reason": text(0, 100)}
NOTICE_TEMPLATE = fields_of({"subject": text(1, 200), "body": text(1, 4000)}, required=("subject", "body"))

# What the owners answer: the records' fields (an owner may add more), those always there required.
DAY_OR_NONE = nullable(DATE)
PATRON_RECORD = fields_of({
    "id": integer(1), "card_number": CARD_NUMBER, **{name: PATRON[name] for name in PATRON if name != "pin"},
    "registered_on": DATE, "expires_on": DATE, "last_used_on": DAY_OR_NONE, "total_uses": integer(0),
    "status": one_of(("active", "suspended")),
}, required=("id", "card_number", "name", "name_kana", "birth_date", "home_library", "category", "registered_on",
             "expires_on", "status"), closed=False)
STAFF_RECORD = fields_of({"id": integer(1), "tenant": {"type": "string"},
                          **{name: STAFF_ACCOUNT[name] for name in ("username", "role", "libraries")}},
                         required=("id", "username", "role", "libraries"), closed=False)
LIBRARY_RECORD = fields_of({"code": CODE, "name": {"type": "string"}, "kind": one_of(LIBRARY_KINDS)},
                           required=("code", "name", "kind"), closed=False)
WORK_RECORD = fields_of({
    "id": integer(1), "title": {"type": "string"}, "authors": list_of(ANY_OBJECT), "availability": list_of(
        fields_of({"library": {"type": "string"}, "total": integer(0), "available": integer(0)},
                  required=("library", "total", "available"), closed=False)),
}, required=("id", "title", "authors", "availability"), closed=False)
ITEM_RECORD = fields_of({"barcode": {"type": "string"}, "work_id": WORK_ID, "library": {"type": "string"},
                         "item_type": one_of(ITEM_TYPES), "title": {"type": "string"}, "status": {"type": "string"},
                         "due_date": DAY_OR_NONE}, required=("barcode", "work_id", "library", "status"), closed=False)
LOAN_RECORD = fields_of({"loan_id": integer(1), "item_barcode": {"type": "string"}, "library": {"type": "string"},
                         "loaned_on": DATE, "due_date": DATE, "renewals": integer(0)},
                        required=("loan_id", "item_barcode", "due_date"), closed=False)

TOKEN_FIELDS = {"access_token": {"type": "string"}, "token_type": one_of(["Bearer"]), "expires_in": integer(1)}
TOKEN = fields_of(TOKEN_FIELDS, required=TOKEN_FIELDS, closed=False)
STAFF_TOKEN_FIELDS = {**TOKEN_FIELDS, "role": one_of(STAFF_ROLES), "libraries": list_of({"type": "string"})}
STAFF_TOKEN = fields_of(STAFF_TOKEN_FIELDS, required=STAFF_TOKEN_FIELDS, closed=False)


def listed(record=ANY_OBJECT):
    """A page of a list (API.md: ``?page=&per_page=``)."""
    return fields_of({"items": list_of(record), "total": integer(0), **PAGE}, required=("items", "total", "page",
                                                                                        "per_page"), closed=False)


LISTED = listed()


@dataclass(frozen=True)
class Described:
    """What a route's own code does not say of itself: what it reads, what it answers on success, and the
    refusals beyond those its shape implies (409 for a record's state, 404 for a record its body names, 429)."""

    body: dict = None  # the JSON body's schema
    query: dict = field(default_factory=lambda: fields_of({}))  # the query parameters, as an object's schema
    status: int = 200
    answer: dict = field(default_factory=lambda: ANY_OBJECT)
    media_types: tuple = ("application/json",)
    refusals: tuple = ()
    raw_body: bool = False  # the body is a file, not JSON


PAGED = Described(query=fields_of(PAGE), answer=LISTED)
DELETED = Described(status=204)

DESCRIBED = {
    "health": Described(answer=fields_of({"status": {"type": "string"}, "services": ANY_OBJECT},
                                         required=("status", "services"), closed=False)),
    "openapi": Described(),
    "staff_token": Described(
        body=fields_of({"username": text(1, 64), "password": text(1, 200), "tenant": CODE},
                       required=("username", "password")),
        answer=STAFF_TOKEN, refusals=(429,)),
    "patron_token": Described(body=fields_of({"card_number": CARD_NUMBER, "pin": text(1, 32)},
                                             required=("card_number", "pin")), answer=TOKEN, refusals=(429,)),
    "list_libraries": Described(query=fields_of(PAGE), answer=listed(LIBRARY_RECORD)),
    "search": Described(query=fields_of({
        "q": text(0, 200), "title": text(0, 200), "author": text(0, 200), "publisher": text(0, 200),
        "isbn": text(0, 32), "ndc": text(1, 10, r"^\d{1,3}(\.\d{0,6})?$"), "library": CODE, "available": BOOLEAN,
        "ndc_class": text(1, 1, r"^\d$"), "year_from": integer(1, 2200), "year_to": integer(1, 2200),
        "sort": one_of(("relevance", "newest", "popular")), "facets": BOOLEAN, **PAGE,
    }), answer=LISTED),
    "get_work": Described(answer=WORK_RECORD),
    "me": Described(answer=PATRON_RECORD),
    "update_me": Described(body=fields_of({"email": nullable(EMAIL)}, required=("email",)), answer=PATRON_RECORD),
    "change_my_pin": Described(body=fields_of({"current_pin": text(1, 32), "new_pin": PIN},
                                              required=("current_pin", "new_pin")),
                               answer=TOKEN, refusals=(429,)),
    "my_loans": Described(query=fields_of(PAGE), answer=listed(LOAN_RECORD)),
    "my_holds": PAGED,
    "my_export": Described(),
    "my_access_log": PAGED,
    "access_record": Described(query=fields_of({
        "patron_id": integer(1, MAX_ID), "actor": text(1, 64), "since": INSTANT, "until": INSTANT, **PAGE,
    }), answer=LISTED),
    "create_staff_account": Described(body=fields_of(STAFF_ACCOUNT, required=("username", "password", "role")),
                                      answer=STAFF_RECORD, status=201, refusals=(404, 409)),
    "list_staff_accounts": Described(query=fields_of(PAGE), answer=listed(STAFF_RECORD)),
    "update_staff_account": Described(body=fields_of({name: STAFF_ACCOUNT[name]
                                                      for name in ("password", "role", "libraries")}),
                                      answer=STAFF_RECORD, refusals=(409,)),
    "delete_staff_account": Described(status=204, refusals=(409,)),
    "add_library": Described(body=fields_of({"code": CODE, "name": text(1, 200), "kind": one_of(LIBRARY_KINDS)},
                                            required=("code", "name", "kind")),
                             status=201, answer=LIBRARY_RECORD, refusals=(409,)),
    "register_patron": Described(
        body=fields_of(PATRON, required=("name", "name_kana", "birth_date", "address", "phone", "home_library",
                                         "category")), answer=PATRON_RECORD, status=201, refusals=(404,)),
    "find_patrons": Described(query=fields_of({"card_number": CARD_NUMBER, "phone": text(7, 21, PHONE),
                                               "name_reading": text(1, 200, KANA), "birth_date": DATE, **PAGE}),
                              answer=listed(PATRON_RECORD)),
    "get_patron": Described(answer=PATRON_RECORD),
    "update_patron": Described(body=fields_of(PATRON), answer=PATRON_RECORD),
    "delete_patron": Described(status=204, refusals=(409,)),
    "renew_card": Described(answer=PATRON_RECORD),
    "replace_lost_card": Described(answer=PATRON_RECORD),
    "set_card_status": Described(body=fields_of({"status": one_of(("active", "suspended"))}, required=("status",)),
                                 answer=PATRON_RECORD),
    "patron_loans": Described(query=fields_of(PAGE), answer=listed(LOAN_RECORD)),
    "patron_holds": PAGED,
    "export_patron": Described(),
    "add_work": Described(body=fields_of({
        "title": text(1, 1000), "subtitle": nullable(text(0, 1000)), "responsibility": nullable(text(0, 1000)),
        "title_reading": nullable(text(0, 1000)),
        "authors": list_of(fields_of({"name": text(1, 300), "role": one_of(
            ("author", "translator", "editor", "illustrator", "contributor"))}, required=("name",)), longest=50),
        "publisher": nullable(text(0, 500)), "published_year": nullable(integer(1, 2200)),
        "isbn": nullable(text(10, 32)), "ndc": nullable(text(1, 10, r"^\d{1,3}(\.\d{1,6})?$")),
        "ddc": nullable(text(1, 14, r"^\d{1,3}(\.\d{1,10})?$")), "subjects": list_of(text(1, 500), longest=50),
        "source_id": nullable(text(1, 100)),
    }, required=("title",)), answer=WORK_RECORD, status=201),
    "import_works": Described(query=fields_of({"format": one_of(IMPORT_FORMATS)}, required=("format",)),
                              raw_body=True),
    "add_item": Described(body=fields_of({
        "barcode": text(1, 32, r"^[A-Za-z0-9-]{1,32}$"), "work_id": WORK_ID, "library": CODE,
        "call_number": nullable(text(0, 100)), "item_type": one_of(ITEM_TYPES),
        "shelf_location": nullable(text(0, 200)),
    }, required=("barcode", "work_id", "library")), answer=ITEM_RECORD, status=201, refusals=(404, 409)),
    "get_item": Described(answer=ITEM_RECORD),
    "checkout": Described(body=fields_of({"card_number": CARD_NUMBER, "item_barcode": SHORT_CODE,
                                          "library": SHORT_CODE}, required=("card_number", "item_barcode", "library")),
                          answer=LOAN_RECORD, status=201, refusals=(404, 409)),
    "checkin": Described(body=fields_of({"item_barcode": SHORT_CODE, "library": SHORT_CODE},
                                        required=("item_barcode", "library")), refusals=(404, 409)),
    "place_hold": Described(body={**fields_of({
        "work_id": WORK_ID, "works": list_of(WORK_ID, 2, 20), "pickup_library": SHORT_CODE,
        "card_number": CARD_NUMBER, "not_needed_after": DATE,
    }, required=("pickup_library",)), "oneOf": [{"required": ["work_id"]}, {"required": ["works"]}]},
        status=201, refusals=(404, 409)),
    "cancel_hold": DELETED,
    "hold_shelf": Described(),
    "renew": Described(answer=LOAN_RECORD, refusals=(409,)),
    "list_policies": Described(),
    "add_policy": Described(body=fields_of(LOAN_POLICY, required=("loan_days", "max_items", "renewals",
                                                                  "max_holds")), status=201, refusals=(409,)),
    "update_policy": Described(body=fields_of(LOAN_POLICY), refusals=(409,)),
    "delete_policy": DELETED,
    "circulation_settings": Described(),
    "update_circulation_settings": Described(body=fields_of({
        "renew_from": one_of(("today", "due_date")), "renewal_grace_days": integer(0, 365),
        "suspend_for_late_days": BOOLEAN,
    }, required=("renew_from", "renewal_grace_days", "suspend_for_late_days"))),
    "library_calendar": Described(),
    "set_library_calendar": Described(body=fields_of({
        "closed_weekdays": list_of(integer(0, 6)),
        "closures": list_of(fields_of(CLOSURE, required=("first", "last")), longest=1000),
    })),
    "close_unexpectedly": Described(body=fields_of({**CLOSURE, "libraries": list_of(SHORT_CODE, 1, 100)},
                                                   required=("first", "last", "libraries")), refusals=(404,)),
    "statistics_counts": Described(
        query=fields_of({**PERIOD, "group_by": GROUP_BY, "format": one_of(("json", "csv"))}, required=("from", "to")),
        media_types=("application/json", "text/csv")),
    "checkouts_chart": Described(query=fields_of(PERIOD, required=("from", "to")), media_types=("image/png",)),
    "phone_list": PAGED,
    "notice_phoned": DELETED,
    "pending_notices": PAGED,
    "notice_settings": Described(),
    "update_notice_settings": Described(body=fields_of({
        "include_titles": BOOLEAN,
        "templates": fields_of({kind: NOTICE_TEMPLATE for kind in ("hold_ready", "due_soon", "overdue")}),
    }, required=("include_titles",))),
}


def openapi_document(service_cls):
    paths = {}
    for route, method in _routes(service_cls):
        path = _PATH_PARAMETER.sub(r"{\2}", route.url)
        for http_method in route.method.split(","):
            paths.setdefault(path, {})[http_method.lower()] = _operation(route, method)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Shiori library system", "version": "1"},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "responses": {_refusal_name(status): _refusal(status, meaning)
                          for status, meaning in ERROR_STATUSES.items()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _operation(route, method):
    described = DESCRIBED[method.__name__]
    path_parameters = _PATH_PARAMETER.findall(route.url)
    operation = {
        "operationId": method.__name__,
        "summary": (method.__doc__ or method.__name__).strip().splitlines()[0],
        "parameters": [
            {"name": name, "in": "path", "required": True,
             "schema": integer(1, MAX_ID) if converter == "int" else text(1)}
            for converter, name in path_parameters
        ] + [
            {"name": name, "in": "query", "required": name in described.query.get("required", ()), "schema": schema}
            for name, schema in described.query["properties"].items()
        ],
        "responses": {str(status): _answer(status, described) for status in _statuses(route, described,
                                                                                     path_parameters)},
    }
    if described.body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": described.body}}}
    elif described.raw_body:
        operation["requestBody"] = {"required": True, "content": {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}}
    if not route.public:
        operation["security"] = [{"bearer": []}]
    if route.roles:
        operation["x-roles"] = list(route.roles)
    return operation


def _statuses(route, described, path_parameters):
    """The statuses an operation answers: success, then the refusals its shape implies and those named for it."""
    takes_body = described.body is not None or described.raw_body
    implied = {
        400,  # every route refuses a NUL character in its query, and reads its parameters and body
        401,  # every route refuses a bad token, a public one too
        503,
        *((403,) if not route.public else ()),
        *((404,) if path_parameters else ()),
        *((408, 413, 415) if takes_body else ()),
    }
    return [described.status, *sorted(implied | set(described.refusals))]


def _answer(status, described):
    if status == 204:
        return {"description": "done"}
    if status >= 400:
        return {"$ref": f"#/components/responses/{_refusal_name(status)}"}
    content = {media_type: {"schema": described.answer} if media_type == "application/json" else {}
               for media_type in described.media_types}
    return {"description": "created" if status == 201 else "the answer", "content": content}


def _refusal_name(status):
    return HTTPStatus(status).phrase.title().replace(" ", "")


def _refusal(status, meaning):
    answer = {"description": meaning,
              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if status == 429:
        answer["headers"] = {"Retry-After": {"required": True, "description": "seconds to wait",
                                             "schema": {"type": "integer", "minimum": 0}}}
    return answer


def _routes(service_cls):
    for name in dir(service_cls):
        method = getattr(service_cls, name)
        for entrypoint in getattr(method, ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(entrypoint, Route) and entrypoint.in_api:
                yield entrypoint, method
