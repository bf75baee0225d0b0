"""The public catalogue (OPAC) runs as its own gateway process that can reach the catalogue and nothing else."""
import requests

from services.opac.service import OpacService
from shiori.rpc import ServiceRpc
from support import add_copy, patron_fields


def test_the_opac_serves_the_catalogue(system, staff):
    work, _item = add_copy(staff, title="公開目録の本")
    hits = requests.get(f"{system.opac_url}/api/v1/search", params={"q": "公開目録"}, timeout=10).json()
    assert [hit["id"] for hit in hits["items"]] == [work["id"]]
    record = requests.get(f"{system.opac_url}/api/v1/works/{work['id']}", timeout=10).json()
    assert record["availability"][0]["total"] == 1
    libraries = requests.get(f"{system.opac_url}/api/v1/libraries", timeout=10).json()
    assert {library["code"] for library in libraries["items"]} >= {"main", "east"}
    health = requests.get(f"{system.opac_url}/health", timeout=10).json()
    assert (health["status"], health["services"], set(health["outbox"])) == ("ok", {"catalog": "ok"}, {"catalog"})
    paths = requests.get(f"{system.opac_url}/api/v1/openapi.json", timeout=10).json()["paths"]
    assert set(paths) == {"/health", "/api/v1/openapi.json", "/api/v1/libraries", "/api/v1/search",
                          "/api/v1/works/{work_id}"}


def test_the_opac_has_no_way_to_personal_data(system, staff):
    token = staff.headers["Authorization"]
    for method, path, body in [("POST", "/api/v1/auth/token", {"username": "test-admin", "password": "x"}),
                               ("POST", "/api/v1/patrons", patron_fields()),
                               ("GET", "/api/v1/patrons/1", None), ("GET", "/api/v1/patrons?card_number=1", None),
                               ("POST", "/api/v1/checkouts", {}), ("POST", "/api/v1/checkins", {}),
                               ("GET", "/api/v1/items/K1", None)]:
        response = requests.request(method, f"{system.opac_url}{path}", json=body,
                                    headers={"Authorization": token}, timeout=10)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "ROUTE_NOT_FOUND"
    proxies = {attribute.target_service for attribute in vars(OpacService).values()
               if isinstance(attribute, ServiceRpc)}
    assert proxies == {"catalog"}
