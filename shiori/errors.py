"""Domain errors that cross RPC as themselves.

A service raises a named error with a stable ``code``; nameko serialises it, and because every subclass is
registered with nameko's deserialisation registry, the caller gets the same class back instead of a
``RemoteError``. The gateway turns codes into HTTP statuses in one table (services/gateway/errors.py).
"""
import json

from marshmallow import ValidationError
from nameko.exceptions import deserialize_to_instance


class DomainError(Exception):
    code = "DOMAIN_ERROR"
    default_message = "the request could not be carried out"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        deserialize_to_instance(cls)

    def __init__(self, message=None, details=None):
        # Positional arguments, because nameko rebuilds the error as cls(*args) on the caller's side; the
        # details as JSON text, because on the way nameko turns every number in them into a string.
        if isinstance(details, str):
            details = json.loads(details)
        super().__init__(message or self.default_message, json.dumps(details or {}, ensure_ascii=False, default=str))

    @property
    def message(self):
        return self.args[0]

    @property
    def details(self):
        return json.loads(self.args[1])

    def __str__(self):
        return self.message


deserialize_to_instance(DomainError)


class InvalidInput(DomainError):
    code = "VALIDATION_ERROR"
    default_message = "the request has invalid fields"


class NotAuthenticated(DomainError):
    code = "NOT_AUTHENTICATED"
    default_message = "a valid access token is required"


class Forbidden(DomainError):
    code = "FORBIDDEN"
    default_message = "your role may not do this"


class TooManyAttempts(DomainError):
    code = "TOO_MANY_ATTEMPTS"
    default_message = "too many failed attempts; try again later"

    @property
    def retry_after(self):
        return int(self.details.get("retry_after", 60))


class ServiceUnavailable(DomainError):
    code = "SERVICE_UNAVAILABLE"
    default_message = "a backing service did not answer in time"


def error_class(code, unknown=DomainError):
    """The domain error class with this ``code`` among those imported (``unknown`` for none)."""
    pending = [DomainError]
    while pending:
        error = pending.pop()
        if error.code == code:
            return error
        pending.extend(error.__subclasses__())
    return unknown


def load(schema, data, **kwargs):
    """``schema.load`` that reports bad input as ``InvalidInput`` with the per-field messages."""
    try:
        return schema.load(data, **kwargs)
    except ValidationError as error:
        raise InvalidInput(details=error.normalized_messages()) from None
