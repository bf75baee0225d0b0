"""The public catalogue's routes, served by the staff gateway and, alone, by the OPAC gateway (services/opac)."""
from services.gateway.entrypoints import ID, route
from services.gateway.openapi import openapi_document
from services.gateway.schemas import page_of
from shiori.errors import DomainError


class CatalogueRoutes:
    """Needs a ``catalog`` RPC proxy and ``backing_services``, the names of the services ``/health`` asks."""

    backing_services = ("catalog",)

    @route("GET", "/health", public=True)
    def health(self, request):
        """Each backing service's state, with its events waiting in its outbox (how many, the oldest's age in
        seconds) and its dead letters (docs/events.md); 503 naming those that do not answer."""
        states, pending, delivery = {}, {}, {"outbox": {}, "dead_letters": {}}
        for name in self.backing_services:  # asked all at once: the answer takes one timeout at most
            try:
                pending[name] = getattr(self, name).health.call_async()
            except DomainError:
                states[name] = "unavailable"
        for name, reply in pending.items():
            try:
                answer = reply.result()
            except DomainError:
                states[name] = "unavailable"
            else:
                states[name] = answer["status"]
                for field in delivery:
                    if field in answer:
                        delivery[field][name] = answer[field]
        if all(state == "ok" for state in states.values()):
            return {"status": "ok", "services": states, **delivery}
        down = sorted(name for name, state in states.items() if state != "ok")
        return 503, {"error": {"code": "SERVICE_UNAVAILABLE", "message": f"not answering: {', '.join(down)}",
                               "details": {"services": states, **delivery}}}

    @route("GET", "/api/v1/openapi.json", public=True)
    def openapi(self, request):
        """This API, described as OpenAPI 3."""
        return openapi_document(type(self))

    @route("GET", "/api/v1/libraries", public=True)
    def list_libraries(self, request):
        """The tenant's libraries."""
        return page_of(self.catalog.list_libraries(), request.args.to_dict())

    @route("GET", "/api/v1/search", public=True)
    def search(self, request):
        """Search the catalogue: words and fields, filters, a sort order and the matches counted by facet.

        ?q=&title=&author=&publisher=&isbn=&ndc= what to find; &library=&available=&ndc_class=&year_from=
        &year_to= filters; &sort=relevance|newest|popular; &page=&per_page=; &facets=true for the answer's
        ``facets``, the matches counted by library, NDC class, decade and available now (README, "The catalogue:
        imports and search")."""
        return self.catalog.search(request.args.to_dict())

    @route("GET", f"/api/v1/works/<{ID}:work_id>", public=True)
    def get_work(self, request, work_id):
        """A record with its copies' availability per library."""
        return self.catalog.get_work(work_id)
