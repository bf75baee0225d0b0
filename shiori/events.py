"""Facts on the broker, in the versioned envelope that docs/events.md documents.

Every event is ``{event_id, event_type, version, occurred_at, tenant, data}``. The emitter declares each
event type it publishes with a version and a marshmallow schema for ``data``, so nothing undocumented
leaves a service. It writes each event to its outbox in the transaction of the change the event tells, and
a relay in the process publishes it once committed (shiori/outbox.py): an event may therefore arrive twice.
Consumers record each ``event_id`` they have applied in the same transaction as the effect, so a
redelivered event changes nothing.

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
from amqp.exceptions import AMQPError, NotFound
from kombu.exceptions import KombuError
from nameko.amqp.publish import Publisher, get_connection
from nameko.constants import AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY, LOGIN_METHOD_CONFIG_KEY
from nameko.events import BROADCAST, EventHandler
from nameko.extensions import DependencyProvider
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from shiori.broker import DEAD_LETTERS_EXCHANGE, dead_letters_queue, provisioned_event_exchange
from shiori.db import UtcDateTime
from shiori.errors import ServiceUnavailable
from shiori.outbox import KeptEnvelopes, Outbox, Relay, confirming_connection

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


class EventPublisher(DependencyProvider):
    """``self.publish(event_type, tenant, data)``: validates ``data`` against the declared schema, wraps it, and
    writes it to the service's outbox (``outbox_model``, an ``OutboxEventMixin`` table) in the worker's open
    transaction on its ``database`` (the name of the service's Database attribute): publish, then commit. The
    relay in this process sends what commits. ``envelopes_in`` names the config key of an erasing store where
    the envelopes wait instead of the outbox rows (shiori/outbox.py says when a service needs one)."""

    def __init__(self, catalogue, outbox_model, database="db", envelopes_in=None):
        # catalogue: {event_type: (version, schema instance)}
        self.catalogue = catalogue
        self.outbox_model = outbox_model
        self.database = database
        self.envelopes_in = envelopes_in
        self.writers = {}
        self.outbox = self.relay = None

    def setup(self):
        config = self.container.config
        database = next(dependency for dependency in self.container.dependencies
                        if dependency.attr_name == self.database)
        kept = KeptEnvelopes(config[self.envelopes_in], self.envelopes_in) if self.envelopes_in else None
        self.outbox = Outbox(self.outbox_model, lambda: database.session_factory(), kept)
        self.relay = Relay(
            self.outbox, provisioned_event_exchange(self.container.service_name),
            lambda: confirming_connection(config[AMQP_URI_CONFIG_KEY], config.get(AMQP_SSL_CONFIG_KEY),
                                          config.get(LOGIN_METHOD_CONFIG_KEY)),
            self.container.serializer, self.container.service_name)

    def start(self):
        self.relay.start(self.container.spawn_managed_thread)

    def stop(self):
        self.relay.stop()
        if self.outbox.kept is not None:
            self.outbox.kept.dispose()

    def get_dependency(self, worker_ctx):
        def publish(event_type, tenant, data):
            version, schema = self.catalogue[event_type]
            errors = schema.validate(data)
            if errors:
                raise ValueError(f"{event_type} payload breaks its contract: {errors}")
            writer = self.writers.get(worker_ctx)
            if writer is None:
                session = getattr(worker_ctx.service, self.database)
                writer = self.writers[worker_ctx] = self.outbox.writer(session, committed=self.relay.wake)
            writer.add(event_type, envelope(event_type, version, tenant, schema.dump(data)))

        return publish

    def worker_teardown(self, worker_ctx):
        writer = self.writers.pop(worker_ctx, None)
        if writer is not None:
            writer.abandon()  # whatever it kept for a commit that did not come

    def backlog(self):
        return self.outbox.backlog()


def envelope(event_type, version, tenant, data):
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "version": version,
        "occurred_at": datetime.now(timezone.utc).isoformat(),
        "tenant": tenant,
        "data": data,
    }


# What a dead letter's headers say: where the event came from, and which handler failed on it with what error.
SOURCE_HEADER, EVENT_TYPE_HEADER, HANDLER_HEADER, ERROR_HEADER = "x-source", "x-event-type", "x-handler", "x-error"


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
            headers={SOURCE_HEADER: message.delivery_info.get("exchange"),
                     EVENT_TYPE_HEADER: message.delivery_info.get("routing_key"),
                     HANDLER_HEADER: f"{service}.{self.method_name}",
                     ERROR_HEADER: f"{type(error).__name__}: {error}"[:500]},
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


class EventDelivery(DependencyProvider):
    """For the ``health`` call: how many of this service's events wait in its outbox and for how long (when it
    publishes any), and how many events it failed to handle wait in its dead-letter queue."""

    def get_dependency(self, worker_ctx):
        return self.report

    def report(self):
        publishers = [dependency for dependency in self.container.dependencies
                      if isinstance(dependency, EventPublisher)]
        answer = {"dead_letters": self.dead_letters()}
        if publishers:
            answer["outbox"] = publishers[0].backlog()
        return answer

    def dead_letters(self):
        """The depth of ``dead-letters.<service>`` (a passive declare, which needs no permission); None when
        it cannot be told (the queue is missing, or the broker did not answer this question)."""
        config = self.container.config
        try:
            with get_connection(config[AMQP_URI_CONFIG_KEY], config.get(AMQP_SSL_CONFIG_KEY)) as connection:
                channel = connection.channel()
                try:
                    return channel.queue_declare(dead_letters_queue(self.container.service_name),
                                                 passive=True).message_count
                finally:
                    if channel.is_open:
                        channel.close()
        except NotFound:
            return None
        except (OSError, AMQPError, KombuError) as error:  # the service answers; only this count is unknown
            log.warning("could not count the dead letters: %s", type(error).__name__)
            return None
