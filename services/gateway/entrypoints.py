"""HTTP for the gateway: nameko's ``@http`` with JSON errors, bearer tokens and body limits.

``route(method, url)`` needs a staff token; ``route(..., public=True)`` needs none; ``roles=`` names the
roles a route admits instead (e.g. patrons for /me). The caller's identity becomes nameko context data, so it travels with every RPC the request makes.
"""
import json
import logging
import time
from functools import partial

from eventlet.event import Event
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer, WsgiApp
from werkzeug.exceptions import HTTPException, MethodNotAllowed as WerkzeugMethodNotAllowed, NotFound
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Request, Response

from services.gateway import errors
from services.gateway.tokens import RevokedCredentials, TokenIssuer
from shiori.errors import DomainError, Forbidden, NotAuthenticated
from shiori.roles import PUBLIC, STAFF_ROLES
from shiori.rpc import ContextKeys

log = logging.getLogger(__name__)
# One line per request with the route's pattern, never the path or query (they can hold ids and card numbers).
access_log = logging.getLogger("shiori.access")
# Refused credentials and roles, for whoever watches the service: route and address, never a token or name.
security_log = logging.getLogger("shiori.security")
REFUSALS = ("NOT_AUTHENTICATED", "INVALID_CREDENTIALS", "FORBIDDEN", "TOO_MANY_ATTEMPTS")

# Path parameters for database ids. Their range is checked in Route rather than by werkzeug's converter,
# whose range failures answer 404 or 405 depending on the order of the rules.
ID = "int"
MAX_ID = 2**31 - 1


class GatewayServer(WebServer):
    revoked = RevokedCredentials()

    def setup(self):
        config = self.container.config
        # The public catalogue gateway serves anonymous requests only, and holds no token secret at all.
        self.public_only = bool(config.get("PUBLIC_ONLY"))
        self.tokens = None if self.public_only else TokenIssuer.from_config(config)
        self.public_tenant = config["PUBLIC_TENANT"]
        super().setup()

    def get_wsgi_app(self):
        return JsonErrorsWsgiApp(self)

    def get_wsgi_server(self, sock, wsgi_app, **kwargs):
        server = super().get_wsgi_server(sock, wsgi_app, **kwargs)
        # eventlet's access log prints query strings, which carry card numbers: Route logs requests instead.
        server.log_output = False
        return server

    def identify(self, request, public, roles, route):
        """The nameko context data for this request, or NotAuthenticated/Forbidden. A route that is not
        public admits staff roles unless it names its own."""
        where = {"address": request.remote_addr or "unknown", "route": route}
        header = request.headers.get("Authorization", "")
        if not header or self.public_only:
            if public:
                return {"tenant": self.public_tenant, "actor": "public", "role": PUBLIC, **where}
            raise NotAuthenticated()
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("use an Authorization: Bearer <token> header")
        claims = self.tokens.verify(token.strip())
        if self.revoked.refuses(claims):
            raise NotAuthenticated("the access token has been revoked: log in again")
        allowed = roles or (() if public else STAFF_ROLES)
        if allowed and claims["role"] not in allowed:
            raise Forbidden(details={"allowed_roles": list(allowed)})
        return {"tenant": claims["tenant"], "actor": claims["sub"], "role": claims["role"],
                "libraries": ",".join(claims.get("libraries") or []), **where}


class JsonErrorsWsgiApp(WsgiApp):
    """Unknown routes and wrong methods answer in the API's error shape, not werkzeug's HTML."""

    def __call__(self, environ, start_response):
        request = Request(environ, shallow=True)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, request.path_values = adapter.match()
        except RequestRedirect as redirect:
            return redirect(environ, start_response)
        except HTTPException as exc:
            return http_error(exc)(environ, start_response)
        return provider.handle_request(request)(environ, start_response)


def http_error(exc):
    if isinstance(exc, NotFound):
        return errors.error_response(errors.RouteNotFound())
    if isinstance(exc, WerkzeugMethodNotAllowed):
        return errors.error_response(errors.MethodNotAllowed(details={"allowed": sorted(exc.valid_methods or [])}))
    if isinstance(exc, RequestEntityTooLarge):
        return errors.error_response(errors.PayloadTooLarge())
    return errors.error_response(errors.InternalError(exc.description))


class Route(HttpRequestHandler):
    server = GatewayServer()
    context_keys = ContextKeys()  # the staff gateway signs who is calling; the OPAC has no key and calls anonymously

    def __init__(self, method, url, public=False, roles=(), body_limit="MAX_BODY_BYTES", **kwargs):
        self.public = public
        self.roles = tuple(roles)
        self.body_limit = body_limit  # the configuration key of the largest body this route reads
        kwargs.setdefault("expected_exceptions", DomainError)  # refusals are answers, not errors to log loudly
        super().__init__(method, url, **kwargs)

    def handle_request(self, request):
        started = time.monotonic()
        response = self._respond(request)
        access_log.info("%s %s %s %.1fms", request.method, self.url, response.status_code,
                        (time.monotonic() - started) * 1000)
        if response.status_code in (401, 403, 429) and response.is_json:
            code = response.get_json()["error"]["code"]
            if code in REFUSALS:
                security_log.warning("refused %s: %s %s from %s", code, request.method, self.url, request.remote_addr)
        return response

    def _respond(self, request):
        request.shallow = False
        request.max_content_length = int(self.container.config.get(self.body_limit, 1 << 20))
        try:
            context_data = self.context_keys.sign(
                self.server.identify(request, self.public, self.roles, f"{request.method} {self.url}"))
            args, kwargs = self.get_entrypoint_parameters(request)
            self.check_signature(args, kwargs)
            event = Event()
            self.container.spawn_worker(
                self, args, kwargs, context_data=context_data, handle_result=partial(self.handle_result, event)
            )
            return self.response_from_result(event.wait())
        except Exception as exc:  # every failure leaves as the API's error shape
            return self.response_from_exception(exc)

    def get_entrypoint_parameters(self, request):
        args, kwargs = super().get_entrypoint_parameters(request)
        if any(isinstance(value, int) and not 1 <= value <= MAX_ID for value in kwargs.values()):
            raise errors.RouteNotFound("no such record")  # no key outside the 32-bit range exists
        return args, kwargs

    def response_from_result(self, result):
        if isinstance(result, Response):
            return result
        status, payload = result if isinstance(result, tuple) else (200, result)
        return errors.json_response(status, payload)

    def response_from_exception(self, exc):
        if isinstance(exc, DomainError):
            return errors.error_response(exc)
        if isinstance(exc, HTTPException):
            return http_error(exc)
        log.error("unexpected %s in %s %s", type(exc).__name__, self.method, self.url, exc_info=exc)
        return errors.error_response(errors.InternalError())


route = Route.decorator


def read_json(request):
    """The request body as a JSON object, or the reason it is not one."""
    if request.mimetype != "application/json":
        raise errors.UnsupportedMediaType(details={"content_type": request.mimetype or None})
    if request.content_length is not None and request.content_length > request.max_content_length:
        raise errors.PayloadTooLarge(details={"max_bytes": request.max_content_length})
    raw = request.get_data(cache=False)
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise errors.InvalidJson("the body is not valid UTF-8") from None
    except json.JSONDecodeError as error:
        raise errors.InvalidJson(f"the body is not valid JSON: {error.msg} at line {error.lineno}") from None
    if not isinstance(body, dict):
        raise errors.InvalidJson("the body must be a JSON object")
    return body
