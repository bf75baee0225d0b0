"""How Shiori uses its RabbitMQ virtual host, so that the broker itself can enforce who talks to whom.

Every process connects as a user of its own (a *principal*: the service's name, ``operator`` for the
operators' commands), whose permissions ``shiori.commands.provision`` derives from the code. Three things here make
that possible:

- Exchanges are declared by the provisioning only. Declaring one needs the *configure* permission on it,
  which would also let any service delete it; so no process declares an exchange.
- An RPC caller's reply queue and its routing key carry the principal's name (``rpc.reply-gateway-<id>``,
  bound with ``reply.gateway.<id>``), so the broker can let each principal bind and read its own replies only.
- A service parks a failed event on the ``shiori.dead-letters`` exchange under its own name, not through the
  default exchange (publishing there would reach any queue by name, past every topic permission).
"""
import uuid

import nameko.events
import nameko.rpc
from kombu import Exchange, Queue
from nameko.constants import RPC_EXCHANGE_CONFIG_KEY
from nameko.rpc import RPC_REPLY_QUEUE_TTL, ReplyListener
from nameko.standalone.rpc import SingleThreadedReplyListener

RPC_EXCHANGE = "nameko-rpc"
DEAD_LETTERS_EXCHANGE = "shiori.dead-letters"
OPERATOR = "operator"
REPLIES = "reply."  # every reply's routing key starts so, and nothing else may


def events_exchange(service_name):
    return f"{service_name}.events"


def dead_letters_queue(service_name):
    return f"dead-letters.{service_name}"


def reply_routing_prefix(principal):
    return f"{REPLIES}{principal}."


def reply_queue_prefix(principal):
    return f"rpc.reply-{principal}-"


def _provisioned_rpc_exchange(config):
    return Exchange(config.get(RPC_EXCHANGE_CONFIG_KEY, RPC_EXCHANGE), type="topic", durable=True, no_declare=True)


def provisioned_event_exchange(service_name, config=None):
    """A service's events exchange, as provisioning declares it (persistent messages; never declared here)."""
    return Exchange(events_exchange(service_name), type="topic", durable=True, delivery_mode=2, no_declare=True)


# nameko looks both up by module name on every use; these are its own definitions with declaration left out.
nameko.rpc.get_rpc_exchange = _provisioned_rpc_exchange
nameko.events.get_event_exchange = provisioned_event_exchange


def principal_of(container):
    """The broker user a container connects as: its ``BROKER_PRINCIPAL``, else the service's own name."""
    return container.config.get("BROKER_PRINCIPAL") or container.service_name


class _ScopedReplies:
    def setup(self):
        principal = principal_of(self.container)
        reply_id = uuid.uuid4().hex
        self.routing_key = reply_routing_prefix(principal) + reply_id
        self.queue = Queue(reply_queue_prefix(principal) + reply_id,
                           exchange=_provisioned_rpc_exchange(self.container.config),
                           routing_key=self.routing_key, queue_arguments={"x-expires": RPC_REPLY_QUEUE_TTL})
        self.queue_consumer.register_provider(self)


class ScopedReplyListener(_ScopedReplies, ReplyListener):
    """A service's reply queue, named after its principal."""


class ScopedStandaloneReplyListener(_ScopedReplies, SingleThreadedReplyListener):
    """A standalone proxy's reply queue (operators' commands, tests), named after its principal."""
