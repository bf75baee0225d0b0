"""Bad input at the gateway: every case answers in the API's error shape with a clear status, never a 500,
and changes nothing."""
import pytest
import requests

from support import add_copy, check_out, patron_fields, register_patron


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error


def test_missing_or_bad_tokens_are_401(system):
    url = f"{system.url}/api/v1/patrons"
    assert_error(requests.post(url, json=patron_fields(), timeout=10), 401, "NOT_AUTHENTICATED")
    for header in ("Bearer", "Bearer not-a-token", "Basic dXNlcjpwYXNz",
                   "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJzdGFmZjoxIn0."):
        assert_error(requests.post(url, json=patron_fields(), headers={"Authorization": header}, timeout=10),
                     401, "NOT_AUTHENTICATED")


def test_wrong_password_is_401_and_reveals_nothing(system):
    url = f"{system.url}/api/v1/auth/token"
    wrong_password = assert_error(requests.post(url, json={"username": "test-admin", "password": "nope"}, timeout=10),
                                  401, "INVALID_CREDENTIALS")
    unknown_user = assert_error(requests.post(url, json={"username": "nobody", "password": "nope"}, timeout=10),
                                401, "INVALID_CREDENTIALS")
    assert wrong_password == unknown_user


def test_registration_reports_every_bad_field(staff):
    response = staff.post(f"{staff.base_url}/api/v1/patrons", timeout=10, json=patron_fields(
        name="", name_kana="Hanako", birth_date="1890-01-01", phone="call me", email="not-an-email",
        category="vip", home_library="atlantis", card_number="123", favourite_colour="blue"))
    details = assert_error(response, 400, "VALIDATION_ERROR")["details"]
    assert {"name", "name_kana", "birth_date", "phone", "email", "category", "card_number",
            "favourite_colour"} <= set(details)


def test_unknown_home_library_is_a_field_error(staff):
    response = staff.post(f"{staff.base_url}/api/v1/patrons", json=patron_fields(home_library="atlantis"), timeout=10)
    assert "home_library" in assert_error(response, 400, "VALIDATION_ERROR")["details"]


@pytest.mark.parametrize("body, headers, status, code", [
    (b'{"name": ', {"Content-Type": "application/json"}, 400, "INVALID_JSON"),
    (b"[1, 2, 3]", {"Content-Type": "application/json"}, 400, "INVALID_JSON"),
    (b'{"name": "\xff\xfe"}', {"Content-Type": "application/json"}, 400, "INVALID_JSON"),
    (b"name=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
    (b'{"name": "x"}', {}, 415, "UNSUPPORTED_MEDIA_TYPE"),
    (b'{"name": "' + b"x" * (2 << 20) + b'"}', {"Content-Type": "application/json"}, 413, "PAYLOAD_TOO_LARGE"),
])
def test_bodies_that_are_not_a_json_object_get_clear_errors(staff, body, headers, status, code):
    response = staff.post(f"{staff.base_url}/api/v1/patrons", data=body, headers=headers, timeout=30)
    assert_error(response, status, code)


@pytest.mark.parametrize("depth", [33, 100_000])  # past the gateway's limit; past Python's recursion limit
def test_json_nested_too_deep_is_a_400_not_a_500(staff, depth):
    body = '{"name": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
    response = staff.post(f"{staff.base_url}/api/v1/patrons", data=body, timeout=30,
                          headers={"Content-Type": "application/json"})
    assert assert_error(response, 400, "INVALID_JSON")["details"] == {"max_depth": 32}


def test_json_nested_up_to_the_limit_is_read(staff):
    body = '{"name": ' + "[" * 31 + "]" * 31 + "}"
    response = staff.post(f"{staff.base_url}/api/v1/patrons", data=body, timeout=10,
                          headers={"Content-Type": "application/json"})
    assert "name" in assert_error(response, 400, "VALIDATION_ERROR")["details"]


def test_absurd_field_lengths_are_refused_not_truncated(staff):
    response = staff.post(f"{staff.base_url}/api/v1/works", json={"title": "長" * 100_000}, timeout=10)
    assert "title" in assert_error(response, 400, "VALIDATION_ERROR")["details"]
    response = staff.post(f"{staff.base_url}/api/v1/patrons", json=patron_fields(address="住" * 10_000), timeout=10)
    assert "address" in assert_error(response, 400, "VALIDATION_ERROR")["details"]


def test_card_numbers_are_checked_for_their_check_digit(staff):
    patron = register_patron(staff)
    card = patron["card_number"]
    wrong_digit = card[:-1] + str((int(card[-1]) + 1) % 10)
    lookup = staff.get(f"{staff.base_url}/api/v1/patrons", params={"card_number": wrong_digit}, timeout=10)
    assert "card_number" in assert_error(lookup, 400, "VALIDATION_ERROR")["details"]
    _work, item = add_copy(staff)
    assert "card_number" in assert_error(check_out(staff, wrong_digit, item["barcode"]), 400,
                                         "VALIDATION_ERROR")["details"]
    found = staff.get(f"{staff.base_url}/api/v1/patrons", params={"card_number": card}, timeout=10).json()
    assert [entry["id"] for entry in found["items"]] == [patron["id"]]


def test_paths_and_methods_that_do_not_exist(staff):
    assert_error(staff.get(f"{staff.base_url}/api/v1/nothing-here", timeout=10), 404, "ROUTE_NOT_FOUND")
    assert_error(staff.get(f"{staff.base_url}/api/v1/patrons/99999999999999999999", timeout=10), 404, "ROUTE_NOT_FOUND")
    assert_error(staff.get(f"{staff.base_url}/api/v1/patrons/2147483647", timeout=10), 404, "PATRON_NOT_FOUND")
    assert_error(staff.put(f"{staff.base_url}/api/v1/checkouts", json={}, timeout=10), 405, "METHOD_NOT_ALLOWED")


def test_refused_input_changes_nothing(staff):
    patron = register_patron(staff)
    before = staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10).json()
    response = staff.patch(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10,
                           json={"name": "新しい 名前", "phone": "not a phone", "total_uses": 999})
    assert_error(response, 400, "VALIDATION_ERROR")
    assert staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10).json() == before


def test_a_change_of_personal_fields_is_kept(staff):
    patron = register_patron(staff)
    changed = staff.patch(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10,
                          json={"address": "試験県試験市新町9-9", "alt_address": None})
    assert changed.status_code == 200, changed.text
    assert staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10).json()["address"] == "試験県試験市新町9-9"


def test_only_admins_add_libraries(system, staff):
    with system.rpc() as rpc:
        rpc.patrons.ensure_staff_account({"username": "desk-clerk", "password": "a-long-desk-password",
                                          "role": "librarian", "libraries": ["main"]})
    token = requests.post(f"{system.url}/api/v1/auth/token", timeout=10,
                          json={"username": "desk-clerk", "password": "a-long-desk-password"}).json()["access_token"]
    response = requests.post(f"{system.url}/api/v1/libraries", headers={"Authorization": f"Bearer {token}"},
                             json={"code": "west", "name": "西分館", "kind": "branch"}, timeout=10)
    assert_error(response, 403, "FORBIDDEN")
    added = staff.post(f"{staff.base_url}/api/v1/libraries", json={"code": "north", "name": "北分館", "kind": "branch"},
                       timeout=10)
    assert added.status_code == 201, added.text
    assert_error(staff.post(f"{staff.base_url}/api/v1/libraries", timeout=10,
                            json={"code": "north", "name": "北分館", "kind": "branch"}), 409, "LIBRARY_EXISTS")
    assert "kind" in assert_error(staff.post(f"{staff.base_url}/api/v1/libraries", timeout=10,
                                             json={"code": "x", "name": "x", "kind": "bookshop"}),
                                  400, "VALIDATION_ERROR")["details"]


def test_catalogue_input(staff):
    bad_isbn = staff.post(f"{staff.base_url}/api/v1/works", json={"title": "本", "isbn": "978-4-00-000000-1"}, timeout=10)
    assert "isbn" in assert_error(bad_isbn, 400, "VALIDATION_ERROR")["details"]
    work = staff.post(f"{staff.base_url}/api/v1/works", json={"title": "こころ", "isbn": "4-00-310112-X"}, timeout=10)
    assert work.status_code == 201, work.text
    assert work.json()["isbn"] == "9784003101124"
    _work, item = add_copy(staff)
    again = staff.post(f"{staff.base_url}/api/v1/items", timeout=10,
                       json={"barcode": item["barcode"], "work_id": work.json()["id"], "library": "main"})
    assert_error(again, 409, "BARCODE_IN_USE")
    assert_error(staff.post(f"{staff.base_url}/api/v1/items", timeout=10,
                            json={"barcode": "NEW-1", "work_id": 2147483647, "library": "main"}), 404, "WORK_NOT_FOUND")
    assert_error(staff.get(f"{staff.base_url}/api/v1/items/NO-SUCH", timeout=10), 404, "ITEM_NOT_FOUND")
    assert_error(staff.get(f"{staff.base_url}/api/v1/works/2147483647", timeout=10), 404, "WORK_NOT_FOUND")


@pytest.mark.parametrize("query, status", [
    ("", 400), ("%20%20%20", 400), ("x" * 1000, 400),  # nothing to look for, or longer than any title
    ("%25", 200), ("_", 200), ("%5C", 200), ("%27%20OR%201%3D1%20--", 200), ("%F0%9F%93%9A", 200),
    ("%ED%A0%80", 200),  # a lone surrogate, as some clients encode it: read as a replacement character
    ("%FF%FE", 200),  # not UTF-8 at all: likewise
])
def test_odd_search_queries_get_an_answer_or_a_400(system, query, status):
    response = requests.get(f"{system.url}/api/v1/search?q={query}", timeout=10)
    assert response.status_code == status, response.text
    if status == 200:
        assert set(response.json()) == {"items", "total", "more", "page", "per_page", "sort"}
    else:
        assert "q" in response.json()["error"]["details"]


def test_search_takes_metacharacters_literally(staff, system):
    add_copy(staff, title="100%の恋_そして\\")
    add_copy(staff, title="ふつうの本")
    for query in ("%", "_", "\\"):
        hits = requests.get(f"{system.url}/api/v1/search", params={"q": query}, timeout=10).json()["items"]
        assert hits and all(query in hit["title"] for hit in hits)


def test_openapi_lists_every_route(system):
    document = requests.get(f"{system.url}/api/v1/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.")
    for path in ("/api/v1/checkouts", "/api/v1/patrons/{patron_id}", "/api/v1/search", "/health"):
        assert path in document["paths"]
