"""The one place where domain errors become HTTP: codes to statuses, and the error shape of API.md."""
import json

from werkzeug.wrappers import Response

# Importing the services' error modules registers their errors, so they arrive here as themselves.
from services.catalog import errors as catalog_errors  # noqa: F401
from services.loans import errors as loans_errors  # noqa: F401
from services.notices import errors as notices_errors  # noqa: F401
from services.patrons import errors as patrons_errors  # noqa: F401
from shiori import idempotency  # noqa: F401
from shiori.errors import DomainError, TooManyAttempts, error_class

STATUS_BY_CODE = {
    "VALIDATION_ERROR": 400,
    "INVALID_JSON": 400,
    "PIN_TOO_COMMON": 400,
    "CURRENT_PIN_WRONG": 400,
    "NOT_AUTHENTICATED": 401,
    "INVALID_CREDENTIALS": 401,
    "FORBIDDEN": 403,
    "ROUTE_NOT_FOUND": 404,
    "TENANT_NOT_FOUND": 404,
    "LIBRARY_NOT_FOUND": 404,
    "PATRON_NOT_FOUND": 404,
    "WORK_NOT_FOUND": 404,
    "ITEM_NOT_FOUND": 404,
    "STAFF_ACCOUNT_NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "REQUEST_TIMEOUT": 408,
    "ITEM_ALREADY_ON_LOAN": 409,
    "ITEM_NOT_ON_LOAN": 409,
    "PATRON_HAS_LOANS": 409,
    "LOAN_NOT_FOUND": 404,
    "LOAN_POLICY_NOT_FOUND": 404,
    "CARD_EXPIRED": 409,
    "PATRON_SUSPENDED": 409,
    "CARD_REPORTED_LOST": 409,
    "ITEM_NOT_FOR_LOAN": 409,
    "LOAN_LIMIT_REACHED": 409,
    "OVERDUE_ITEMS": 409,
    "BORROWING_SUSPENDED": 409,
    "LIBRARY_CLOSED": 409,
    "RENEWAL_LIMIT_REACHED": 409,
    "LOAN_OVERDUE": 409,
    "LOAN_POLICY_EXISTS": 409,
    "HOLD_NOT_FOUND": 404,
    "NOTICE_NOT_FOUND": 404,
    "ITEM_HELD_FOR_ANOTHER_PATRON": 409,
    "HOLDS_WAITING": 409,
    "HOLD_EXISTS": 409,
    "HOLD_LIMIT_REACHED": 409,
    "WRONG_PICKUP_LIBRARY": 409,
    "WORK_ALREADY_ON_LOAN": 409,
    "LIBRARY_EXISTS": 409,
    "BARCODE_IN_USE": 409,
    "USERNAME_TAKEN": 409,
    "LAST_ADMIN": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "TOO_MANY_ATTEMPTS": 429,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "INTERNAL_ERROR": 500,
    "SERVICE_UNAVAILABLE": 503,
    # A service refused the context this gateway signed: keys out of step, or a request past its deadline.
    "CONTEXT_REFUSED": 503,
    "DEADLINE_PASSED": 503,
    "REQUEST_ALREADY_DONE": 409,
    "IDEMPOTENCY_KEY_REUSED": 422,
}


class InvalidJson(DomainError):
    code = "INVALID_JSON"
    default_message = "the body is not a JSON object in UTF-8"


class UnsupportedMediaType(DomainError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    default_message = "send the body as application/json"


class PayloadTooLarge(DomainError):
    code = "PAYLOAD_TOO_LARGE"
    default_message = "the body is larger than this route accepts"


class RequestTimeout(DomainError):
    code = "REQUEST_TIMEOUT"
    default_message = "the request body did not arrive in time; the connection is closed"


class RouteNotFound(DomainError):
    code = "ROUTE_NOT_FOUND"
    default_message = "no such route"


class MethodNotAllowed(DomainError):
    code = "METHOD_NOT_ALLOWED"
    default_message = "this route does not take this method"


class InternalError(DomainError):
    code = "INTERNAL_ERROR"
    default_message = "something went wrong on our side; it has been logged"


def json_response(status, payload, headers=None):
    body = "" if payload is None else json.dumps(payload, ensure_ascii=False)
    return Response(body, status=status, headers=headers, mimetype=None if payload is None else "application/json")


def error_response(error: DomainError, headers=None):
    status = STATUS_BY_CODE.get(error.code, 500)
    if isinstance(error, TooManyAttempts):
        headers = {**(headers or {}), "Retry-After": str(error.retry_after)}
    body = {"error": {"code": error.code, "message": error.message, "details": error.details}}
    return json_response(status, body, headers)


def error_from_answer(answer):
    """The domain error an API answer in the error shape stands for (a client of the API, such as the OPAC's pages,
    then handles it as the gateway's own callers do); an unknown code is an InternalError."""
    error = answer.get("error", {})
    return error_class(error.get("code"), InternalError)(error.get("message"), error.get("details") or {})


def status_of(error=None):
    """The HTTP status of a domain error (200 for none): what a page answering it says too."""
    return 200 if error is None else STATUS_BY_CODE.get(error.code, 500)
