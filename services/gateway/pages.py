"""Web pages on the gateways. A page route (``page(url)``) is a route whose method answers a ``Page``: a template
of the service's own folder (``templates/``) and what it shows. The route renders it in the visitor's language
and answers HTML with the headers every page carries; a domain error becomes an error page with the status the
API gives it (the one table, services/gateway/errors.py).

Words are in message catalogues, gettext ``.po`` files under the service's ``locale/<language>/LC_MESSAGES/``,
read with Babel when the service starts: a translator adds a language (Portuguese, やさしい日本語) by adding a
file, without code. The message ids are English; Japanese is the default language. A visitor's language is in
the URL (``?lang=en``), so that an anonymous visitor needs no cookie."""
import io
import mimetypes
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from nameko.extensions import SharedExtension
from werkzeug.wrappers import Response

from services.gateway import errors
from services.gateway.entrypoints import Route

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


@dataclass
class Page:
    template: str
    values: dict = field(default_factory=dict)
    status: int = 200


@dataclass
class StaticFile:
    name: str  # in the service's static/ folder


class Site(SharedExtension):
    """A service's templates and message catalogues, one Jinja2 environment per language."""

    def setup(self):
        self.folder = Path(sys.modules[self.container.service_cls.__module__].__file__).parent
        self.environments = {language: self._environment(translations)
                             for language, translations in self._catalogues().items()}

    def _catalogues(self):
        catalogues = {SOURCE_LANGUAGE: Translations()}
        for po_file in sorted((self.folder / "locale").glob("*/LC_MESSAGES/messages.po")):
            with po_file.open("rb") as source:
                catalogue = read_po(source)
            compiled = io.BytesIO()
            write_mo(compiled, catalogue)
            compiled.seek(0)
            catalogues[po_file.parent.parent.name] = Translations(fp=compiled)
        return catalogues

    def _environment(self, translations):
        environment = Environment(loader=FileSystemLoader(self.folder / "templates"), autoescape=True,
                                  undefined=StrictUndefined, extensions=["jinja2.ext.i18n"])
        environment.install_gettext_translations(translations, newstyle=True)
        return environment

    @property
    def languages(self):
        return sorted(self.environments)

    def language_of(self, request):
        asked = request.args.get("lang", DEFAULT_LANGUAGE)
        return asked if asked in self.environments else DEFAULT_LANGUAGE

    def render(self, request, page):
        language = self.language_of(request)

        def link(path, **params):
            """``path`` with ``params`` and the visitor's language (left out when it is the default)."""
            query = {name: value for name, value in params.items() if value not in (None, "")}
            if language != DEFAULT_LANGUAGE:
                query["lang"] = language
            return path + ("?" + urlencode(query) if query else "")

        def in_language(other):
            """This very page in another language."""
            query = {name: value for name, value in request.args.items() if name != "lang"}
            if other != DEFAULT_LANGUAGE:
                query["lang"] = other
            return request.path + ("?" + urlencode(query) if query else "")

        html = self.environments[language].get_template(page.template).render(
            lang=language, languages=self.languages, link=link, in_language=in_language, **page.values)
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


def html_response(status, html):
    response = Response(html, status=status, mimetype="text/html")
    response.headers.update(PAGE_HEADERS)
    return response


class PageRoute(Route):
    """A public route answering a ``Page`` or a ``StaticFile``."""

    in_api = False
    site = Site()

    def __init__(self, url, method="GET", **kwargs):
        kwargs.setdefault("public", True)
        super().__init__(method, url, **kwargs)

    def response_from_result(self, result, request):
        if isinstance(result, Page):
            return self.site.render(request, result)
        if isinstance(result, StaticFile):
            return self.site.static_file(result.name)
        return super().response_from_result(result, request)

    def response_from_exception(self, exc, request):
        """The API's answer to the failure (its status from the one table, the unexpected logged) as a page."""
        answer = super().response_from_exception(exc, request)
        code = answer.get_json()["error"]["code"]
        return self.site.render(request, Page("error.html", {"status": answer.status_code, "code": code},
                                              answer.status_code))


page = PageRoute.decorator
