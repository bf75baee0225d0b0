"""The staff gateway's API, as the OPAC's pages call it for a signed-in resident.

The OPAC has no broker route to the patrons or loans services and holds no token secret: a resident's "my page"
is a client of the same HTTP API as any other, with the resident's own bearer token (kept in their session
cookie), so the same roles, throttles and access record hold. The resident's address goes along in
X-Forwarded-For, which the gateway believes of its trusted proxies alone (``TRUSTED_PROXIES``)."""
import requests
from nameko.extensions import DependencyProvider

from services.gateway.errors import error_from_answer
from shiori.errors import ServiceUnavailable


class ResidentApi:
    def __init__(self, http, base_url, verify, timeout, token, client_address):
        self.http, self.base_url, self.verify, self.timeout = http, base_url, verify, timeout
        self.token, self.client_address = token, client_address

    def as_resident(self, token):
        """The same API, called with a resident's token (once they have logged in)."""
        return ResidentApi(self.http, self.base_url, self.verify, self.timeout, token, self.client_address)

    def get(self, path, **params):
        return self.call("GET", path, params=params)

    def post(self, path, body=None):
        return self.call("POST", path, body=body if body is not None else {})

    def call(self, method, path, body=None, params=None):
        """The answer's JSON (None for 204), or the domain error an error answer stands for."""
        headers = {"X-Forwarded-For": self.client_address}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            answer = self.http.request(method, self.base_url + path, json=body, params=params, headers=headers,
                                       timeout=self.timeout, verify=self.verify, allow_redirects=False)
        except requests.RequestException as error:
            raise ServiceUnavailable(f"the library's API did not answer ({type(error).__name__})") from None
        if answer.status_code == 204:
            return None
        try:
            payload = answer.json()
        except ValueError:
            raise ServiceUnavailable(f"the library's API answered {answer.status_code} without JSON") from None
        if answer.status_code >= 400:
            raise error_from_answer(payload)
        return payload


class GatewayApi(DependencyProvider):
    """A worker's ``ResidentApi``, anonymous until a page gives it a token; one connection pool per process."""

    def setup(self):
        config = self.container.config
        self.base_url = config["API_URL"].rstrip("/")
        self.verify = config.get("API_CA") or True
        self.timeout = float(config.get("RPC_TIMEOUT", 5))
        self.http = requests.Session()

    def stop(self):
        self.http.close()

    def get_dependency(self, worker_ctx):
        address = worker_ctx.data.get("address", "unknown")
        return ResidentApi(self.http, self.base_url, self.verify, self.timeout, None, address)
