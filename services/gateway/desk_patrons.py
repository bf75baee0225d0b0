"""The desk's pages for patrons who have no card at hand, on the staff gateway: find one who forgot their card by
the reading of their name and their birth date, and register a new patron, whose card is then printed with its
number as an NW-7 (Codabar) barcode, the symbology Japanese library cards carry.

The forms are validated by the patrons service, as the API's are; a refusal comes back as the fields it names,
and each is shown next to its field in the staff member's language (templates/desk/fields.html)."""
import io
import unicodedata

import barcode
from barcode.writer import SVGWriter
from werkzeug.wrappers import Response

from services.gateway.desk import desk_library, desk_page
from services.gateway.entrypoints import ID
from services.gateway.errors import status_of
from services.gateway.pages import Page, Redirect
from shiori.errors import DomainError
from shiori.vocabulary import PATRON_CATEGORIES, SEXES

REGISTRATION_FIELDS = ("name", "name_kana", "birth_date", "sex", "address", "alt_address", "phone", "email",
                       "home_library", "category", "pin")
OPTIONAL_FIELDS = ("alt_address", "email")  # left empty: the patron has none
# Typed at a Japanese keyboard these come in full width (０５８４－１２－３４５６); the service wants ASCII.
NARROWED_FIELDS = ("birth_date", "phone", "pin")
LOOKUP_FIELDS = ("name_reading", "birth_date")
# Start and stop characters of the card's barcode. Japanese library cards print their number between A and A,
# which scanners at every desk are set to read; the number carries its own (Luhn) check digit, so the barcode
# adds none.
CARD_START_STOP = "A"
# The barcode's own document has inline styles (python-barcode's SVG) and never a script.
BARCODE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # a patron's card number
}


class DeskPatronPages:
    """Needs the gateway's ``patrons`` and ``catalog`` proxies, and DeskPages' ``_desk_values``."""

    @desk_page("/desk/find")
    def desk_find_form(self, request):
        return self._find_page(request, dict.fromkeys(LOOKUP_FIELDS, ""))

    @desk_page("/desk/find", "POST")
    def desk_find(self, request):
        query = {field: request.form.get(field, "").strip() for field in LOOKUP_FIELDS}
        query["birth_date"] = narrowed(query["birth_date"])
        try:
            found = self.patrons.find_patrons(query)["items"]
        except DomainError as refusal:
            return self._find_page(request, query, refusal=refusal)
        return self._find_page(request, query, found=found)

    @desk_page("/desk/register")
    def desk_registration_form(self, request):
        return self._registration_page(request, {**dict.fromkeys(REGISTRATION_FIELDS, ""), "sex": "unspecified",
                                                 "home_library": desk_library(request), "category": "adult"})

    @desk_page("/desk/register", "POST")
    def desk_register(self, request):
        typed = {field: request.form.get(field, "") for field in REGISTRATION_FIELDS}
        try:
            patron = self.patrons.register(registration_payload(typed))
        except DomainError as refusal:
            return self._registration_page(request, typed, refusal)
        return Redirect(f"/desk/cards/{patron['id']}")

    @desk_page(f"/desk/cards/<{ID}:patron_id>")
    def desk_card(self, request, patron_id):
        patron = self.patrons.get_patron(patron_id)
        return Page("desk/card.html", {"desk": self._desk_values(request), "patron": patron})

    @desk_page(f"/desk/cards/<{ID}:patron_id>/barcode.svg")
    def desk_card_barcode(self, request, patron_id):
        svg = card_barcode_svg(self.patrons.get_patron(patron_id)["card_number"])
        return Response(svg, mimetype="image/svg+xml", headers=BARCODE_HEADERS)

    def _find_page(self, request, query, refusal=None, found=None):
        values = {"desk": self._desk_values(request), "query": query, "found": found,
                  "problems": field_problems(refusal, query), "refusal": refusal.code if refusal else None}
        return Page("desk/find.html", values, status_of(refusal))

    def _registration_page(self, request, typed, refusal=None):
        """The form, showing what was typed but the PIN."""
        values = {"desk": self._desk_values(request), "typed": {**typed, "pin": ""}, "sexes": SEXES,
                  "categories": PATRON_CATEGORIES, "problems": field_problems(refusal, typed),
                  "refusal": refusal.code if refusal else None}
        return Page("desk/register.html", values, status_of(refusal))


def registration_payload(typed):
    """The patrons service's registration payload from the desk's form: values trimmed, the ones Japanese
    keyboards type in full width narrowed, an optional field left empty as none, an empty PIN as no PIN. An empty
    required field is sent empty, so that the service names it."""
    payload = {field: value.strip() for field, value in typed.items()}
    for field in NARROWED_FIELDS:
        payload[field] = narrowed(payload[field])
    for field in OPTIONAL_FIELDS:
        payload[field] = payload[field] or None
    if not payload["pin"]:
        del payload["pin"]
    return payload


def narrowed(text):
    """Full-width digits and signs as ASCII (２０１０／０４／０１ → 2010/04/01)."""
    return unicodedata.normalize("NFKC", text)


def field_problems(refusal, typed):
    """What is wrong with each field of the form that the refusal names: ``"missing"`` when it was left empty,
    else the refusal's code (``VALIDATION_ERROR``, or a named one such as ``PIN_TOO_COMMON``)."""
    if refusal is None:
        return {}
    return {field: "missing" if not typed[field].strip() else refusal.code
            for field in refusal.details if field in typed}


def card_barcode_svg(card_number):
    """The card number as an NW-7 barcode, an SVG document of bars alone: the digits are printed as text beside
    it by the page, where they can be read, copied and enlarged."""
    drawn = io.BytesIO()
    symbol = barcode.get("nw-7", f"{CARD_START_STOP}{card_number}{CARD_START_STOP}", writer=SVGWriter())
    symbol.write(drawn, options={"write_text": False, "module_width": 0.2, "module_height": 10.0,
                                 "quiet_zone": 5.0})
    return drawn.getvalue()
