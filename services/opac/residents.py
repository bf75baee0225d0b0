"""A resident's own pages on the OPAC (利用状況, "my page"): log in with card number and PIN, see loans and renew
them, see holds with their place in the queue and cancel them, place a hold from a work's page, change PIN and
e-mail, see who looked at the record. Each asks the staff gateway's API with the resident's own token
(services/opac/api.py), so what a resident may do here is what the API lets a patron do, no more."""
from services.gateway.errors import status_of
from services.gateway.pages import SESSION, Page, Redirect, page, safe_next
from services.patrons.errors import InvalidCredentials
from shiori.errors import DomainError, InvalidInput, TooManyAttempts

LOGIN = "/login"
MY_PAGE = "/my"
# What a finished action says on "my page" (?done=), in the template's words.
DONE = ("renewed", "cancelled", "held", "email", "pin")


def resident_page(url, method="GET"):
    return page(url, method, login=LOGIN)


class ResidentPages:
    """Needs ``api`` (services.opac.api.GatewayApi) and a ``catalog`` RPC proxy for the catalogue's public methods."""

    @page(LOGIN)
    def login_form(self, request):
        return Page("login.html", {"next": safe_next(request.args.get("next"), MY_PAGE), "card_number": "",
                                   "refusal": None})

    @page(LOGIN, "POST")
    def log_in(self, request):
        card_number = request.form.get("card_number", "").strip()
        following = safe_next(request.form.get("next"), MY_PAGE)
        try:
            answer = self.api.post("/api/v1/auth/patron-token",
                                   {"card_number": card_number, "pin": request.form.get("pin", "")})
        except (InvalidCredentials, TooManyAttempts, InvalidInput) as refusal:
            return Page("login.html", {"next": following, "card_number": card_number, "refusal": refusal.code},
                        {"INVALID_CREDENTIALS": 401, "TOO_MANY_ATTEMPTS": 429}.get(refusal.code, 400))
        return Redirect(following, signed_in=answer["access_token"])

    @page("/logout", "POST")
    def log_out(self, request):
        return Redirect("/", {"done": "signed_out"}, signed_out=True)

    @resident_page(MY_PAGE)
    def my_page(self, request):
        done = request.args.get("done")
        return self._my_page(request, done=done if done in DONE else None)

    @resident_page("/my/loans/<int:loan_id>/renew", "POST")
    def renew(self, request, loan_id):
        try:
            self._api(request).post(f"/api/v1/loans/{loan_id}/renew")
        except DomainError as refusal:
            return self._my_page(request, refusal=refusal, refused_loan=loan_id)
        return Redirect(MY_PAGE, {"done": "renewed"})

    @resident_page("/my/holds/<int:hold_id>/cancel", "POST")
    def cancel_hold(self, request, hold_id):
        try:
            self._api(request).call("DELETE", f"/api/v1/holds/{hold_id}")
        except DomainError as refusal:
            return self._my_page(request, refusal=refusal)
        return Redirect(MY_PAGE, {"done": "cancelled"})

    @resident_page("/works/<int:work_id>/hold", "POST")
    def place_hold(self, request, work_id):
        pickup = request.form.get("pickup_library", "")
        try:
            self._api(request).post("/api/v1/holds", {"work_id": work_id, "pickup_library": pickup})
        except DomainError as refusal:
            return Page("work.html", {**self.work_values(work_id), "refusal": refusal.code},
                        status_of(refusal))
        return Redirect(MY_PAGE, {"done": "held"})

    @resident_page("/my/settings")
    def settings(self, request):
        return self._settings_page(request)

    @resident_page("/my/email", "POST")
    def change_email(self, request):
        email = request.form.get("email", "").strip() or None
        try:
            self._api(request).call("PATCH", "/api/v1/me", body={"email": email})
        except DomainError as refusal:
            return self._settings_page(request, refusal=refusal, email=email)
        return Redirect(MY_PAGE, {"done": "email"})

    @resident_page("/my/pin", "POST")
    def change_pin(self, request):
        new_pin = request.form.get("new_pin", "")
        if new_pin != request.form.get("new_pin_again", ""):
            return self._settings_page(request, refusal=InvalidInput(details={"new_pin_again": ["differs"]}))
        try:
            answer = self._api(request).call(
                "PUT", "/api/v1/me/pin", body={"current_pin": request.form.get("current_pin", ""), "new_pin": new_pin})
        except DomainError as refusal:
            return self._settings_page(request, refusal=refusal)
        # The change ends every token of the resident's made before it, this session's too: the answer is a new one.
        return Redirect(MY_PAGE, {"done": "pin"}, signed_in=answer["access_token"])

    @resident_page("/my/access-log")
    def access_log(self, request):
        number = request.args.get("page", "1")
        entries = self._api(request).get("/api/v1/me/access-log", page=number if number.isdigit() else "1")
        return Page("access_log.html", {"entries": entries})

    def _api(self, request):
        return self.api.as_resident(request.environ[SESSION].token)

    def _my_page(self, request, done=None, refusal=None, refused_loan=None):
        api = self._api(request)
        values = {"me": api.get("/api/v1/me"), "loans": api.get("/api/v1/me/loans", per_page=100)["items"],
                  "holds": api.get("/api/v1/me/holds", per_page=100)["items"],
                  "libraries": {library["code"]: library["name"] for library in self.catalog.list_libraries()},
                  "done": done, "refusal": refusal.code if refusal else None, "refused_loan": refused_loan}
        return Page("my.html", values, status_of(refusal))

    def _settings_page(self, request, refusal=None, email=None):
        me = self._api(request).get("/api/v1/me")
        values = {"me": me, "email": (me.get("email") or "") if email is None else email,
                  "refusal": refusal.code if refusal else None,
                  "fields": sorted(refusal.details) if isinstance(refusal, InvalidInput) else []}
        return Page("settings.html", values, status_of(refusal))
