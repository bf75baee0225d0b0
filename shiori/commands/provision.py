"""``python -m shiori provision-broker``: the deployment's virtual host, a broker user per process, and
exactly the permissions each one's code needs — read off the code itself, so that a consumer joining later
(a school library, another notice sender) gets its grants by being written, not by someone editing a list.

What a principal may do on the broker (``shiori.broker`` explains the names):
- a service consumes its own RPC queue (``rpc-<name>``, bound ``<name>.*``) and replies to any caller;
- it calls the methods of the services it holds an ``RpcProxy`` for (only the public ones, for an anonymous
  caller such as the OPAC), on a reply queue of its own;
- it publishes the events it declares (``PUBLISHED_EVENTS``) on its own events exchange, binds queues for the
  events it subscribes to and nothing else, and parks failures in its own dead-letter queue;
- the ``operator`` (the vendor's commands) may do anything in the virtual host, and no one else binds ``#``;
- ``guest`` has no access at all.

It runs against RabbitMQ's management API (``SHIORI_BROKER_ADMIN_URL``), and is idempotent: run again, it
puts the same users, passwords and permissions back, and removes grants the code no longer needs.
"""
import base64
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

from nameko.events import BROADCAST
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc

from shiori.broker import (
    DEAD_LETTERS_EXCHANGE, OPERATOR, REPLIES, RPC_EXCHANGE, dead_letters_queue, events_exchange, reply_queue_prefix,
    reply_routing_prefix,
)

DEFAULT_ADMIN_URL = "http://guest:guest@127.0.0.1:15672"
REPLY_ID = "[0-9a-f]{32}"
BROADCAST_ID = "[0-9a-f]{32}"  # nameko's broadcast identifier of a process: a uuid4's hex
METHOD = "[a-z_][a-z0-9_]*"
NOTHING = "^$"  # matches no resource: RabbitMQ's name for the default exchange is amq.default


@dataclass
class Grants:
    """One principal's permissions: regular expressions per operation, and per topic exchange the routing
    keys it may publish (write) and bind (read)."""

    principal: str
    configure: set = field(default_factory=set)
    write: set = field(default_factory=set)
    read: set = field(default_factory=set)
    topics: dict = field(default_factory=dict)

    def own_queue(self, pattern):
        self.configure.add(pattern)
        self.write.add(pattern)  # binding a queue is writing to it
        self.read.add(pattern)

    def topic(self, exchange, write=None, read=None):
        keys = self.topics.setdefault(exchange, {"write": set(), "read": set()})
        if write:
            self.write.add(re.escape(exchange))
            keys["write"].add(write)
        if read:
            self.read.add(re.escape(exchange))
            keys["read"].add(read)

    def permissions(self):
        return {operation: _alternatives(getattr(self, operation)) for operation in ("configure", "write", "read")}

    def topic_permissions(self):
        return [{"exchange": exchange, "write": _alternatives(keys["write"]), "read": _alternatives(keys["read"])}
                for exchange, keys in sorted(self.topics.items())]


def _alternatives(patterns):
    return f"^({'|'.join(sorted(patterns))})$" if patterns else NOTHING


def entrypoints_of(service_class):
    for attribute in dir(service_class):
        for entrypoint in getattr(getattr(service_class, attribute), "nameko_entrypoints", ()):
            yield attribute, entrypoint


def dependencies_of(service_class):
    return [value for attribute in dir(service_class)
            if isinstance(value := getattr(service_class, attribute), DependencyProvider)]


def public_methods(service_class):
    return sorted(name for name, entrypoint in entrypoints_of(service_class)
                  if isinstance(entrypoint, Rpc) and getattr(entrypoint, "public", False))


def methods_for(caller, service_class):
    """The methods of ``service_class`` that ``caller`` may send: any name, unless some of them admit only
    named callers (``@rpc(callers=...)``); then each of the others by name."""
    methods = [(name, getattr(entrypoint, "callers", None)) for name, entrypoint in entrypoints_of(service_class)
               if isinstance(entrypoint, Rpc)]
    if all(callers is None for _name, callers in methods):
        return [METHOD]
    return sorted(name for name, callers in methods if callers is None or caller in callers)


def service_grants(service_class, service_class_of):
    """What the code of ``service_class`` does on the broker, as grants; ``service_class_of(name)`` finds the
    class of a service it calls (for the public methods an anonymous caller is let call)."""
    from shiori.events import EventPublisher, Subscription
    from shiori.rpc import ServiceRpc

    name = service_class.name
    grants = Grants(name)
    entrypoints = list(entrypoints_of(service_class))
    if any(isinstance(entrypoint, Rpc) for _attribute, entrypoint in entrypoints):
        grants.own_queue(re.escape(f"rpc-{name}"))
        grants.topic(RPC_EXCHANGE, read=re.escape(f"{name}.*"), write=re.escape(REPLIES) + ".+")
    subscriptions = [(attribute, entrypoint) for attribute, entrypoint in entrypoints
                     if isinstance(entrypoint, Subscription)]
    for attribute, subscription in subscriptions:
        source, event_type = subscription.source_service, subscription.event_type
        # A broadcast subscription's queue carries the process's own identifier after the handler's name.
        process = f"-{BROADCAST_ID}" if subscription.handler_type == BROADCAST else ""
        grants.own_queue(re.escape(f"evt-{source}-{event_type}--{name}.{attribute}") + process)
        grants.topic(events_exchange(source), read=re.escape(event_type))
    if subscriptions:
        grants.topic(DEAD_LETTERS_EXCHANGE, write=re.escape(name))
    for dependency in dependencies_of(service_class):
        if isinstance(dependency, ServiceRpc):
            target = dependency.target_service
            methods = public_methods(service_class_of(target)) if dependency.public_only else \
                methods_for(name, service_class_of(target))
            grants.own_queue(re.escape(reply_queue_prefix(name)) + REPLY_ID)
            grants.topic(RPC_EXCHANGE, read=re.escape(reply_routing_prefix(name)) + REPLY_ID,
                         write=re.escape(f"{target}.") + f"({'|'.join(methods)})")
        elif isinstance(dependency, EventPublisher):
            grants.topic(events_exchange(name), write="|".join(re.escape(event) for event in dependency.catalogue))
    return grants


def operator_grants():
    grants = Grants(OPERATOR)
    grants.configure.add(".*")
    grants.write.add(".*")
    grants.read.add(".*")
    return grants


def deployment_grants():
    """Every principal of the deployment and its grants, from the services' code."""
    from shiori.commands.serve import SERVICE_NAMES, service_class

    return {**{name: service_grants(service_class(name), service_class) for name in SERVICE_NAMES},
            OPERATOR: operator_grants()}


def publishing_services():
    from shiori.events import EventPublisher
    from shiori.commands.serve import SERVICE_NAMES, service_class

    return [name for name in SERVICE_NAMES
            if any(isinstance(dependency, EventPublisher) for dependency in dependencies_of(service_class(name)))]


def subscribing_services():
    from shiori.commands.serve import SERVICE_NAMES

    grants = deployment_grants()
    return [name for name in SERVICE_NAMES if DEAD_LETTERS_EXCHANGE in grants[name].topics]


def broker_user(vhost, principal):
    """Users are the broker's, not the virtual host's: each deployment's carry its virtual host's name."""
    return f"{vhost}.{principal}"


def amqp_uri(broker_url, vhost, principal, password):
    """The AMQP URI a principal connects with: ``broker_url`` (``amqp[s]://host:port``) with its user and
    the deployment's virtual host."""
    parts = urlsplit(broker_url)
    host = parts.netloc.rpartition("@")[2]
    credentials = f"{quote(broker_user(vhost, principal), safe='')}:{quote(password, safe='')}"
    return urlunsplit((parts.scheme, f"{credentials}@{host}", "/" + quote(vhost, safe=""), parts.query, ""))


class ProvisioningFailed(Exception):
    pass


class ManagementApi:
    """The few calls of RabbitMQ's management HTTP API that provisioning makes."""

    def __init__(self, admin_url, timeout=10):
        parts = urlsplit(admin_url)
        self.base = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path.rstrip("/"), "", ""))
        self.user = parts.username or "guest"
        credentials = f"{self.user}:{parts.password or 'guest'}"
        self.authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
        self.timeout = timeout

    def call(self, method, path, body=None, missing_ok=False):
        request = urllib.request.Request(
            self.base + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": self.authorization, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read()
                return json.loads(text) if text else None
        except urllib.error.HTTPError as error:
            if missing_ok and error.code == 404:
                return None
            raise ProvisioningFailed(f"{method} {path}: {error.code} {error.read()[:300]!r}") from None
        except OSError as error:
            raise ProvisioningFailed(f"the broker's management API at {self.base} does not answer ({error}); "
                                     "enable it with `rabbitmq-plugins enable rabbitmq_management`") from None

    def put(self, path, body):
        return self.call("PUT", path, body)

    def delete(self, path):
        return self.call("DELETE", path, missing_ok=True)


def _path(*segments):
    return "/api/" + "/".join(quote(segment, safe="") for segment in segments)


def provision(admin_url, vhost, passwords):
    """Create or bring up to date the virtual host ``vhost``, its exchanges, and a user per principal with
    ``passwords[principal]``; answers the grants it set."""
    api = ManagementApi(admin_url)
    grants = deployment_grants()
    missing = sorted(set(grants) - set(passwords))
    if missing:
        raise ProvisioningFailed(f"no broker password for {', '.join(missing)}")
    api.put(_path("vhosts", vhost), {})
    # The administrator may act inside the virtual host only while it sets it up (it may be guest).
    api.put(_path("permissions", vhost, api.user), {"configure": ".*", "write": ".*", "read": ".*"})
    try:
        for exchange in [RPC_EXCHANGE, DEAD_LETTERS_EXCHANGE, *map(events_exchange, publishing_services())]:
            api.put(_path("exchanges", vhost, exchange), {"type": "topic", "durable": True})
        for service in subscribing_services():
            queue = dead_letters_queue(service)
            api.put(_path("queues", vhost, queue), {"durable": True})
            api.call("POST", _path("bindings", vhost, "e", DEAD_LETTERS_EXCHANGE, "q", queue),
                     {"routing_key": service})
    finally:
        api.delete(_path("permissions", vhost, api.user))
    for principal, grant in grants.items():
        user = broker_user(vhost, principal)
        api.put(_path("users", user), {"password": passwords[principal], "tags": ""})
        api.put(_path("permissions", vhost, user), grant.permissions())
        api.delete(_path("topic-permissions", vhost, user))
        for topic in grant.topic_permissions():
            api.put(_path("topic-permissions", vhost, user), topic)
    api.delete(_path("permissions", vhost, "guest"))
    return grants


def deprovision(admin_url, vhost):
    """Remove the virtual host and its users (a test run's, a benchmark's)."""
    api = ManagementApi(admin_url)
    api.delete(_path("vhosts", vhost))
    for principal in deployment_grants():
        api.delete(_path("users", broker_user(vhost, principal)))
