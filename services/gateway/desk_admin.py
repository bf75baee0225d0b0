"""The tenant's admin pages on the desk (``/desk/admin``, admins only: a librarian is answered 403): libraries, each
library's calendar (weekly closing days, closed periods) and unplanned closures, loan rules and circulation
settings, staff accounts, and the notices' wording. They call the services as the API routes do, which check the
input with the owners' schemas: a refused form comes back with what was typed and, next to each field the
refusal names, a word on it. A change done is answered with a redirect to the page, which says so (post,
redirect, get)."""
from services.gateway.desk import DESK_LOGIN
from services.gateway.errors import status_of
from services.gateway.pages import Page, Redirect, page
from shiori.errors import DomainError, InvalidInput
from shiori.roles import ADMIN, STAFF_ROLES
from shiori.vocabulary import ITEM_TYPES, PATRON_CATEGORIES

ADMIN_PAGES = "/desk/admin"
LIBRARIES = f"{ADMIN_PAGES}/libraries"
CLOSURES = f"{ADMIN_PAGES}/closures"
LOAN_RULES = f"{ADMIN_PAGES}/loan-rules"
STAFF = f"{ADMIN_PAGES}/staff"
NOTICES = f"{ADMIN_PAGES}/notices"
NOTICE_KINDS = ("hold_ready", "due_soon", "overdue")
POLICY_NUMBERS = ("loan_days", "max_items", "max_items_of_type", "renewals", "max_holds")
POLICY_SCOPE = ("patron_category", "item_type", "library")


def admin_page(url, method="GET"):
    """A page for the tenant's admins: others signed in are refused (403), visitors sent to the desk's log-in."""
    return page(url, method, login=DESK_LOGIN, public=False, roles=(ADMIN,))


class DeskAdminPages:
    """Needs the gateway's ``catalog``, ``loans``, ``patrons`` and ``notices`` proxies, and the desk's
    ``_desk_values``."""

    @admin_page(ADMIN_PAGES)
    def admin_index(self, request):
        return self._admin_page(request, "index")

    # --- libraries, calendars, closures ------------------------------------------------------------------

    @admin_page(LIBRARIES)
    def admin_libraries(self, request):
        return self._libraries_page(request)

    @admin_page(LIBRARIES, "POST")
    def admin_add_library(self, request):
        library = {name: request.form.get(name, "").strip() for name in ("code", "name", "kind")}
        return self._changed(request, LIBRARIES, "library_added", self._libraries_page,
                             lambda: self.catalog.add_library(library))

    def _libraries_page(self, request, refusal=None):
        return self._admin_page(request, "libraries", refusal, libraries=self.catalog.list_libraries())

    @admin_page(f"{LIBRARIES}/<code>/calendar")
    def admin_calendar(self, request, code):
        return self._calendar_page(request, code)

    @admin_page(f"{LIBRARIES}/<code>/calendar", "POST")
    def admin_set_calendar(self, request, code):
        rows = zip(request.form.getlist("first"), request.form.getlist("last"), request.form.getlist("reason"))
        calendar = {"closed_weekdays": [_number(day) for day in request.form.getlist("closed_weekdays")],
                    "closures": [{"first": first.strip(), "last": last.strip(), "reason": reason.strip()}
                                 for first, last, reason in rows if (first + last + reason).strip()]}
        return self._changed(request, f"{LIBRARIES}/{code}/calendar", "calendar_saved",
                             lambda request, refusal: self._calendar_page(request, code, refusal, calendar),
                             lambda: self.loans.set_calendar(code, calendar))

    def _calendar_page(self, request, code, refusal=None, typed_calendar=None):
        """The library's calendar, or what was typed over it; a blank row or two for periods to add."""
        library = self.catalog.get_library(code)
        calendar = typed_calendar or self.loans.get_calendar(code)
        blank = {"first": "", "last": "", "reason": ""}
        return self._admin_page(request, "calendar", refusal, library=library,
                                closed_weekdays=calendar["closed_weekdays"],
                                closures=[*calendar["closures"], blank, blank])

    @admin_page(CLOSURES)
    def admin_closures(self, request):
        return self._closures_page(request)

    @admin_page(CLOSURES, "POST")
    def admin_close_unexpectedly(self, request):
        closure = {"libraries": request.form.getlist("libraries"),
                   **{name: request.form.get(name, "").strip() for name in ("first", "last", "reason")}}
        return self._changed(request, CLOSURES, "closed", self._closures_page,
                             lambda: self.loans.close_unexpectedly(closure),
                             told=lambda closed: {"moved": closed["loans_moved"]})

    def _closures_page(self, request, refusal=None):
        return self._admin_page(request, "closures", refusal, libraries=self.catalog.list_libraries(),
                                moved=request.args.get("moved", ""))

    # --- loan rules and circulation settings -------------------------------------------------------------

    @admin_page(LOAN_RULES)
    def admin_loan_rules(self, request):
        return self._loan_rules_page(request)

    @admin_page(LOAN_RULES, "POST")
    def admin_add_policy(self, request):
        return self._changed(request, LOAN_RULES, "policy_added", self._loan_rules_page,
                             lambda: self.loans.add_policy(_policy_of(request.form)))

    @admin_page(f"{LOAN_RULES}/<int:policy_id>", "POST")
    def admin_change_policy(self, request, policy_id):
        return self._changed(request, LOAN_RULES, "policy_changed",
                             lambda request, refusal: self._loan_rules_page(request, refusal, editing=policy_id),
                             lambda: self.loans.update_policy(policy_id, _policy_of(request.form)))

    @admin_page(f"{LOAN_RULES}/<int:policy_id>/delete", "POST")
    def admin_delete_policy(self, request, policy_id):
        return self._changed(request, LOAN_RULES, "policy_deleted", self._loan_rules_page,
                             lambda: self.loans.delete_policy(policy_id))

    @admin_page(f"{ADMIN_PAGES}/circulation-settings", "POST")
    def admin_circulation_settings(self, request):
        settings = {"renew_from": request.form.get("renew_from", ""),
                    "renewal_grace_days": _number(request.form.get("renewal_grace_days", "")),
                    "suspend_for_late_days": "suspend_for_late_days" in request.form}
        return self._changed(request, LOAN_RULES, "settings_saved",
                             lambda request, refusal: self._loan_rules_page(request, refusal, editing="settings"),
                             lambda: self.loans.update_settings(settings))

    def _loan_rules_page(self, request, refusal=None, editing="new"):
        """``editing`` is the form the refusal answers (a policy's id, "new" or "settings"): it shows what was
        typed, the others what is kept."""
        rules = self.loans.list_policies()
        return self._admin_page(request, "loan_rules", refusal, editing=editing, policies=rules["policies"],
                                default=rules["default"], settings=self.loans.get_settings(),
                                libraries=self.catalog.list_libraries(), categories=PATRON_CATEGORIES,
                                item_types=ITEM_TYPES, numbers=POLICY_NUMBERS)

    # --- staff accounts ----------------------------------------------------------------------------------

    @admin_page(STAFF)
    def admin_staff(self, request):
        return self._staff_page(request)

    @admin_page(STAFF, "POST")
    def admin_add_staff(self, request):
        account = {"username": request.form.get("username", "").strip(), "password": request.form.get("password", ""),
                   "role": request.form.get("role", ""), "libraries": request.form.getlist("libraries")}
        return self._changed(request, STAFF, "account_added", self._staff_page,
                             lambda: self.patrons.create_staff_account(account))

    @admin_page(f"{STAFF}/<int:account_id>", "POST")
    def admin_change_staff(self, request, account_id):
        changes = {"role": request.form.get("role", ""), "libraries": request.form.getlist("libraries")}
        if request.form.get("password"):  # left blank, the password stays
            changes["password"] = request.form["password"]
        return self._changed(request, STAFF, "account_changed",
                             lambda request, refusal: self._staff_page(request, refusal, editing=account_id),
                             lambda: self.patrons.update_staff_account(account_id, changes))

    @admin_page(f"{STAFF}/<int:account_id>/delete", "POST")
    def admin_delete_staff(self, request, account_id):
        return self._changed(request, STAFF, "account_deleted",
                             lambda request, refusal: self._staff_page(request, refusal, editing=account_id),
                             lambda: self.patrons.delete_staff_account(account_id))

    def _staff_page(self, request, refusal=None, editing="new"):
        return self._admin_page(request, "staff", refusal, editing=editing,
                                accounts=self.patrons.list_staff_accounts(), roles=STAFF_ROLES,
                                libraries=self.catalog.list_libraries())

    # --- the notices' wording ----------------------------------------------------------------------------

    @admin_page(NOTICES)
    def admin_notices(self, request):
        return self._notices_page(request)

    @admin_page(NOTICES, "POST")
    def admin_notice_settings(self, request):
        """A kind whose subject and body are both left blank keeps the standard wording."""
        form = request.form
        settings = {"include_titles": "include_titles" in form, "templates": {
            kind: {"subject": form.get(f"subject_{kind}", "").strip(), "body": form.get(f"body_{kind}", "").strip()}
            for kind in NOTICE_KINDS if (form.get(f"subject_{kind}", "") + form.get(f"body_{kind}", "")).strip()}}
        return self._changed(request, NOTICES, "notices_saved",
                             lambda request, refusal: self._notices_page(request, refusal, settings),
                             lambda: self.notices.update_settings(settings))

    def _notices_page(self, request, refusal=None, typed_settings=None):
        return self._admin_page(request, "notices", refusal, kinds=NOTICE_KINDS,
                                settings=typed_settings or self.notices.get_settings())

    # --- the pages' common parts -------------------------------------------------------------------------

    def _changed(self, request, location, done, shown, change, told=lambda _answer: {}):
        """Make the ``change``, then send the admin back to ``location``, which says it is ``done`` (and what
        ``told`` takes from the change's answer); a refusal is answered with ``shown(request, refusal)``: the
        page again, with the form as it was sent."""
        try:
            answer = change()
        except DomainError as refusal:
            return shown(request, refusal)
        return Redirect(location, {"done": done, **told(answer)})

    def _admin_page(self, request, name, refusal=None, **values):
        """``typed`` is the form as sent (nothing on a GET); ``errors`` the refused fields and what was wrong."""
        return Page(f"desk/admin/{name}.html", {
            "desk": self._desk_values(request), "done": request.args.get("done", ""),
            "refusal": refusal.code if refusal else None, "typed": request.form,
            "errors": refusal.details if isinstance(refusal, InvalidInput) else {}, **values}, status_of(refusal))


def _number(text):
    """A whole number typed in a form, or what was typed (for the schema to refuse by name); None if blank."""
    text = text.strip()
    return int(text) if text.isdigit() and len(text) < 10 else (text or None)


def _policy_of(form):
    """A loan rule from its form: a scope left at "any" is null, a number left blank is null."""
    return {**{key: form.get(key) or None for key in POLICY_SCOPE},
            **{key: _number(form.get(key, "")) for key in POLICY_NUMBERS}}
