"""``python -m shiori dead-letters list|replay``: the events a subscriber failed to handle for a reason other
than a passing fault, each parked in its service's ``dead-letters.<service>`` with the handler and the error
in its headers (``shiori.events.Subscription``).

``list`` shows each one's service, handler, event type, error, event id and when the event happened; never its
data (events carry ids only, and even those are not shown). ``replay``, once the cause is fixed, publishes the
chosen ones again on the exchange they came from with their own routing key, and takes them out of the queue.
Every subscriber of that event type gets it again: those that applied it before ignore it by its event id.

Both run as the operator's broker user (``operator_environment``), which may read every queue.
"""
import json
import os

from kombu import Producer

from shiori.broker import dead_letters_queue
from shiori.commands.deployment import operator_environment
from shiori.events import ERROR_HEADER, EVENT_TYPE_HEADER, HANDLER_HEADER, SOURCE_HEADER
from shiori.outbox import confirming_connection
from shiori.tls import with_broker_tls

COLUMNS = ("service", "handler", "event_type", "error", "event_id", "occurred_at")
PUBLISH_TIMEOUT_SECONDS = 10


def subscribing_services():
    from shiori.commands.provision import subscribing_services as provisioned

    return provisioned()


def operator_connection(environ):
    config = with_broker_tls({"AMQP_URI": operator_environment(environ)["AMQP_URI"]}, environ)
    return confirming_connection(config["AMQP_URI"], config.get("AMQP_SSL"))


def parked(channel, service):
    """Every message in the service's dead-letter queue, each taken but not acknowledged: the broker puts back
    those not acknowledged when the channel closes."""
    while (message := channel.basic_get(dead_letters_queue(service), no_ack=False)) is not None:
        yield message


def describe(service, message):
    headers = message.headers or {}
    try:
        body = json.loads(message.body)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return {"service": service, "handler": headers.get(HANDLER_HEADER), "event_type": headers.get(EVENT_TYPE_HEADER),
            "error": headers.get(ERROR_HEADER), "event_id": body.get("event_id"),
            "occurred_at": body.get("occurred_at")}


def dead_letters(services, environ=None):
    """What ``list`` shows: one dict per parked message (``COLUMNS``), queue by queue."""
    environ = os.environ if environ is None else environ
    found = []
    with operator_connection(environ) as connection:
        for service in services:
            with connection.channel() as channel:
                found += [describe(service, message) for message in parked(channel, service)]
    return found


def replay(services, event_ids=None, environ=None):
    """Publish the parked messages again where they came from, those of ``event_ids`` (None: every one), and
    take each out of its queue once the broker has confirmed it. Answers what was replayed (``COLUMNS``)."""
    environ = os.environ if environ is None else environ
    replayed = []
    with operator_connection(environ) as connection:
        for service in services:
            with connection.channel() as reading, connection.channel() as publishing:
                producer = Producer(publishing)
                for message in parked(reading, service):
                    described = describe(service, message)
                    if event_ids is not None and described["event_id"] not in event_ids:
                        continue
                    headers = message.headers or {}
                    if not headers.get(SOURCE_HEADER) or not headers.get(EVENT_TYPE_HEADER):
                        continue  # not one a subscription parked: nowhere to send it back to
                    # As the emitter's relay published it: the same body, no headers, persistent, confirmed.
                    producer.publish(message.body, exchange=headers[SOURCE_HEADER],
                                     routing_key=headers[EVENT_TYPE_HEADER], content_type=message.content_type,
                                     content_encoding=message.content_encoding, headers={}, delivery_mode=2,
                                     timeout=PUBLISH_TIMEOUT_SECONDS)
                    reading.basic_ack(message.delivery_tag)
                    replayed.append(described)
    return replayed


def table(rows):
    """Tab-separated, a header line first."""
    return "\n".join("\t".join("" if row.get(column) is None else str(row[column]) for column in COLUMNS)
                     for row in [dict(zip(COLUMNS, COLUMNS)), *rows])


def main(action, service=None, event_ids=None, replay_all=False, environ=None, out=print):
    """The command: answers its exit status."""
    subscribing = subscribing_services()
    if service is not None and service not in subscribing:
        out(f"{service} subscribes to no events and has no dead letters; these do: {', '.join(subscribing)}")
        return 2
    services = [service] if service else subscribing
    if action == "list":
        out(table(dead_letters(services, environ)))
        return 0
    if not event_ids and not replay_all:
        out("replay what? give --id EVENT_ID (repeatable) or --all")
        return 2
    replayed = replay(services, None if replay_all else set(event_ids), environ)
    out(table(replayed))
    if event_ids and not replay_all:
        missing = sorted(set(event_ids) - {row["event_id"] for row in replayed})
        if missing:
            out(f"not found in {', '.join(services)}: {', '.join(missing)}")
            return 1
    return 0
