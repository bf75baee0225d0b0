"""The OpenAPI 3 description, built from the gateway's own routes so it cannot drift from them."""
import re

from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from services.gateway.entrypoints import Route

_PATH_PARAMETER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message", "details"], "properties": {
        "code": {"type": "string", "example": "ITEM_ALREADY_ON_LOAN"},
        "message": {"type": "string"},
        "details": {"type": "object"},
    }}},
}


def openapi_document(service_cls):
    paths = {}
    for route, method in _routes(service_cls):
        path = _PATH_PARAMETER.sub(r"{\2}", route.url)
        summary = (method.__doc__ or "").strip().splitlines()[0] if method.__doc__ else method.__name__
        operation = {
            "operationId": method.__name__,
            "summary": summary,
            "parameters": [
                {"name": name, "in": "path", "required": True,
                 "schema": {"type": "integer" if converter == "int" else "string"}}
                for converter, name in _PATH_PARAMETER.findall(route.url)
            ],
            "responses": {
                "default": {"description": "an error", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}},
                "2XX": {"description": "success", "content": {"application/json": {}}},
            },
        }
        if not route.public:
            operation["security"] = [{"bearer": []}]
        if route.roles:
            operation["x-roles"] = list(route.roles)
        for http_method in route.method.split(","):
            paths.setdefault(path, {})[http_method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "Shiori library system", "version": "1"},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _routes(service_cls):
    for name in dir(service_cls):
        method = getattr(service_cls, name)
        for entrypoint in getattr(method, ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(entrypoint, Route) and entrypoint.in_api:
                yield entrypoint, method
