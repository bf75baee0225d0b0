"""The role matrix of docs/roles.md, route by route, on SQLite and PostgreSQL.

Every route the gateway serves is asked by an admin, a librarian of one branch, a school librarian of one school,
a patron and nobody. It is asked once through the gateway, and once with the gateway's own role check turned off,
where the services alone must refuse what the matrix forbids. A route without a row in the matrix fails here.
The ids in the paths name no record, so an allowed call answers 404 or 400 rather than changing anything."""
import re
from pathlib import Path

import pytest
import requests

from services.gateway.entrypoints import GatewayServer
from services.gateway.openapi import openapi_document
from services.gateway.service import GatewayService
from shiori.roles import PATRON, PUBLIC, STAFF_ROLES
from support import add_copy, check_in, patrons_know, register_patron, unique, wait_until, wall_today

MATRIX_FILE = Path(__file__).resolve().parents[2] / "docs" / "roles.md"
CALLERS = ("admin", "librarian", "school_librarian", "patron", "no token")
ALLOWED = {"yes", "scoped", "self", "own libraries", "own school", "new records"}
REFUSED = {"no", "no, own record"}
AT_OWN_LIBRARY = {"own libraries", "own school"}
NO_SUCH_ID = 2147483000
NO_SUCH_COPY = "NO-SUCH-COPY"
UNKNOWN_CARD = "100000000008"
ONE_RECORD = ('<collection xmlns="http://www.loc.gov/MARC21/slim"><record><leader>00000nam a2200000 i 4500</leader>'
              '<datafield tag="245" ind1="0" ind2="0"><subfield code="a">役割の試験</subfield></datafield>'
              '</record></collection>').encode()
ROUTES = sorted(f"{method.upper()} {path}" for path, operations in openapi_document(GatewayService)["paths"].items()
                for method in operations)


def read_matrix():
    """``{"GET /api/v1/...": {caller: cell}}`` from the table of docs/roles.md."""
    matrix = {}
    for line in MATRIX_FILE.read_text(encoding="utf-8").splitlines():
        row = re.fullmatch(r"\| `([A-Z]+ /[^`]*)` \|(.*)\|", line)
        if row:
            matrix[row.group(1)] = dict(zip(CALLERS, (cell.strip() for cell in row.group(2).split("|"))))
    return matrix


MATRIX = read_matrix()


def the_request(route, library):
    """What a caller sends to ``route`` when it works at ``library``: ids of no record, and a body only where
    the route needs one to reach its library or its service."""
    method, path = route.split(" ", 1)
    path = path.replace("{library}", library).replace("{barcode}", NO_SUCH_COPY)
    path = re.sub(r"\{\w+_id\}", str(NO_SUCH_ID), path)
    today = wall_today().isoformat()
    samples = {
        "POST /api/v1/checkouts": {"json": {"card_number": UNKNOWN_CARD, "item_barcode": NO_SUCH_COPY,
                                            "library": library}},
        "POST /api/v1/checkins": {"json": {"item_barcode": NO_SUCH_COPY, "library": library}},
        "POST /api/v1/items": {"json": {"barcode": unique("RM"), "work_id": NO_SUCH_ID, "library": library}},
        "GET /api/v1/statistics": {"params": {"from": today, "to": today, "library": library}},
        "GET /api/v1/statistics/checkouts.png": {"params": {"from": today, "to": today, "library": library}},
        "POST /api/v1/works/import": {"params": {"format": "marcxml"}, "data": ONE_RECORD,
                                      "headers": {"Content-Type": "application/marcxml+xml"}},
    }
    return method, path, samples.get(route, {"json": {}})


@pytest.fixture(scope="module")
def places(system, staff):
    """A branch and a school of this module's own: what its allowed calls may touch (a calendar emptied)."""
    made = {}
    for kind in ("branch", "school"):
        code = unique(kind[0]).lower()[:12]
        response = staff.post(f"{system.url}/api/v1/libraries", timeout=10,
                              json={"code": code, "name": f"役割の試験 {kind}", "kind": kind})
        assert response.status_code == 201, response.text
        made[kind] = code
    patrons_know(system, *made.values())
    return made


def logged_in(system, path, credentials):
    response = requests.post(f"{system.url}{path}", json=credentials, timeout=10)
    assert response.status_code == 200, response.text
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return session


@pytest.fixture(scope="module")
def callers(system, staff, places):
    """Each caller's session, and the library it works at and one it does not."""
    made = {"admin": (staff, places["branch"], "main")}
    for role, library, elsewhere in (("librarian", places["branch"], "main"),
                                     ("school_librarian", places["school"], places["branch"])):
        username = unique(role.replace("_", "-") + "-")
        response = staff.post(f"{system.url}/api/v1/staff", timeout=10, json={
            "username": username, "password": "a-long-password-1", "role": role, "libraries": [library]})
        assert response.status_code == 201, response.text
        made[role] = (logged_in(system, "/api/v1/auth/token", {"username": username,
                                                                "password": "a-long-password-1"}),
                      library, elsewhere)
    patron = register_patron(staff, pin="2468")
    made["patron"] = (logged_in(system, "/api/v1/auth/patron-token",
                                {"card_number": patron["card_number"], "pin": "2468"}), places["branch"], "main")
    made["no token"] = (requests.Session(), places["branch"], "main")
    yield made
    for session, _library, _elsewhere in made.values():
        if session is not staff:
            session.close()


def call(system, session, route, library):
    method, path, options = the_request(route, library)
    return session.request(method, f"{system.url}{path}", timeout=30, **options)


def assert_refused(response, statuses, what):
    assert response.status_code in statuses, (what, response.status_code, response.text[:300])
    if response.status_code in (401, 403):
        error = response.json()["error"]
        assert error["code"] in ("NOT_AUTHENTICATED", "FORBIDDEN") and {"message", "details"} <= set(error), what


def walk(system, callers, route, refused_statuses):
    """Ask ``route`` as every caller; ``refused_statuses(caller, cell)`` says what a refusal may answer."""
    for caller, (session, library, elsewhere) in callers.items():
        cell = MATRIX[route][caller]
        what = (route, caller, cell)
        if cell in REFUSED:
            assert_refused(call(system, session, route, library), refused_statuses(caller, cell), what)
            continue
        answer = call(system, session, route, library)
        assert answer.status_code not in (401, 403), (what, answer.text[:300])
        if cell in AT_OWN_LIBRARY:
            assert_refused(call(system, session, route, elsewhere), {403}, what + (elsewhere,))


def test_every_route_of_the_gateway_has_a_row_in_the_matrix_and_every_row_a_route():
    assert sorted(MATRIX) == ROUTES
    cells = {cell for row in MATRIX.values() for cell in row.values()}
    assert cells <= ALLOWED | REFUSED, cells - ALLOWED - REFUSED
    assert all(len(row) == len(CALLERS) for row in MATRIX.values())


@pytest.mark.privacy(7)
@pytest.mark.parametrize("route", ROUTES)
def test_the_gateway_answers_each_caller_as_the_matrix_says(system, callers, route):
    walk(system, callers, route, lambda caller, _cell: {401} if caller == "no token" else {403})


@pytest.mark.privacy(7)
@pytest.mark.parametrize("route", ROUTES)
def test_the_services_refuse_what_the_matrix_forbids_even_when_the_gateway_lets_it_through(
        system, callers, route, monkeypatch):
    let_through = GatewayServer.identify

    def identify_without_role_checks(server, request, token, _public, _roles, pattern):
        return let_through(server, request, token, True, STAFF_ROLES + (PATRON, PUBLIC), pattern)

    monkeypatch.setattr(GatewayServer, "identify", identify_without_role_checks)
    walk(system, callers, route, lambda _caller, cell: {403, 404} if cell == "no, own record" else {403})


def test_a_school_librarian_adds_new_works_but_changes_none_of_the_tenants(system, staff, callers):
    school_clerk, city_clerk = callers["school_librarian"][0], callers["librarian"][0]
    source_id = unique("role-test:")
    work = staff.post(f"{system.url}/api/v1/works", json={"title": "共有の書誌", "source_id": source_id}, timeout=10)
    assert work.status_code == 201, work.text
    rewrite = school_clerk.post(f"{system.url}/api/v1/works", json={"title": "書き換え", "source_id": source_id},
                                timeout=10)
    assert rewrite.status_code == 403 and rewrite.json()["error"]["code"] == "FORBIDDEN", rewrite.text
    assert staff.get(f"{system.url}/api/v1/works/{work.json()['id']}", timeout=10).json()["title"] == "共有の書誌"
    assert school_clerk.post(f"{system.url}/api/v1/works", json={"title": "学校の新しい本"}, timeout=10).status_code == 201
    corrected = city_clerk.post(f"{system.url}/api/v1/works", json={"title": "共有の書誌 改訂", "source_id": source_id},
                                timeout=10)
    assert corrected.status_code == 201 and corrected.json()["id"] == work.json()["id"], corrected.text


def test_a_desk_sees_and_marks_done_only_its_own_libraries_phone_notices(system, staff, callers, places):
    clerk = callers["librarian"][0]
    branch = places["branch"]

    def ready_for_phoning(library):
        patron = register_patron(staff, email=None, home_library=library)
        work, copy = add_copy(staff, library=library)
        assert staff.post(f"{system.url}/api/v1/holds", timeout=10, json={
            "work_id": work["id"], "pickup_library": library, "card_number": patron["card_number"]}).status_code == 201
        assert check_in(staff, copy["barcode"], library=library).json()["action"] == "hold_shelf"
        return patron

    def listed(session, patron):
        return [entry["notice_id"] for entry in session.get(f"{system.url}/api/v1/notices/phone-list", timeout=10)
                .json()["items"] if entry["patron_id"] == patron["id"]]

    at_main, at_branch = ready_for_phoning("main"), ready_for_phoning(branch)
    [main_notice] = wait_until(lambda: listed(staff, at_main), message="main's notice on the phone list")
    [branch_notice] = wait_until(lambda: listed(staff, at_branch), message="the branch's notice on the phone list")
    assert listed(clerk, at_main) == [] and listed(clerk, at_branch) == [branch_notice]
    refused = clerk.delete(f"{system.url}/api/v1/notices/{main_notice}", timeout=10)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "NOTICE_NOT_FOUND"
    assert listed(staff, at_main) == [main_notice]
    assert clerk.delete(f"{system.url}/api/v1/notices/{branch_notice}", timeout=10).status_code == 204
    assert staff.delete(f"{system.url}/api/v1/notices/{main_notice}", timeout=10).status_code == 204
