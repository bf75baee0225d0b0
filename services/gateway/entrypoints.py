"""HTTP for the gateway: nameko's ``@http`` with JSON errors, bearer tokens and body limits.

``route(method, url)`` needs a staff token; ``route(..., public=True)`` needs none; ``roles=`` names the
roles a route admits instead (e.g. patrons for /me). The caller's identity becomes nameko context data, so it travels with every RPC the request makes.

With ``TLS_CERT``/``TLS_KEY`` the server speaks HTTPS only (shiori.tls). A body of at most ``MAX_BODY_BYTES`` is
read before the request takes a worker, within ``HTTP_BODY_TIMEOUT`` seconds: a client that sends slowly holds
its own connection and no worker, and is answered 408 on a connection then closed.
"""
import hashlib
import hmac
import json
import logging
import re
import ssl
import time
import uuid
from functools import partial

import eventlet
from eventlet.event import Event
from eventlet.wsgi import HttpProtocol
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer, WsgiApp
from werkzeug.exceptions import HTTPException, MethodNotAllowed as WerkzeugMethodNotAllowed, NotFound
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Request, Response

from services.gateway import errors
from services.gateway.tokens import RevokedCredentials, TokenIssuer
from shiori.errors import DomainError, Forbidden, InvalidInput, NotAuthenticated
from shiori.roles import PUBLIC, STAFF_ROLES
from shiori.rpc import ContextKeys
from shiori.text import not_text
from shiori.tls import gateway_context

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
# Deeper than any body a route takes; json.loads itself gives up near Python's recursion limit (RecursionError).
MAX_JSON_DEPTH = 32
# Requests that change something, and so may be retried: each is named for shiori.idempotency.
WRITES = ("POST", "PUT", "PATCH", "DELETE")
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
# The WSGI environ's key of a function that has the connection closed after this request's answer.
CLOSE_CONNECTION = "shiori.close_connection"


class GatewayProtocol(HttpProtocol):
    """eventlet's HTTP/1.1 protocol, which also shuts TLS connections down cleanly (nameko's HttpOnlyProtocol
    leaves that out), with a way for the application to close the connection after its answer."""

    def get_environ(self):
        environ = super().get_environ()
        environ[CLOSE_CONNECTION] = self.close_after_answer
        return environ

    def close_after_answer(self):
        # Before the answer's headers are written: eventlet then sends "Connection: close", reads nothing more
        # of the request and closes.
        self.close_connection = 1


class GatewayServer(WebServer):
    revoked = RevokedCredentials()

    def setup(self):
        config = self.container.config
        # The public catalogue gateway serves anonymous requests only, and holds no token secret at all.
        self.public_only = bool(config.get("PUBLIC_ONLY"))
        self.tokens = None if self.public_only else TokenIssuer.from_config(config)
        if self.tokens is not None:  # a key of its own, derived from the token secret, for naming requests
            self.request_names_key = hashlib.sha256(f"idempotency\n{self.tokens.secret}".encode()).digest()
        self.public_tenant = config["PUBLIC_TENANT"]
        self.trusted_proxies = {address.strip() for address in config.get("TRUSTED_PROXIES", "").split(",")
                                if address.strip()}
        self.body_timeout = float(config.get("HTTP_BODY_TIMEOUT", 30))
        self.tls = gateway_context(config)
        super().setup()

    def get_wsgi_app(self):
        return JsonErrorsWsgiApp(self)

    def get_wsgi_server(self, sock, wsgi_app, **kwargs):
        server = super().get_wsgi_server(sock, wsgi_app, protocol=GatewayProtocol, **kwargs)
        # eventlet's access log prints query strings, which carry card numbers: Route logs requests instead.
        server.log_output = False
        if self.tls:  # eventlet looks for TLS on the listening socket, which stays plain: each connection is wrapped
            server.environ = {"wsgi.url_scheme": "https", "HTTPS": "on"}
        return server

    def process_request(self, sock, address):
        if self.tls:
            sock = self.handshake(sock, address)
            if sock is None:
                return
        super().process_request(sock, address)

    def handshake(self, sock, address):
        """The connection over TLS, or None (closed) when the client does not complete a TLS handshake within
        HTTP_BODY_TIMEOUT: plain HTTP, a bad or no ClientHello. It runs in the connection's own green thread,
        so a slow handshake holds nobody else's."""
        try:
            with eventlet.Timeout(self.body_timeout):
                connection = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                connection.do_handshake()
            return connection
        except (eventlet.Timeout, ssl.SSLError, OSError) as error:
            log.debug("no TLS handshake from %s: %s", address[0], type(error).__name__)
            sock.close()
            return None

    def identify(self, request, token, public, roles, route):
        """The nameko context data for a request with the bearer ``token`` (None without one), or
        NotAuthenticated/Forbidden. A route that is not public admits staff roles unless it names its own."""
        where = {"address": self.client_address(request), "route": route}
        if token is None or self.public_only:
            if public:
                return {"tenant": self.public_tenant, "actor": "public", "role": PUBLIC, **where}
            raise NotAuthenticated()
        claims = self.tokens.verify(token)
        if self.revoked.refuses(claims):
            raise NotAuthenticated("the access token has been revoked: log in again")
        allowed = roles or (() if public else STAFF_ROLES)
        if allowed and claims["role"] not in allowed:
            raise Forbidden(details={"allowed_roles": list(allowed)})
        return {"tenant": claims["tenant"], "actor": claims["sub"], "role": claims["role"],
                "libraries": ",".join(claims.get("libraries") or []), **where}

    def name_request(self, request, identity, whole_body):
        """A write's ``idempotency_key`` (shiori.idempotency): the client's ``Idempotency-Key`` for this tenant
        and caller, with the ``request_digest`` of what the request asks (a streamed body, an import's, is named
        by its batches instead); or, without one, a key of the gateway's own. Both are keyed hashes: a stored
        record says nothing of the caller, the card or the copy to whoever reads the service's database alone."""
        client_key = request.headers.get(IDEMPOTENCY_HEADER, self.form_key(request))
        if client_key is None:  # only a message delivered twice can repeat this request
            return {"idempotency_key": uuid.uuid4().hex}
        if not IDEMPOTENCY_KEY.fullmatch(client_key):
            raise InvalidInput(details={IDEMPOTENCY_HEADER: ["1 to 255 visible ASCII characters"]})
        body = request.get_data() if whole_body else b""
        return {"idempotency_key": self.keyed_hash(identity["tenant"], identity["actor"], client_key),
                "request_digest": self.keyed_hash(request.method, request.path, request.query_string,
                                                  request.mimetype, body)}

    @staticmethod
    def form_key(request):
        """The key a web page's form carries (``request_key``, services/gateway/pages.py)."""
        if request.mimetype == "application/x-www-form-urlencoded":
            return request.form.get("request_key")
        return None

    def keyed_hash(self, *parts):
        mac = hmac.new(self.request_names_key, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(part if isinstance(part, bytes) else str(part).encode())
            mac.update(b"\0")
        return mac.hexdigest()

    def client_address(self, request):
        """The client's address: the peer's, or, when the peer is a proxy of this deployment's own (the OPAC, which
        calls this gateway for a signed-in resident), the address that proxy says it serves. Log-in throttling
        counts by it: one resident's wrong PINs must not block the OPAC for everyone."""
        peer = request.remote_addr or "unknown"
        forwarded = request.headers.get("X-Forwarded-For", "").rpartition(",")[2].strip()
        return forwarded if forwarded and peer in self.trusted_proxies else peer


class JsonErrorsWsgiApp(WsgiApp):
    """Unknown routes and wrong methods answer in the API's error shape, not werkzeug's HTML; on a gateway
    with web pages, an unknown path outside /api/ answers the pages' own "not found" page."""

    def __call__(self, environ, start_response):
        request = Request(environ, shallow=True)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, request.path_values = adapter.match()
        except RequestRedirect as redirect:
            return redirect(environ, start_response)
        except HTTPException as exc:
            pages = next((route for route in self.server._providers if not route.in_api), None)
            if isinstance(exc, NotFound) and pages is not None and not request.path.startswith("/api/"):
                return pages.response_from_exception(errors.RouteNotFound(), request)(environ, start_response)
            return http_error(exc)(environ, start_response)
        return provider.handle_request(request)(environ, start_response)


def http_error(exc):
    if isinstance(exc, NotFound):
        return errors.error_response(errors.RouteNotFound())
    if isinstance(exc, WerkzeugMethodNotAllowed):
        allowed = sorted(exc.valid_methods or [])
        return errors.error_response(errors.MethodNotAllowed(details={"allowed": allowed}),
                                     headers={"Allow": ", ".join(allowed)})  # RFC 9110: a 405 names them
    if isinstance(exc, RequestEntityTooLarge):
        return errors.error_response(errors.PayloadTooLarge())
    return errors.error_response(errors.InternalError(exc.description))


class Route(HttpRequestHandler):
    in_api = True  # described by /api/v1/openapi.json
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
            identity = self.server.identify(
                request, self.credentials(request), self.public, self.roles, f"{request.method} {self.url}")
            self.read_body_in_time(request)
            if request.method in WRITES and self.server.tokens is not None:
                identity.update(self.server.name_request(request, identity, whole_body=self.reads_body_whole(request)))
            context_data = self.context_keys.sign(identity)
            args, kwargs = self.get_entrypoint_parameters(request)
            self.check_signature(args, kwargs)
            event = Event()
            self.container.spawn_worker(
                self, args, kwargs, context_data=context_data, handle_result=partial(self.handle_result, event)
            )
            return self.response_from_result(event.wait(), request)
        except Exception as exc:  # every failure leaves as the API's error shape
            return self.response_from_exception(exc, request)

    def credentials(self, request):
        """The request's bearer token, or None without an Authorization header (or on the OPAC)."""
        header = request.headers.get("Authorization", "")
        if not header or self.server.public_only:  # the OPAC serves the public alone, whatever a client sends
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("use an Authorization: Bearer <token> header")
        return token.strip()

    def read_body_in_time(self, request):
        """Read a body this route takes whole (at most MAX_BODY_BYTES) here, in the connection's own green
        thread, within HTTP_BODY_TIMEOUT; larger ones (an import) stream to the worker. A body over the limit
        is left unread: read_json refuses it (413)."""
        if not self.reads_body_whole(request):
            return
        seconds = self.server.body_timeout
        try:
            with eventlet.Timeout(seconds):
                request.get_data()  # kept for read_json
        except eventlet.Timeout:
            request.environ[CLOSE_CONNECTION]()  # the rest of the body may never come
            raise errors.RequestTimeout(details={"seconds": seconds}) from None

    def reads_body_whole(self, request):
        return request.max_content_length <= int(self.container.config.get("MAX_BODY_BYTES", 1 << 20)) and \
            (request.content_length or 0) <= request.max_content_length

    def get_entrypoint_parameters(self, request):
        args, kwargs = super().get_entrypoint_parameters(request)
        if any(isinstance(value, int) and not 1 <= value <= MAX_ID for value in kwargs.values()):
            raise errors.RouteNotFound("no such record")  # no key outside the 32-bit range exists
        refuse_what_is_not_text({**kwargs, **request.args.to_dict()})
        return args, kwargs

    def response_from_result(self, result, request):
        if isinstance(result, Response):
            return result
        status, payload = result if isinstance(result, tuple) else (200, result)
        return errors.json_response(status, payload)

    def response_from_exception(self, exc, request):
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
    except RecursionError:
        raise nested_too_deep() from None
    if not isinstance(body, dict):
        raise errors.InvalidJson("the body must be a JSON object")
    if nests_deeper_than(body, MAX_JSON_DEPTH):
        raise nested_too_deep()
    refuse_what_is_not_text(body)
    return body


def refuse_what_is_not_text(values):
    """InvalidInput naming each of ``values`` (a JSON object, or a request's path and query values) that holds what
    is not text (shiori.text): no service could store it, and no answer could carry it."""
    refused = sorted(str(name).encode("unicode_escape").decode("ascii") if not_text(name) else str(name)
                     for name, value in values.items() if not_text(name) or not_text(value))
    if refused:
        raise InvalidInput(details={name: ["holds a NUL character or a lone surrogate, which is not text"]
                                    for name in refused})


def nested_too_deep():
    return errors.InvalidJson(f"the body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels",
                              details={"max_depth": MAX_JSON_DEPTH})


def nests_deeper_than(value, limit):
    """Whether arrays and objects nest in ``value`` deeper than ``limit`` levels (checked without recursion)."""
    pending = [(value, 1)]
    while pending:
        value, depth = pending.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                pending.append((child, depth + 1))
    return False
