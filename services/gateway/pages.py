"""Web pages on the gateways. A page route (``page(url)``) is a route whose method answers a ``Page``: a template
of the service's own folder (``templates/``) and what it shows. The route renders it in the visitor's language
and answers HTML with the headers every page carries; a domain error becomes an error page with the status the
API gives it (the one table, services/gateway/errors.py).

Words are in message catalogues, gettext ``.po`` files under the service's ``locale/<language>/LC_MESSAGES/``,
read with Babel when the service starts: a translator adds a language (Portuguese, やさしい日本語) by adding a
file, without code. The message ids are English; Japanese is the default language. A visitor's language is in
the URL (``?lang=en``), so that an anonymous visitor needs no cookie.

A page that needs a log-in names its log-in page (``page(url, login="/login")``): a visitor without a session
(services/gateway/sessions.py) is sent there, and back after. A page method answers a ``Redirect`` to begin a
session (``signed_in=token``), to end one, or after a form has done its work (post, redirect, get). Every form a
page route takes must come from this site, and a signed-in visitor's must carry the session's CSRF token."""
import hmac
import io
import mimetypes
import re
import sys
import uuid
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined
from nameko.extensions import SharedExtension
from werkzeug.wrappers import Response

from services.gateway import errors
from services.gateway.entrypoints import Route
from services.gateway.sessions import Sessions
from shiori.clock import token_time
from shiori.errors import Forbidden, NotAuthenticated

DEFAULT_LANGUAGE = "ja"
SOURCE_LANGUAGE = "en"  # the message ids' own
# Every page: nothing from elsewhere, no inline script or style, no Referer (search terms would leave in it),
# not framed.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
STATIC_NAME = re.compile(r"[a-z0-9-]+\.(css|js|svg|png)")
SHARED_FOLDER = Path(__file__).parent
SESSION = "shiori.session"  # the WSGI environ's key of the request's WebSession, or None
# Where a browser says a request comes from (Fetch metadata), when it is not this site's own pages.
FOREIGN_SITES = ("cross-site", "same-site")


@dataclass
class Page:
    template: str
    values: dict = field(default_factory=dict)
    status: int = 200


@dataclass
class Redirect:
    """To ``location`` (303: the browser asks for it with GET), beginning a session with the token ``signed_in``,
    or ending the visitor's session (``signed_out``)."""
    location: str  # a path of this site, which may have a query; the visitor's language is added
    params: dict = field(default_factory=dict)
    signed_in: str | None = None
    signed_out: bool = False
    session_values: dict | None = None  # kept with the session begun (or the visitor's, changed)


@dataclass
class StaticFile:
    name: str  # in the service's static/ folder


class Site(SharedExtension):
    """A service's templates and message catalogues, one Jinja2 environment per language. Under them are the
    gateway's own (services/gateway/templates and locale), which every site shares: the words for refusals, say,
    are written once for the residents' pages and the desk alike."""

    def setup(self):
        own = Path(sys.modules[self.container.service_cls.__module__].__file__).parent
        self.folder = own
        self.folders = list(dict.fromkeys([own, SHARED_FOLDER]))  # the service's own first
        self.environments = {language: self._environment(translations)
                             for language, translations in self._catalogues().items()}

    def _catalogues(self):
        catalogues = {SOURCE_LANGUAGE: Translations()}
        for folder in reversed(self.folders):  # the service's own words last, over the shared ones
            for po_file in sorted((folder / "locale").glob("*/LC_MESSAGES/messages.po")):
                language, compiled = po_file.parent.parent.name, _compiled(po_file)
                if language in catalogues:
                    catalogues[language].merge(compiled)
                else:
                    catalogues[language] = compiled
        return catalogues

    def _environment(self, translations):
        loader = ChoiceLoader([FileSystemLoader(folder / "templates") for folder in self.folders])
        environment = Environment(loader=loader, autoescape=True,
                                  undefined=StrictUndefined, extensions=["jinja2.ext.i18n"])
        environment.install_gettext_translations(translations, newstyle=True)
        return environment

    @property
    def languages(self):
        return sorted(self.environments)

    def language_of(self, request):
        asked = request.args.get("lang", DEFAULT_LANGUAGE)
        return asked if asked in self.environments else DEFAULT_LANGUAGE

    def link_for(self, request, path, **params):
        """``path`` with ``params`` and the visitor's language (left out when it is the default)."""
        query = {name: value for name, value in params.items() if value not in (None, "")}
        language = self.language_of(request)
        if language != DEFAULT_LANGUAGE:
            query["lang"] = language
        return path + ("?" + urlencode(query) if query else "")

    def render(self, request, page):
        language = self.language_of(request)

        def in_language(other):
            """This very page in another language."""
            query = {name: value for name, value in request.args.items() if name != "lang"}
            if other != DEFAULT_LANGUAGE:
                query["lang"] = other
            return request.path + ("?" + urlencode(query) if query else "")

        session = request.environ.get(SESSION)
        html = self.environments[language].get_template(page.template).render(
            lang=language, languages=self.languages, link=partial(self.link_for, request), in_language=in_language,
            signed_in=session is not None, csrf=session.csrf if session else "", request_key=new_request_key,
            **page.values)
        return html_response(page.status, html)

    def static_file(self, name):
        """A file of the service's ``static/`` folder, or a 404 page's error for any other name."""
        path = self.folder / "static" / name
        if not STATIC_NAME.fullmatch(name) or not path.is_file():
            raise errors.RouteNotFound(details={"file": name})
        response = Response(path.read_bytes(), mimetype=mimetypes.guess_type(name)[0])
        response.headers.update(PAGE_HEADERS)
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response


def _compiled(po_file):
    with po_file.open("rb") as source:
        catalogue = read_po(source)
    compiled = io.BytesIO()
    write_mo(compiled, catalogue)
    compiled.seek(0)
    return Translations(fp=compiled)


def new_request_key():
    """A form's own ``request_key``: a form sent twice (Enter pressed twice, a reload that posts again) is one
    request (the gateway names it by this key, shiori.idempotency), and another form is another."""
    return uuid.uuid4().hex


def html_response(status, html):
    response = Response(html, status=status, mimetype="text/html")
    response.headers.update(PAGE_HEADERS)
    return response


class PageRoute(Route):
    """A public route answering a ``Page``, a ``Redirect`` or a ``StaticFile``; with ``login``, only for a visitor
    with a session (others are sent to that log-in page)."""

    in_api = False
    site = Site()
    sessions = Sessions()

    def __init__(self, url, method="GET", login=None, **kwargs):
        kwargs.setdefault("public", True)
        self.login = login
        super().__init__(method, url, **kwargs)

    def credentials(self, request):
        """The token of the visitor's session (None without one), once the request is known to be one this
        route takes: a form from this site, with the session's CSRF token."""
        session = request.environ[SESSION] = self.sessions.read(request)
        if request.method == "POST":
            self.check_form_source(request, session)
        if session is None and self.login:
            raise NotAuthenticated("log in first")
        if session is not None and self.server.tokens is not None:
            session = request.environ[SESSION] = self.renewed(session)
        return session.token if session else None

    def renewed(self, session):
        """On the gateway that issues tokens: a session in use keeps a fresh token (the desk is open all day, its
        token lasts an hour), until ``SESSION_MAX_SECONDS`` after its log-in; never one whose token was revoked."""
        tokens = self.server.tokens
        claims = tokens.verify(session.token)
        age = token_time().timestamp() - claims["iat"]
        if self.server.revoked.refuses(claims) or age < tokens.lifetime_seconds / 2:
            return session
        if token_time().timestamp() - session.started > int(self.container.config.get("SESSION_MAX_SECONDS", 43200)):
            raise NotAuthenticated("the session has ended: log in again")
        return replace(session, token=tokens.issue_like(claims))

    def check_form_source(self, request, session):
        self.read_body_in_time(request)
        fetched_from = request.headers.get("Sec-Fetch-Site")
        origin = request.headers.get("Origin")
        # With Referrer-Policy: no-referrer a browser's form sends "Origin: null"; Sec-Fetch-Site tells then.
        if fetched_from in FOREIGN_SITES or (origin not in (None, "null") and origin != request.host_url.rstrip("/")):
            raise Forbidden("this form may only be sent from this site's own pages")
        if session is not None and not hmac.compare_digest(request.form.get("csrf", ""), session.csrf):
            raise Forbidden("the form has expired: load the page again")

    def response_from_result(self, result, request):
        if isinstance(result, Page):
            return self.with_session(self.site.render(request, result), request)
        if isinstance(result, Redirect):
            path, _, query = result.location.partition("?")
            location = self.site.link_for(request, path, **{**dict(parse_qsl(query)), **result.params})
            return self.with_session(redirect_response(location), request, result)
        if isinstance(result, StaticFile):
            return self.site.static_file(result.name)
        return super().response_from_result(result, request)

    def with_session(self, response, request, redirect=None):
        """The response, renewing the visitor's session (used now), or beginning or ending one."""
        session = request.environ.get(SESSION)
        if redirect is not None and redirect.signed_in:
            self.sessions.keep(response, request, redirect.signed_in, values=redirect.session_values)
        elif redirect is not None and redirect.signed_out:
            self.sessions.end(response, request)
        elif session is not None:
            values = redirect.session_values if redirect is not None and redirect.session_values is not None \
                else session.values
            self.sessions.keep(response, request, session.token, session.started, values)
        if session is not None or (redirect is not None and redirect.signed_in):
            # A signed-in page shows a patron's record or loans: the browser keeps no copy of it (a desk's
            # computer is shared, a resident's may be).
            response.headers["Cache-Control"] = "no-store"
        return response

    def response_from_exception(self, exc, request):
        """Sent to log in when the page needs a session and has none (or its token has ended); otherwise the API's
        answer to the failure (its status from the one table, the unexpected logged) as a page."""
        if isinstance(exc, NotAuthenticated) and self.login:
            response = redirect_response(self.site.link_for(request, self.login, next=local_path(request)))
            if request.environ.get(SESSION) is not None:
                self.sessions.end(response, request)
            return response
        answer = super().response_from_exception(exc, request)
        code = answer.get_json()["error"]["code"]
        # A page the visitor's role may not open, rather than a form that came from elsewhere or expired.
        for_other_roles = isinstance(exc, Forbidden) and "allowed_roles" in exc.details
        return self.site.render(request, Page("error.html", {"status": answer.status_code, "code": code,
                                                             "for_other_roles": for_other_roles},
                                              answer.status_code))


def redirect_response(location):
    response = Response(status=303, headers={"Location": location})
    response.headers.update(PAGE_HEADERS)
    return response


def local_path(request):
    """The path and query of this request, to come back to after logging in."""
    return request.full_path.rstrip("?")


def safe_next(path, default):
    """``path`` if it is a page of this site, else ``default``: a log-in form's "next" must not send the visitor
    elsewhere."""
    parts = urlsplit(path or "")
    if not path or not path.startswith("/") or path.startswith("//") or parts.scheme or parts.netloc or "\\" in path:
        return default
    return path


page = PageRoute.decorator
