"""Facts on the broker, in the versioned envelope that docs/events.md documents.

Every event is ``{event_id, event_type, version, occurred_at, tenant, data}``. The emitter declares each
event type it publishes with a version and a marshmallow schema for ``data``, so nothing undocumented
leaves a service. Consumers record each ``event_id`` they have applied in the same transaction as the
effect, so a redelivered event changes nothing.

An event carries no headers: not the caller (nameko would copy the request's actor, address and route into
every event it leads to), and not the call-id stack, which the two facts of one check-out would share and
so pair the patron of one with the copy of the other (PRIVACY.md 2 and 4). A handler's worker therefore
starts with nobody; work it passes on is done as the service itself (``caller.act_as``).
"""
import logging
import uuid
from datetime import datetime, timezone

from marshmallow import EXCLUDE, Schema, ValidationError, fields
import eventlet
from nameko.amqp.publish import Publisher
from nameko.constants import AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY
from nameko.events import BROADCAST, EventDispatcher, EventHandler
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from shiori.broker import DEAD_LETTERS_EXCHANGE
from shiori.db import UtcDateTime
from shiori.errors import ServiceUnavailable

log = logging.getLogger(__name__)
PASSING_FAULTS = (OperationalError, InterfaceError, ServiceUnavailable)
RETRY_PAUSE_SECONDS = 1.0


class EnvelopeSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    event_id = fields.UUID(required=True)
    event_type = fields.String(required=True)
    version = fields.Integer(required=True)
    occurred_at = fields.AwareDateTime(required=True)
    tenant = fields.String(required=True)
    data = fields.Dict(required=True)


class EventPublisher(EventDispatcher):
    """``self.publish(event_type, tenant, data)``: validates ``data`` against the declared schema, wraps it."""

    def __init__(self, catalogue, **kwargs):
        # catalogue: {event_type: (version, schema instance)}
        self.catalogue = catalogue
        super().__init__(**kwargs)

    def get_message_headers(self, worker_ctx):
        return {}

    def get_dependency(self, worker_ctx):
        dispatch = super().get_dependency(worker_ctx)

        def publish(event_type, tenant, data):
            version, schema = self.catalogue[event_type]
            errors = schema.validate(data)
            if errors:
                raise ValueError(f"{event_type} payload breaks its contract: {errors}")
            dispatch(event_type, envelope(event_type, version, tenant, schema.dump(data)))

        return publish


def envelope(event_type, version, tenant, data):
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "version": version,
        "occurred_at": datetime.now(timezone.utc).isoformat(),
        "tenant": tenant,
        "data": data,
    }


class Subscription(EventHandler):
    """A durable subscription that neither loses an event nor retries it for ever.

    A passing fault (database or another service unreachable) puts the event back after a pause; any
    other failure parks it, with the error, in the service's dead-letter queue ``dead-letters.<service>``
    for an operator, and the queue moves on.
    """

    def unpack_message_headers(self, message):
        return {}

    def handle_message_processed(self, message, result=None, exc_info=None):
        if exc_info is None:
            self.queue_consumer.ack_message(message)
        elif isinstance(exc_info[1], PASSING_FAULTS):
            eventlet.sleep(RETRY_PAUSE_SECONDS)
            self.queue_consumer.requeue_message(message)
        else:
            try:
                self.dead_letter(message, exc_info[1])
            except Exception:  # the event must not be lost because parking it failed: keep it queued
                log.exception("could not park a failed %s; requeued", message.delivery_info.get("routing_key"))
                eventlet.sleep(RETRY_PAUSE_SECONDS)
                self.queue_consumer.requeue_message(message)
            else:
                self.queue_consumer.ack_message(message)

    def dead_letter(self, message, error):
        service = self.container.service_name
        config = self.container.config
        publisher = Publisher(config[AMQP_URI_CONFIG_KEY], ssl=config.get(AMQP_SSL_CONFIG_KEY))
        publisher.publish(
            message.payload, routing_key=service, exchange=DEAD_LETTERS_EXCHANGE,
            headers={"x-source": message.delivery_info.get("exchange"),
                     "x-event-type": message.delivery_info.get("routing_key"),
                     "x-handler": f"{service}.{self.method_name}",
                     "x-error": f"{type(error).__name__}: {error}"[:500]},
        )
        log.error("parked %s in dead-letters.%s: %s", message.delivery_info.get("routing_key"), service,
                  type(error).__name__)


subscribe = Subscription.decorator


class Broadcast(Subscription):
    """A subscription of every process of the service, not of one of them: each gets every event, on a queue
    of its own (named with a process-unique suffix, removed when the process goes). For what each process
    keeps in memory, such as a gateway's revoked tokens. An event published while a process is down is not
    kept for it: such a subscriber must catch up by asking when it starts."""

    def __init__(self, source_service, event_type, **kwargs):
        super().__init__(source_service, event_type, handler_type=BROADCAST, reliable_delivery=False, **kwargs)

    def setup(self):
        super().setup()
        # Not exclusive (nameko's default for a broadcast), so that the operator may look into it as into any
        # queue; the broker's permissions keep it the subscriber's, and auto-delete removes it with the process.
        self.queue.exclusive = False


broadcast = Broadcast.decorator


def read_event(body, version, data_schema):
    """The envelope and its data, or None for a malformed or unknown-version event (logged, then dropped:
    raising would requeue a message that can never succeed)."""
    try:
        event = EnvelopeSchema().load(body)
    except ValidationError as error:
        log.error("dropping malformed event: %s", error.normalized_messages())
        return None
    if event["version"] != version:
        log.warning("ignoring %s version %s (handles %s)", event["event_type"], event["version"], version)
        return None
    try:
        event["data"] = data_schema.load(event["data"])
    except ValidationError as error:
        log.error("dropping %s %s: %s", event["event_type"], event["event_id"], error.normalized_messages())
        return None
    return event


class ProcessedEventMixin:
    """A consumer's record of applied event ids (ids only, never a payload)."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UtcDateTime)


def first_delivery(session, model, event):
    """True, and the event id noted in the open transaction, unless this event was applied before."""
    event_id = str(event["event_id"])
    if session.get(model, event_id) is not None:
        return False
    session.add(model(event_id=event_id, processed_at=datetime.now(timezone.utc)))
    return True
