"""Bad input to the circulation routes added with loan rules, holds, notices and statistics: each answers in
the API's error shape, with the status its code has in the gateway's table, and changes nothing."""
import pytest

from support import register_patron

UNKNOWN = 999999999


@pytest.mark.parametrize("method, path, body, status, code", [
    ("PATCH", "/loan-policies/{policy}", {"loan_days": 0}, 400, "VALIDATION_ERROR"),
    ("PATCH", "/loan-policies/{policy}", {"scope": "x"}, 400, "VALIDATION_ERROR"),
    ("PATCH", f"/loan-policies/{UNKNOWN}", {"loan_days": 7}, 404, "LOAN_POLICY_NOT_FOUND"),
    ("GET", "/libraries/nowhere/calendar", None, 404, "LIBRARY_NOT_FOUND"),
    ("GET", "/libraries/nowhere/hold-shelf", None, 404, "LIBRARY_NOT_FOUND"),
    ("POST", f"/patrons/{UNKNOWN}/card-renewal", None, 404, "PATRON_NOT_FOUND"),
    ("POST", f"/patrons/{UNKNOWN}/lost-card", None, 404, "PATRON_NOT_FOUND"),
    ("PUT", f"/patrons/{UNKNOWN}/status", {"status": "active"}, 404, "PATRON_NOT_FOUND"),
    ("PUT", "/patrons/{patron}/status", {}, 400, "VALIDATION_ERROR"),
    ("GET", f"/patrons/{UNKNOWN}/holds", None, 404, "PATRON_NOT_FOUND"),
    ("POST", "/holds", [1, 2], 400, "INVALID_JSON"),
    ("PUT", "/circulation-settings", "today", 400, "INVALID_JSON"),
    ("POST", "/closures", {"first": "2026-13-01", "last": "2026-12-01", "libraries": ["main"]}, 400,
     "VALIDATION_ERROR"),
    ("GET", "/statistics/checkouts.png?from=2026-11-30&to=2026-11-01", None, 400, "VALIDATION_ERROR"),
    ("GET", "/statistics/checkouts.png", None, 400, "VALIDATION_ERROR"),
    ("PUT", "/notice-settings", {"include_titles": True, "templates": {"overdue": "期限です"}}, 400,
     "VALIDATION_ERROR"),
    ("DELETE", f"/notices/{UNKNOWN}", None, 404, "NOTICE_NOT_FOUND"),
    ("POST", "/loans/0/renew", None, 404, "ROUTE_NOT_FOUND"),
])
def test_bad_input_gets_the_error_shape(staff, method, path, body, status, code):
    policy = staff.post(f"{staff.base_url}/api/v1/loan-policies", timeout=10, json={
        "patron_category": "student", "item_type": "av", "loan_days": 7, "max_items": 5, "renewals": 0,
        "max_holds": 3})
    assert policy.status_code == 201, policy.text
    patron = register_patron(staff)
    try:
        url = f"{staff.base_url}/api/v1{path}".format(policy=policy.json()["id"], patron=patron["id"])
        response = staff.request(method, url, json=body, timeout=30)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code and error["message"] and isinstance(error["details"], dict)
        assert staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10).json()["status"] == "active"
        rules = staff.get(f"{staff.base_url}/api/v1/loan-policies", timeout=10).json()["policies"]
        assert [rule for rule in rules if rule["id"] == policy.json()["id"]] == [policy.json()]
    finally:
        staff.delete(f"{staff.base_url}/api/v1/loan-policies/{policy.json()['id']}", timeout=10)
