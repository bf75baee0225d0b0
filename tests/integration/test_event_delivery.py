"""How subscriptions treat failures, on the real broker: a passing fault is retried, any other failure is
parked in the dead-letter queue, and the queue moves on."""
import json

from kombu import Connection, Exchange, Queue
from nameko.runners import ServiceRunner
from nameko.standalone.events import event_dispatcher
from sqlalchemy.exc import OperationalError

from shiori.broker import DEAD_LETTERS_EXCHANGE, dead_letters_queue, events_exchange
from shiori.events import envelope, subscribe
from support import unique, wait_until

received = []
attempts = {}


class FlakyConsumer:
    name = "test_flaky_consumer"

    @subscribe("test_emitter", "thing_happened")
    def on_thing(self, body):
        kind, marker = body["data"]["kind"], body["data"]["m"]
        attempts[kind, marker] = attempts.get((kind, marker), 0) + 1
        if kind == "poison":
            raise ValueError("this event can never be handled")
        if kind == "flaky" and attempts[kind, marker] < 3:
            raise OperationalError("SELECT 1", {}, Exception("database is restarting"))
        received.append((kind, marker))


def provision_made_up_emitter_and_consumer(amqp_uri):
    """What provisioning does for the deployment's own services: no process declares an exchange, and a
    subscriber's dead-letter queue exists before it fails."""
    with Connection(amqp_uri) as connection:
        channel = connection.default_channel
        Exchange(events_exchange("test_emitter"), type="topic", durable=True)(channel).declare()
        Queue(dead_letters_queue(FlakyConsumer.name), durable=True, routing_key=FlakyConsumer.name,
              exchange=Exchange(DEAD_LETTERS_EXCHANGE, type="topic", durable=True))(channel).declare()


def test_passing_faults_are_retried_and_poison_is_parked(amqp_uri):
    provision_made_up_emitter_and_consumer(amqp_uri)
    config = {"AMQP_URI": amqp_uri}
    runner = ServiceRunner(config)
    runner.add_service(FlakyConsumer)
    runner.start()
    dead_letters = dead_letters_queue(FlakyConsumer.name)
    try:
        dispatch = event_dispatcher(config)
        marker = unique("m")
        for kind in ("poison", "flaky", "fine"):
            dispatch("test_emitter", "thing_happened", envelope("thing_happened", 1, "t", {"kind": kind, "m": marker}))

        wait_until(lambda: {("flaky", marker), ("fine", marker)} <= set(received), timeout=15,
                   message="both good events handled")
        assert attempts["flaky", marker] == 3 and attempts["poison", marker] == 1

        def our_dead_letter():
            with Connection(amqp_uri) as connection:
                while (message := connection.default_channel.basic_get(dead_letters, no_ack=True)) is not None:
                    if json.loads(message.body)["data"].get("m") == marker:
                        return message

        message = wait_until(our_dead_letter, message="the poison event in the dead-letter queue")
        assert json.loads(message.body)["data"] == {"kind": "poison", "m": marker}
        assert message.headers["x-error"].startswith("ValueError")
        assert message.headers["x-handler"] == "test_flaky_consumer.on_thing"
    finally:
        runner.stop()
