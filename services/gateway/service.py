"""The HTTP gateway: the one entry for staff clients (and the public catalogue's routes). It checks HTTP-level input
(JSON, media type, size, path ids) and who is calling, asks the owning service over RPC (which validates
the payload with its own schema), and answers in the API's shape."""
import base64
import csv
import io
import logging
from datetime import timedelta

from marshmallow import ValidationError
from nameko.dependency_providers import Config
from werkzeug.wrappers import Response

from services.gateway.desk import DeskPages
from services.gateway.entrypoints import ID, read_json, route
from services.gateway.errors import json_response
from services.gateway.public import CatalogueRoutes
from services.gateway.schemas import ImportQuerySchema, RevocationSchema, StatisticsFormatSchema, page_of
from services.gateway.tokens import Revocations, Tokens, catch_up_timer
from shiori.clock import token_time
from shiori.context import GATEWAY_SYSTEM_ACTOR
from shiori.errors import ServiceUnavailable, load
from shiori.events import broadcast, read_event
from shiori.imports import import_upload
from shiori.roles import ADMIN, LIBRARIAN, PATRON, STAFF_ROLES, SYSTEM
from shiori.rpc import Caller, ServiceRpc

log = logging.getLogger(__name__)
# How often each gateway process asks for recent revocations, in case it missed a broadcast.
REVOCATIONS_CATCH_UP_SECONDS = 60


class GatewayService(CatalogueRoutes, DeskPages):
    name = "gateway"
    backing_services = ("patrons", "loans", "catalog", "statistics", "notices")

    tokens = Tokens()
    revocations = Revocations()
    caller = Caller()
    patrons = ServiceRpc("patrons")
    loans = ServiceRpc("loans")
    catalog = ServiceRpc("catalog")
    statistics = ServiceRpc("statistics")
    notices = ServiceRpc("notices")
    config = Config()

    @route("POST", "/api/v1/auth/token", public=True)
    def staff_token(self, request):
        """Log a staff member in: user name and password for a bearer token."""
        account = self.patrons.authenticate_staff(read_json(request))
        return {
            "access_token": self.tokens.issue(account), "token_type": "Bearer",
            "expires_in": self.tokens.lifetime_seconds, "role": account["role"], "libraries": account["libraries"],
        }

    @route("POST", "/api/v1/auth/patron-token", public=True)
    def patron_token(self, request):
        """Log a patron in: card number and PIN for a bearer token that opens /api/v1/me."""
        return self._patron_token(self.patrons.authenticate_patron(read_json(request)))

    def _patron_token(self, account):
        return {"access_token": self.tokens.issue(account), "token_type": "Bearer",
                "expires_in": self.tokens.lifetime_seconds}

    @broadcast("patrons", "credentials_revoked")
    def on_credentials_revoked(self, body):
        """Every gateway process hears of every revocation, and refuses the tokens it ends from then on."""
        event = read_event(body, 1, RevocationSchema())
        if event is not None:
            self.revocations.revoke(event["tenant"], event["data"]["subject"], event["data"]["not_before"])

    @catch_up_timer(interval=REVOCATIONS_CATCH_UP_SECONDS, eager=True)
    def catch_up_on_revocations(self):
        """At start, and every minute for a broadcast missed (the broker restarted, this process was cut off):
        the revocations of every token that may still be valid, from the patrons service."""
        horizon = token_time() - timedelta(seconds=self.tokens.lifetime_seconds)
        # A context names a tenant; the call reads every tenant's revocations, whichever it names.
        self.caller.act_as(self.config["PUBLIC_TENANT"], GATEWAY_SYSTEM_ACTOR, SYSTEM)
        try:
            revoked = RevocationSchema(many=True).load(self.patrons.recent_revocations(horizon.isoformat()))
        except (ServiceUnavailable, ValidationError) as error:
            log.warning("could not catch up on revoked credentials (%s); trying again in %d s", error,
                        REVOCATIONS_CATCH_UP_SECONDS)
            return
        self.revocations.forget_before(horizon)
        for revocation in revoked:
            self.revocations.revoke(revocation["tenant"], revocation["subject"], revocation["not_before"])

    # --- a patron's own record --------------------------------------------------------------------

    @route("GET", "/api/v1/me", roles=(PATRON,))
    def me(self, request):
        """The logged-in patron's own record."""
        return self.patrons.get_patron(self.caller.patron_id)

    @route("PATCH", "/api/v1/me", roles=(PATRON,))
    def update_me(self, request):
        """The logged-in patron changes their own e-mail address (``{"email": "…"}``, or null for none).
        Nothing else: name, reading, birth date, address, phone and the rest are changed at the desk, and each
        such field in the body is refused by name (400); the PIN has ``PUT /api/v1/me/pin``."""
        return self.patrons.update_own_record(read_json(request))

    @route("PUT", "/api/v1/me/pin", roles=(PATRON,))
    def change_my_pin(self, request):
        """The logged-in patron changes their PIN (``{"current_pin", "new_pin"}``): a wrong current PIN is 400
        ``CURRENT_PIN_WRONG`` and counts as a failed log-in (429 when they are too many), a PIN too easy to
        guess is 400 ``PIN_TOO_COMMON``. Every token of the patron ends, this one too: the answer carries a new
        one, as a log-in does."""
        return self._patron_token(self.patrons.change_own_pin(read_json(request)))

    @route("GET", "/api/v1/me/loans", roles=(PATRON,))
    def my_loans(self, request):
        """The logged-in patron's current loans, with titles."""
        return page_of(self.loans.patron_loans(self.caller.patron_id), request.args.to_dict())

    @route("GET", "/api/v1/me/holds", roles=(PATRON,))
    def my_holds(self, request):
        """The logged-in patron's holds, with titles and queue positions."""
        return page_of(self.loans.patron_holds(self.caller.patron_id), request.args.to_dict())

    @route("GET", "/api/v1/me/export", roles=(PATRON,))
    def my_export(self, request):
        """Everything the system holds about the logged-in patron, as JSON (開示請求)."""
        return self._export(self.caller.patron_id)

    @route("GET", "/api/v1/me/access-log", roles=(PATRON,))
    def my_access_log(self, request):
        """Who (by role and staff id) read or changed the logged-in patron's record, and when."""
        return self.patrons.own_access_record(request.args.to_dict())

    # --- the access record ------------------------------------------------------------------------

    @route("GET", "/api/v1/audit", roles=(ADMIN,))
    def access_record(self, request):
        """Search the access record (?patron_id=&actor=&since=&until=&page=&per_page=); no route changes it."""
        return self.patrons.search_access_record(request.args.to_dict())

    # --- staff accounts ---------------------------------------------------------------------------

    @route("POST", "/api/v1/staff", roles=(ADMIN,))
    def create_staff_account(self, request):
        """Add a staff account: user name, password, role and libraries."""
        return 201, self.patrons.create_staff_account(read_json(request))

    @route("GET", "/api/v1/staff", roles=(ADMIN,))
    def list_staff_accounts(self, request):
        """The tenant's staff accounts."""
        return page_of(self.patrons.list_staff_accounts(), request.args.to_dict())

    @route("PATCH", f"/api/v1/staff/<{ID}:account_id>", roles=(ADMIN,))
    def update_staff_account(self, request, account_id):
        """Change a staff account's role, libraries or password."""
        return self.patrons.update_staff_account(account_id, read_json(request))

    @route("DELETE", f"/api/v1/staff/<{ID}:account_id>", roles=(ADMIN,))
    def delete_staff_account(self, request, account_id):
        """Delete a staff account (not the tenant's last admin)."""
        self.patrons.delete_staff_account(account_id)
        return json_response(204, None)

    # --- libraries --------------------------------------------------------------------------------

    @route("POST", "/api/v1/libraries", roles=(ADMIN,))
    def add_library(self, request):
        """Add a library (main, branch or school) to the tenant."""
        return 201, self.catalog.add_library(read_json(request))

    # --- patrons ----------------------------------------------------------------------------------

    @route("POST", "/api/v1/patrons")
    def register_patron(self, request):
        """Register a library card."""
        return 201, self.patrons.register(read_json(request))

    @route("GET", "/api/v1/patrons")
    def find_patrons(self, request):
        """Look a patron up by card number (?card_number=), phone number (?phone=), or, for one who forgot their
        card, name reading and birth date together (?name_reading=シケンハナコ&birth_date=1990-04-01: hiragana
        or katakana, full or half width, spaces and ・ between names or not)."""
        return self.patrons.find_patrons(request.args.to_dict())

    @route("GET", f"/api/v1/patrons/<{ID}:patron_id>")
    def get_patron(self, request, patron_id):
        """One patron's record."""
        return self.patrons.get_patron(patron_id)

    @route("PATCH", f"/api/v1/patrons/<{ID}:patron_id>")
    def update_patron(self, request, patron_id):
        """Change personal fields of a patron."""
        return self.patrons.update_patron(patron_id, read_json(request))

    @route("DELETE", f"/api/v1/patrons/<{ID}:patron_id>")
    def delete_patron(self, request, patron_id):
        """Delete a patron (refused while items are on loan)."""
        self.loans.erase_patron(patron_id)
        return json_response(204, None)

    @route("POST", f"/api/v1/patrons/<{ID}:patron_id>/card-renewal")
    def renew_card(self, request, patron_id):
        """Renew a patron's card: valid for the card validity period from today."""
        return self.patrons.renew_card(patron_id)

    @route("POST", f"/api/v1/patrons/<{ID}:patron_id>/lost-card")
    def replace_lost_card(self, request, patron_id):
        """A card reported lost: the old number stops working, a new one is issued (loans stay)."""
        return self.patrons.replace_lost_card(patron_id)

    @route("PUT", f"/api/v1/patrons/<{ID}:patron_id>/status")
    def set_card_status(self, request, patron_id):
        """Suspend a patron (``{"status": "suspended"}``) or lift the suspension (``"active"``)."""
        return self.patrons.set_card_status(patron_id, read_json(request))

    @route("GET", f"/api/v1/patrons/<{ID}:patron_id>/loans")
    def patron_loans(self, request, patron_id):
        """A patron's current loans, with titles."""
        return page_of(self.loans.patron_loans(patron_id), request.args.to_dict())

    @route("GET", f"/api/v1/patrons/<{ID}:patron_id>/holds")
    def patron_holds(self, request, patron_id):
        """A patron's holds, with titles and queue positions."""
        return page_of(self.loans.patron_holds(patron_id), request.args.to_dict())

    @route("GET", f"/api/v1/patrons/<{ID}:patron_id>/export")
    def export_patron(self, request, patron_id):
        """Everything the system holds about a patron, as JSON, for a disclosure request (開示請求)."""
        return self._export(patron_id)

    def _export(self, patron_id):
        """Put together here, as the patrons service does not call the loans service: its record and access
        record first (which checks the caller may see the patron, and records the export), then the loans."""
        held = self.patrons.export_patron(patron_id)
        return {"patron": held["patron"], "loans": self.loans.patron_loans(patron_id),
                "access_record": held["access_record"]}

    # --- catalogue --------------------------------------------------------------------------------

    @route("POST", "/api/v1/works")
    def add_work(self, request):
        """Add a bibliographic record."""
        return 201, self.catalog.add_work(read_json(request))

    @route("POST", "/api/v1/works/import", roles=(ADMIN, LIBRARIAN), body_limit="MAX_IMPORT_BYTES")
    def import_works(self, request):
        """Bulk import (?format=aozora-csv|marc21|marcxml); the file is the raw request body, read by a process
        of its own as it arrives."""
        params = load(ImportQuerySchema(), request.args.to_dict())
        return import_upload(request.stream, params["format"], self.catalog.import_works,
                             in_flight=int(self.config["IMPORT_IN_FLIGHT"]))

    @route("POST", "/api/v1/items")
    def add_item(self, request):
        """Add a copy of a work to a library."""
        return 201, self.catalog.add_item(read_json(request))

    @route("GET", "/api/v1/items/<barcode>")
    def get_item(self, request, barcode):
        """One copy and its status."""
        return self.catalog.get_item(barcode)

    # --- circulation ------------------------------------------------------------------------------

    @route("POST", "/api/v1/checkouts")
    def checkout(self, request):
        """Lend a copy: card number, item barcode and the desk's library."""
        return 201, self.loans.checkout(read_json(request))

    @route("POST", "/api/v1/checkins")
    def checkin(self, request):
        """Take a copy back: says whether to shelve it here or send it to its own library."""
        return self.loans.checkin(read_json(request))

    @route("POST", "/api/v1/holds", roles=STAFF_ROLES + (PATRON,))
    def place_hold(self, request):
        """Hold a work (``work_id``) or a series in reading order (``works``) for pickup at a library."""
        return 201, self.loans.place_hold(read_json(request))

    @route("DELETE", f"/api/v1/holds/<{ID}:hold_id>", roles=STAFF_ROLES + (PATRON,))
    def cancel_hold(self, request, hold_id):
        """Cancel a hold; a copy it kept passes to the next in the queue."""
        self.loans.cancel_hold(hold_id)
        return json_response(204, None)

    @route("GET", "/api/v1/libraries/<library>/hold-shelf")
    def hold_shelf(self, request, library):
        """A library's hold shelf (copies kept for patrons, until when) and the copies to send elsewhere."""
        return self.loans.hold_shelf(library)

    @route("POST", f"/api/v1/loans/<{ID}:loan_id>/renew", roles=STAFF_ROLES + (PATRON,))
    def renew(self, request, loan_id):
        """Renew a loan: the new due date, or 409 with the reason (holds, limit, suspended, overdue)."""
        return self.loans.renew(loan_id)

    # --- loan rules and calendars -----------------------------------------------------------------

    @route("GET", "/api/v1/loan-policies")
    def list_policies(self, request):
        """The tenant's loan rules and the default that applies where none matches."""
        return self.loans.list_policies()

    @route("POST", "/api/v1/loan-policies", roles=(ADMIN,))
    def add_policy(self, request):
        """Add a loan rule for a patron category × item type × library (a key left out matches any)."""
        return 201, self.loans.add_policy(read_json(request))

    @route("PATCH", f"/api/v1/loan-policies/<{ID}:policy_id>", roles=(ADMIN,))
    def update_policy(self, request, policy_id):
        """Change a loan rule."""
        return self.loans.update_policy(policy_id, read_json(request))

    @route("DELETE", f"/api/v1/loan-policies/<{ID}:policy_id>", roles=(ADMIN,))
    def delete_policy(self, request, policy_id):
        """Delete a loan rule."""
        self.loans.delete_policy(policy_id)
        return json_response(204, None)

    @route("GET", "/api/v1/circulation-settings")
    def circulation_settings(self, request):
        """Renewal counting, grace before an overdue loan cannot be renewed, suspension after late returns."""
        return self.loans.get_settings()

    @route("PUT", "/api/v1/circulation-settings", roles=(ADMIN,))
    def update_circulation_settings(self, request):
        """Set the tenant's circulation settings."""
        return self.loans.update_settings(read_json(request))

    @route("GET", "/api/v1/libraries/<library>/calendar")
    def library_calendar(self, request, library):
        """A library's weekly closing days and closed periods."""
        return self.loans.get_calendar(library)

    @route("PUT", "/api/v1/libraries/<library>/calendar", roles=(ADMIN,))
    def set_library_calendar(self, request, library):
        """Replace a library's weekly closing days and closed periods (holidays, 蔵書点検)."""
        return self.loans.set_calendar(library, read_json(request))

    @route("POST", "/api/v1/closures", roles=(ADMIN,))
    def close_unexpectedly(self, request):
        """An unplanned closure: loans due in the period move to each library's next open day."""
        return self.loans.close_unexpectedly(read_json(request))

    # --- statistics --------------------------------------------------------------------------------

    @route("GET", "/api/v1/statistics")
    def statistics_counts(self, request):
        """Anonymous daily counts (check-outs, check-ins, renewals, holds placed, registrations) for a period:
        ?from=&to=&group_by=day,library,patron_category,age_band,item_type,ndc_class&library=&format=json|csv"""
        output = load(StatisticsFormatSchema(), request.args.to_dict())["format"]
        counts = self.statistics.aggregates(request.args.to_dict())
        if output == "json":
            return counts
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=counts["group_by"] + ["measure", "count"], lineterminator="\r\n",
                                extrasaction="ignore")
        writer.writeheader()
        # "x" marks a suppressed count, as Japan's official statistics mark 秘匿 cells.
        writer.writerows({**row, "count": "x" if row["suppressed"] else row["count"]} for row in counts["rows"])
        return Response(text.getvalue(), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="statistics-{counts["from"]}-{counts["to"]}.csv"'})

    @route("GET", "/api/v1/statistics/checkouts.png")
    def checkouts_chart(self, request):
        """A chart of daily check-outs per library over a period (?from=&to=)."""
        return Response(base64.b64decode(self.statistics.checkouts_chart(request.args.to_dict())),
                        mimetype="image/png")

    # --- notices -----------------------------------------------------------------------------------

    @route("GET", "/api/v1/notices/phone-list")
    def phone_list(self, request):
        """Patrons to phone (no e-mail address): the notice, with their name and phone number."""
        return page_of(self.notices.phone_list(), request.args.to_dict())

    @route("DELETE", f"/api/v1/notices/<{ID}:notice_id>")
    def notice_phoned(self, request, notice_id):
        """The patron has been phoned: the notice is done."""
        self.notices.done(notice_id)
        return json_response(204, None)

    @route("GET", "/api/v1/notices/pending")
    def pending_notices(self, request):
        """E-mail notices not sent yet, with their attempts and the last failure."""
        return page_of(self.notices.pending(), request.args.to_dict())

    @route("GET", "/api/v1/notice-settings")
    def notice_settings(self, request):
        """Whether notices name the titles, and the tenant's wording of each kind."""
        return self.notices.get_settings()

    @route("PUT", "/api/v1/notice-settings", roles=(ADMIN,))
    def update_notice_settings(self, request):
        """Set whether notices name the titles, and the wording (Japanese templates with $name, $library,
        $items, $date, $titles)."""
        return self.notices.update_settings(read_json(request))
