"""The public catalogue (OPAC) gateway: only the public routes, in a process of its own that can sit in a
DMZ. It has no proxy to the patrons or loans services, no token secret and no key to sign a caller context: it
calls as the anonymous public, and its broker user may call the catalogue's public methods and nothing else.
Its web pages (services/opac/pages.py) are the residents' catalogue; a signed-in resident's own pages
(services/opac/residents.py) call the staff gateway's HTTP API with the resident's token, as any client does."""
from services.gateway.public import CatalogueRoutes
from services.opac.api import GatewayApi
from services.opac.pages import CataloguePages
from services.opac.residents import ResidentPages
from shiori.rpc import ServiceRpc


class OpacService(CatalogueRoutes, CataloguePages, ResidentPages):
    name = "opac"

    catalog = ServiceRpc("catalog", public_only=True)
    api = GatewayApi()
