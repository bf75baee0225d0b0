"""The public catalogue (OPAC) gateway: only the public routes, in a process of its own that can sit in a
DMZ. It has no proxy to the patrons or loans services and no token secret: whatever reaches it can ask the
catalogue, and nothing else."""
from services.gateway.public import CatalogueRoutes
from shiori.rpc import ServiceRpc


class OpacService(CatalogueRoutes):
    name = "opac"

    catalog = ServiceRpc("catalog")
