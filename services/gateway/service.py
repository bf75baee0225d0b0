"""The HTTP gateway: the one entry for staff clients and the public catalogue. It checks HTTP-level input
(JSON, media type, size, path ids) and who is calling, asks the owning service over RPC (which validates
the payload with its own schema), and answers in the API's shape."""

from services.gateway.entrypoints import ID, read_json, route
from services.gateway.errors import json_response
from services.gateway.openapi import openapi_document
from services.gateway.schemas import page_of
from services.gateway.tokens import Tokens
from shiori.errors import DomainError
from shiori.rpc import ServiceRpc

BACKING_SERVICES = ("patrons", "loans", "catalog")


class GatewayService:
    name = "gateway"

    tokens = Tokens()
    patrons = ServiceRpc("patrons")
    loans = ServiceRpc("loans")
    catalog = ServiceRpc("catalog")

    @route("GET", "/health", public=True)
    def health(self, request):
        """Each backing service's state; 503 naming those that do not answer."""
        states, pending = {}, {}
        for name in BACKING_SERVICES:  # asked all at once: the answer takes one timeout at most
            try:
                pending[name] = getattr(self, name).health.call_async()
            except DomainError:
                states[name] = "unavailable"
        for name, reply in pending.items():
            try:
                states[name] = reply.result()
            except DomainError:
                states[name] = "unavailable"
        if all(state == "ok" for state in states.values()):
            return {"status": "ok", "services": states}
        down = sorted(name for name, state in states.items() if state != "ok")
        return 503, {"error": {"code": "SERVICE_UNAVAILABLE", "message": f"not answering: {', '.join(down)}",
                               "details": {"services": states}}}

    @route("GET", "/api/v1/openapi.json", public=True)
    def openapi(self, request):
        """This API, described as OpenAPI 3."""
        return openapi_document(type(self))

    @route("POST", "/api/v1/auth/token", public=True)
    def staff_token(self, request):
        """Log a staff member in: user name and password for a bearer token."""
        account = self.patrons.authenticate_staff(read_json(request))
        return {
            "access_token": self.tokens.issue(account), "token_type": "Bearer",
            "expires_in": self.tokens.lifetime_seconds, "role": account["role"], "libraries": account["libraries"],
        }

    # --- libraries --------------------------------------------------------------------------------

    @route("GET", "/api/v1/libraries")
    def list_libraries(self, request):
        """The tenant's libraries."""
        return page_of(self.catalog.list_libraries(), request.args.to_dict())

    @route("POST", "/api/v1/libraries", roles=("admin",))
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
        """Look a patron up by card number (?card_number=)."""
        return self.patrons.find_by_card(request.args.to_dict())

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
        self.patrons.delete_patron(patron_id)
        return json_response(204, None)

    @route("GET", f"/api/v1/patrons/<{ID}:patron_id>/loans")
    def patron_loans(self, request, patron_id):
        """A patron's current loans, with titles."""
        self.patrons.get_patron(patron_id)
        return page_of(self.loans.patron_loans(patron_id), request.args.to_dict())

    # --- catalogue --------------------------------------------------------------------------------

    @route("POST", "/api/v1/works")
    def add_work(self, request):
        """Add a bibliographic record."""
        return 201, self.catalog.add_work(read_json(request))

    @route("GET", f"/api/v1/works/<{ID}:work_id>", public=True)
    def get_work(self, request, work_id):
        """A record with its copies' availability per library."""
        return self.catalog.get_work(work_id)

    @route("POST", "/api/v1/items")
    def add_item(self, request):
        """Add a copy of a work to a library."""
        return 201, self.catalog.add_item(read_json(request))

    @route("GET", "/api/v1/items/<barcode>")
    def get_item(self, request, barcode):
        """One copy and its status."""
        return self.catalog.get_item(barcode)

    @route("GET", "/api/v1/search", public=True)
    def search(self, request):
        """Search the catalogue (?q=&library=&available=&page=&per_page=)."""
        return self.catalog.search(request.args.to_dict())

    # --- circulation ------------------------------------------------------------------------------

    @route("POST", "/api/v1/checkouts")
    def checkout(self, request):
        """Lend a copy: card number, item barcode and the desk's library."""
        return 201, self.loans.checkout(read_json(request))

    @route("POST", "/api/v1/checkins")
    def checkin(self, request):
        """Take a copy back: says whether to shelve it here or send it to its own library."""
        return self.loans.checkin(read_json(request))
