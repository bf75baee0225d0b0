"""The circulation desk's screen, on the staff gateway (``/desk``): made for a barcode scanner, which types the
number and Enter, and for the keyboard. Scan a card and the patron is shown (status, blocks, counts, loans,
holds); scan copies one after another, each answered at once on the same screen, a refusal with its reason;
renew, place a hold for the patron; check-in mode says in large letters what to do with each copy.

Each form is answered with the page it leads to, without a redirect: a scan costs one round trip. Card numbers
travel in form bodies, never in URLs (which browsers keep in their history). The pages call the services as the
API routes do, with the signed-in staff member's token, so the same roles and the same access record hold."""
from services.gateway.errors import status_of
from services.gateway.pages import SESSION, Page, Redirect, StaticFile, page, safe_next
from shiori.clock import library_day, token_time
from shiori.errors import DomainError, Forbidden, InvalidInput
from shiori.roles import STAFF_ROLES, may_serve_at

DESK = "/desk"
DESK_LOGIN = "/desk/login"


def desk_page(url, method="GET"):
    """A page for signed-in staff: others are sent to the desk's log-in."""
    return page(url, method, login=DESK_LOGIN, public=False, roles=STAFF_ROLES)


class DeskPages:
    """Needs the gateway's ``tokens``, ``patrons``, ``loans`` and ``catalog`` proxies."""

    @page(DESK_LOGIN)
    def desk_login_form(self, request):
        return self._login_page(request)

    @page(DESK_LOGIN, "POST")
    def desk_log_in(self, request):
        username, library = request.form.get("username", "").strip(), request.form.get("library", "")
        try:
            account = self.patrons.authenticate_staff({"username": username,
                                                       "password": request.form.get("password", "")})
        except DomainError as refusal:
            return self._login_page(request, username, library, refusal)
        if not may_serve_at(account["role"], account["libraries"], library):
            return self._login_page(request, username, library, Forbidden())
        return Redirect(safe_next(request.form.get("next"), DESK), signed_in=self.tokens.issue(account),
                        session_values={"library": library, "username": account["username"]})

    @page("/desk/logout", "POST")
    def desk_log_out(self, request):
        return Redirect(DESK_LOGIN, signed_out=True)

    @desk_page(DESK)
    def desk(self, request):
        return self._desk_page(request)

    @desk_page("/desk/patron", "POST")
    def desk_patron(self, request):
        return self._desk_page(request, card_number=request.form.get("card_number", "").strip())

    @desk_page("/desk/checkout", "POST")
    def desk_checkout(self, request):
        card_number, barcode = request.form.get("card_number", ""), request.form.get("item_barcode", "").strip()
        try:
            loan = self.loans.checkout({"card_number": card_number, "item_barcode": barcode,
                                        "library": desk_library(request)})
        except DomainError as refusal:
            return self._desk_page(request, card_number, refusal=refusal, scanned=barcode)
        return self._desk_page(request, card_number, lent=loan, scanned=barcode)

    @desk_page("/desk/renew", "POST")
    def desk_renew(self, request):
        card_number = request.form.get("card_number", "")
        try:
            renewed = self.loans.renew(_form_id(request, "loan_id"))
        except DomainError as refusal:
            return self._desk_page(request, card_number, refusal=refusal)
        return self._desk_page(request, card_number, renewed=renewed)

    @desk_page("/desk/hold", "POST")
    def desk_hold(self, request):
        card_number = request.form.get("card_number", "")
        try:
            hold = self.loans.place_hold({"work_id": _form_id(request, "work_id"), "card_number": card_number,
                                          "pickup_library": request.form.get("pickup_library", "")})
        except DomainError as refusal:
            return self._desk_page(request, card_number, refusal=refusal)
        return self._desk_page(request, card_number, held=hold)

    @desk_page("/desk/checkin")
    def desk_checkin_form(self, request):
        return self._checkin_page(request)

    @desk_page("/desk/checkin", "POST")
    def desk_checkin(self, request):
        barcode = request.form.get("item_barcode", "").strip()
        try:
            returned = self.loans.checkin({"item_barcode": barcode, "library": desk_library(request)})
        except DomainError as refusal:
            return self._checkin_page(request, refusal=refusal, scanned=barcode)
        holder = self.patrons.get_patron(returned["hold"]["patron_id"]) if returned["hold"] else None
        return self._checkin_page(request, returned=returned, holder=holder, scanned=barcode)

    @page("/static/<name>")
    def desk_static(self, request, name):
        return StaticFile(name)

    def _login_page(self, request, username="", library="", refusal=None):
        values = {"username": username, "library": library, "libraries": self.catalog.list_libraries(),
                  "next": safe_next(request.args.get("next") or request.form.get("next"), DESK),
                  "refusal": refusal.code if refusal else None}
        return Page("desk/login.html", values, status_of(refusal))

    def _desk_page(self, request, card_number="", refusal=None, scanned="", **done):
        """The desk with the patron of ``card_number`` (if any), and what the last scan did."""
        libraries = self.catalog.list_libraries.call_async()  # asked at once, with the patron's loans and holds
        values = {"patron": None, "loans": [], "holds": [], "card_number": "",
                  "refusal": refusal.code if refusal else None, "scanned": scanned,
                  "today": library_day(token_time()).isoformat(), "lent": None, "renewed": None, "held": None, **done}
        status = status_of(refusal)
        patron = self._patron_with_card(card_number) if card_number else None
        if patron is not None:
            loans = self.loans.patron_loans.call_async(patron["id"])
            holds = self.loans.patron_holds.call_async(patron["id"])
            values.update(patron=patron, card_number=card_number, loans=loans.result(), holds=holds.result())
        elif card_number:
            values["refusal"] = values["refusal"] or "PATRON_NOT_FOUND"
            status = status if refusal else 404
        return Page("desk/circulation.html", {**values, "desk": self._desk_values(request, libraries.result())}, status)

    def _patron_with_card(self, card_number):
        try:
            found = self.patrons.find_patrons({"card_number": card_number})["items"]
        except InvalidInput:  # not a card number at all: as unknown as one nobody has
            return None
        return found[0] if found else None

    def _checkin_page(self, request, refusal=None, scanned="", returned=None, holder=None):
        values = {"desk": self._desk_values(request), "refusal": refusal.code if refusal else None,
                  "scanned": scanned, "returned": returned, "holder": holder}
        return Page("desk/checkin.html", values, status_of(refusal))

    def _desk_values(self, request, libraries=None):
        """Which library this desk is, and who is signed in (``libraries``: the tenant's, if already asked)."""
        session = request.environ[SESSION]
        libraries = {library["code"]: library["name"]
                     for library in (self.catalog.list_libraries() if libraries is None else libraries)}
        return {"library": desk_library(request), "library_name": libraries.get(desk_library(request), ""),
                "libraries": libraries, "username": session.values.get("username", "")}


def desk_library(request):
    return request.environ[SESSION].values.get("library", "")


def _form_id(request, name):
    value = request.form.get(name, "")
    if not value.isdigit() or not 1 <= int(value) <= 2**31 - 1:
        raise InvalidInput(details={name: ["a number"]})
    return int(value)
