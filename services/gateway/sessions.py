"""Signed-in web sessions for the pages that need a log-in: the residents' "my page" on the OPAC and the circulation
desk on the staff gateway.

The session is the cookie, and nothing is kept on the server: the bearer token the log-in gave, when the session
began and when it was last used, signed with the gateway's own session key (``SESSION_KEY``, not the token
secret: the OPAC holds no token secret). The cookie is HttpOnly, SameSite=Strict, and Secure when the page is
served over HTTPS. A session unused for ``SESSION_IDLE_SECONDS`` has ended, whatever its token says; the token's
own lifetime bounds it too.

Forms that change something carry a CSRF token derived from the session's token with the session key, which a
page of another site cannot read; every form sent to a page route must also come from this site's own pages
(``Origin``), which covers the log-in form too, sent before there is a session."""
import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

from nameko.extensions import SharedExtension

from shiori.clock import token_time

COOKIE = "shiori_session"
MIN_KEY_LENGTH = 32


@dataclass(frozen=True)
class WebSession:
    token: str  # the bearer token the log-in gave
    started: float  # POSIX seconds
    csrf: str
    values: dict  # what the pages keep for the session (the desk's library), never personal data


class Sessions(SharedExtension):
    """Reads, renews and ends the sessions of one gateway process."""

    def setup(self):
        config = self.container.config
        self.key = (config.get("SESSION_KEY") or "").encode()
        self.idle_seconds = int(config.get("SESSION_IDLE_SECONDS", 900))
        if len(self.key) < MIN_KEY_LENGTH:
            raise ValueError(f"the gateway's SESSION_KEY must be set, at least {MIN_KEY_LENGTH} characters")

    def read(self, request):
        """The request's session, or None: no cookie, a cookie not signed here, or a session idle too long."""
        value = request.cookies.get(COOKIE, "")
        body, _, signature = value.partition(".")
        if not body or not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            held = json.loads(base64.urlsafe_b64decode(body.encode()))
        except ValueError:
            return None
        if token_time().timestamp() - held["seen"] > self.idle_seconds:
            return None
        return WebSession(held["token"], held["started"], self._csrf(held["token"]), held.get("values", {}))

    def keep(self, response, request, token, started=None, values=None):
        """Set (or renew: used now) the session of ``token`` on the response."""
        now = token_time().timestamp()
        body = base64.urlsafe_b64encode(json.dumps({
            "token": token, "started": now if started is None else started, "seen": now, "values": values or {},
        }).encode()).decode()
        response.set_cookie(COOKIE, f"{body}.{self._sign(body)}", httponly=True, samesite="Strict",
                            secure=request.scheme == "https", path="/")

    def end(self, response, request):
        response.delete_cookie(COOKIE, httponly=True, samesite="Strict", secure=request.scheme == "https", path="/")

    def _sign(self, body):
        return hmac.new(self.key, b"session:" + body.encode(), hashlib.sha256).hexdigest()

    def _csrf(self, token):
        return hmac.new(self.key, b"csrf:" + token.encode(), hashlib.sha256).hexdigest()[:40]
