"""The API fuzzed against its own OpenAPI document (schemathesis), over loopback, on the real broker and databases:
every operation of the staff gateway, with an admin's token and, for a patron's own routes, a patron's, and every
operation of the OPAC gateway anonymously. No answer is a 5xx (a 503 is documented, for a service that does not
answer, but none should happen here); every answer has a documented status, media type and shape.

Bounded for ``make test`` (``SHIORI_FUZZ_EXAMPLES`` valid and as many invalid requests per operation, the four
checks above); ``make fuzz`` (``SHIORI_FUZZ_CHECKS=all``) runs it with many more and every check schemathesis has.

The fuzzer writes: it works in a tenant of its own, made for the run, so that its loan rules, calendars, closures
and settings reach no other test. It is kept from its own credentials: a staff-account id or patron id in a path
that is the fuzzer's own admin or patron is replaced by one of no record (changing the admin's password or deleting
the patron would end the tokens it fuzzes with). Failed log-ins it causes count against 127.0.0.1, and are
dropped afterwards."""
import gzip
import os
import uuid

import pytest

if not os.environ.get("SHIORI_FUZZ_EXAMPLES"):
    # Out of make test for now: imported under eventlet's patching, schemathesis fails (GreenSocket has no
    # sendmsg), and loaded as pytest plugins before it, its and hypothesis's plugins broke every TLS test.
    pytest.skip("make fuzz (SHIORI_FUZZ_EXAMPLES): out of make test for now", allow_module_level=True)

import hypothesis  # noqa: E402
import requests  # noqa: E402
import schemathesis  # noqa: E402
from schemathesis import GenerationMode, checks
from schemathesis.config import SchemathesisConfig

from services.catalog.aozora import AOZORA_INDEX
from services.gateway.openapi import openapi_document
from services.gateway.service import GatewayService
from services.gateway.tokens import TokenIssuer
from services.opac.service import OpacService
from shiori.commands.calls import wait_for_libraries
from shiori.roles import PATRON
from support import in_database, patron_fields, register_patron, unique

EXAMPLES = int(os.environ.get("SHIORI_FUZZ_EXAMPLES", "6"))
FULL = os.environ.get("SHIORI_FUZZ_CHECKS") == "all"
NO_SUCH_ID = 2_000_000_000
PIN = "8303"
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance")
# Rules of the owners' schemas that JSON Schema cannot state: a request valid by the document may be refused (400)
# by them, so the full run does not count such a refusal as valid input refused.
RULES_BEYOND_THE_DOCUMENT = {
    "patron_token": "a card number's check digit",
    "checkout": "a card number's check digit",
    "place_hold": "a card number's check digit",
    "find_patrons": "one key to look up by (card_number, phone, or name_reading with birth_date); a check digit",
    "search": "something to search for: q or a field",
    "register_patron": "a birth date from 1900 to today",
    "update_patron": "a birth date from 1900 to today",
    "add_work": "an ISBN's check digit",
    "set_library_calendar": "periods that end after they begin, of at most 366 days; a day of the week open",
    "close_unexpectedly": "a period that ends after it begins, of at most 366 days",
    "statistics_counts": "a period that ends after it begins, of at most 1098 days",
    "checkouts_chart": "a period that ends after it begins, of at most 1098 days",
    "change_my_pin": "the card's current PIN, and a new one not too easy to guess",
    "create_staff_account": "libraries that exist",
    "update_staff_account": "libraries that exist",
}


def routes(service):
    return [f"{method.upper()} {path}" for path, methods in openapi_document(service)["paths"].items()
            for method in methods]


def loaded(url):
    """The document at ``url``, with the checks this run makes."""
    enabled = {"enabled": True} if FULL else {"enabled": False, **{check: {"enabled": True} for check in CHECKS}}
    # The API ignores query parameters it does not know (browsers and proxies add their own): none is sent.
    config = SchemathesisConfig.from_dict({"checks": enabled, "request-timeout": 30,
                                           "generation": {"allow-extra-parameters": False}})
    return schemathesis.openapi.from_url(url, config=config)


def fuzz(operation, call):
    """``call`` each case generated for ``operation``: valid ones, then invalid ones. ``make test`` makes the same
    cases each run; ``make fuzz`` new ones each time (with a failure, hypothesis prints how to repeat it)."""
    takes_input = operation.definition.raw.get("parameters") or "requestBody" in operation.definition.raw
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if takes_input else (GenerationMode.POSITIVE,):
        @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not FULL,
                             suppress_health_check=list(hypothesis.HealthCheck))  # the machine is shared
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def each(case):
            call(case)

        each()


@pytest.fixture(scope="module")
def fuzz_tenant(system):
    """A tenant of the fuzzer's own, with an admin, two libraries and a patron; answers their tokens and ids."""
    code = f"fuzz-{uuid.uuid4().hex[:8]}"
    admin = {"username": "fuzz-admin", "password": uuid.uuid4().hex, "role": "admin", "libraries": []}
    with system.rpc(tenant=code) as rpc:
        rpc.catalog.ensure_tenant({"code": code, "name": "試験町"})
        rpc.patrons.ensure_staff_account(admin)
        for library in ({"code": "main", "name": "試験町立図書館", "kind": "main"},
                        {"code": "east", "name": "試験町立図書館 東分館", "kind": "branch"}):
            rpc.catalog.add_library(library)
        wait_for_libraries(rpc, ["main", "east"])
    http = requests.Session()
    answer = http.post(f"{system.url}/api/v1/auth/token", timeout=10,
                       json={"username": admin["username"], "password": admin["password"], "tenant": code})
    answer.raise_for_status()
    staff = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    [own_account] = [account for account in http.get(f"{system.url}/api/v1/staff", headers=staff, timeout=10)
                     .json()["items"] if account["username"] == admin["username"]]
    patron = http.post(f"{system.url}/api/v1/patrons", headers=staff, json=patron_fields(pin=PIN), timeout=10)
    assert patron.status_code == 201, patron.text
    http.close()
    # A patron logs in to the tenant the gateway serves (testcity): this one's token is issued as the gateway
    # issues it, for the account the patrons service authenticates.
    with system.rpc(tenant=code) as rpc:
        patron_account = rpc.patrons.authenticate_patron({"card_number": patron.json()["card_number"], "pin": PIN})
    patron_token = TokenIssuer(system.environ["SHIORI_TOKEN_SECRET"], 3600).issue(patron_account)
    yield {"staff": staff, "patron": {"Authorization": f"Bearer {patron_token}"},
           "own_ids": {"account_id": own_account["id"], "patron_id": patron.json()["id"]}}
    in_database(system, "patrons", "DELETE FROM login_failures")


@pytest.fixture(scope="module")
def gateway_api(system):
    return loaded(f"{system.url}/api/v1/openapi.json")


@pytest.fixture(scope="module")
def opac_api(system):
    return loaded(f"{system.opac_url}/api/v1/openapi.json")


@pytest.fixture(scope="module")
def http():
    session = requests.Session()
    yield session
    session.close()  # an open keep-alive connection would hold the gateway's shutdown


def left_out(operation):
    """The checks that cannot hold of ``operation``: valid input accepted, where a rule beyond the document refuses
    some."""
    return [checks.positive_data_acceptance] if operation.definition.raw["operationId"] in \
        RULES_BEYOND_THE_DOCUMENT else []


def off_own_credentials(case, own_ids):
    for name, own_id in own_ids.items():
        if (case.path_parameters or {}).get(name) == own_id:
            case.path_parameters[name] = NO_SUCH_ID


@pytest.mark.parametrize("route", routes(GatewayService))
def test_the_gateway_answers_as_its_document_says(route, gateway_api, fuzz_tenant, system, http):
    method, path = route.split(" ", 1)
    operation = gateway_api[path][method]
    token = fuzz_tenant["patron" if operation.definition.raw.get("x-roles") == [PATRON] else "staff"]

    if route == "GET /api/v1/statistics/checkouts.png":
        # Known defect (reported): the statistics service imports matplotlib on its first chart, which takes
        # longer than the tests' RPC timeout on a loaded machine, so the first chart after a start answers 503.
        http.get(f"{system.url}{path}", params={"from": "2026-01-01", "to": "2026-01-01"}, headers=token, timeout=30)

    def call(case):
        off_own_credentials(case, fuzz_tenant["own_ids"])
        case.call_and_validate(base_url=system.url, session=http, headers=token,
                               excluded_checks=left_out(operation))

    fuzz(operation, call)


@pytest.mark.parametrize("route", routes(OpacService))
def test_the_opac_answers_as_its_document_says(route, opac_api, system, http):
    method, path = route.split(" ", 1)
    operation = opac_api[path][method]
    fuzz(operation, lambda case: case.call_and_validate(base_url=system.opac_url, session=http,
                                                        excluded_checks=left_out(operation)))


# What the fuzzer found, each kept as a plain example.

@pytest.mark.parametrize("method, path, request_", [
    ("POST", "/api/v1/works", {"json": {"title": "坊っちゃん\x00"}}),
    ("POST", "/api/v1/works", {"data": '{"title": "\\ud800坊っちゃん"}'.encode(),
                               "headers": {"Content-Type": "application/json"}}),
    ("GET", "/api/v1/audit", {"params": {"actor": "staff:1\x00"}}),
    ("GET", "/api/v1/items/T%00", {}),
], ids=["nul-in-body", "lone-surrogate-in-body", "nul-in-query", "nul-in-path"])
def test_text_with_a_nul_or_a_lone_surrogate_is_refused_not_stored(staff, method, path, request_):
    answer = staff.request(method, f"{staff.base_url}{path}", timeout=10, **request_)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("path, body", [
    ("/api/v1/items", {"barcode": "T-HUGE", "work_id": 2**63, "library": "main"}),
    ("/api/v1/holds", {"work_id": 2**63, "pickup_library": "main"}),
    ("/api/v1/holds", {"works": [1, 2**63], "pickup_library": "main"}),
])
def test_a_work_id_beyond_any_key_is_refused(staff, path, body):
    """Larger than a 64-bit integer, it failed in the database (SQLite, PostgreSQL) rather than as input."""
    card_number = register_patron(staff)["card_number"]
    answer = staff.post(f"{staff.base_url}{path}", json={**body, "card_number": card_number}, timeout=10) \
        if path.endswith("holds") else staff.post(f"{staff.base_url}{path}", json=body, timeout=10)
    assert answer.status_code == 400, answer.text
    assert set(answer.json()["error"]["details"]) & {"work_id", "works"}


def test_a_method_a_route_does_not_take_is_answered_405_naming_those_it_does(staff):
    answer = staff.delete(f"{staff.base_url}/api/v1/checkouts", timeout=10)
    assert answer.status_code == 405, answer.text
    assert answer.headers["Allow"] == "POST"
    assert answer.json()["error"]["details"] == {"allowed": ["POST"]}


def test_an_empty_source_id_is_refused_rather_than_taken_for_none(staff):
    """Stored as given but taken for "no source id" when looked up, a second one broke the works' unique key."""
    for _twice in range(2):
        answer = staff.post(f"{staff.base_url}/api/v1/works", json={"title": "坊っちゃん", "source_id": ""}, timeout=10)
        assert answer.status_code == 400, answer.text
        assert "source_id" in answer.json()["error"]["details"]


@pytest.mark.parametrize("file_format", ["aozora-csv", "marc21"])
def test_an_imported_record_with_a_nul_is_rejected_not_stored(staff, file_format):
    """An import file is no JSON: its records reach the catalogue without the gateway's check (PostgreSQL failed
    the whole import with a 500)."""
    answer = staff.post(f"{staff.base_url}/api/v1/works/import", params={"format": file_format},
                        data=import_file_with_a_nul(file_format), headers={"Content-Type": "application/octet-stream"},
                        timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["added"] == 0 and answer.json()["rejected"] == 1, answer.text


def import_file_with_a_nul(file_format):
    """One record whose title holds U+0000: the first row of the shipped Aozora index, or a MARC21 record."""
    if file_format == "marc21":
        from pymarc import Field, Indicators, Record, Subfield

        record = Record(leader="00000nam a2200000 i 4500", to_unicode=True)
        record.add_field(Field("001", data=unique("nul-")), Field("245", Indicators("1", "0"),
                                                                  [Subfield("a", "坊っちゃん\x00")]))
        return record.as_marc()
    header, row = gzip.decompress(AOZORA_INDEX.read_bytes()).decode("utf-8-sig").splitlines(keepends=True)[:2]
    cells = row.split(",")
    cells[3] = '"坊っちゃん\x00"'  # 作品名
    return (header + ",".join(cells)).encode()
