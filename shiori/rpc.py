"""RPC between services, always with a deadline.

nameko 2's in-service ``RpcProxy`` waits for ever. Every proxy here gives up after ``RPC_TIMEOUT`` seconds
with ``ServiceUnavailable``, and the request message carries the same TTL, so a command that nobody
picked up in time expires in the queue instead of running late, after the caller has given up.
"""
import time

import eventlet
from amqp.exceptions import AMQPError
from kombu.exceptions import OperationalError
from nameko.exceptions import UnknownService
from nameko.extensions import DependencyProvider
from nameko.rpc import MethodProxy, RpcProxy, ServiceProxy
from nameko.rpc import rpc as nameko_rpc

from shiori.errors import DomainError, Forbidden, ServiceUnavailable

DEFAULT_RPC_TIMEOUT = 5.0
_BROKER_FAILURES = (UnknownService, OSError, OperationalError, AMQPError)


def rpc(method):
    """An RPC entrypoint whose domain errors are expected outcomes (logged quietly, sent back as themselves)."""
    return nameko_rpc(expected_exceptions=DomainError)(method)


class Caller(DependencyProvider):
    """Who is calling, from nameko context data: the gateway sets it per request and it follows every
    call and event the request leads to."""

    def get_dependency(self, worker_ctx):
        return CallerContext(worker_ctx.data)


class CallerContext:
    """Who the call is for: ``tenant``; ``actor`` ("staff:12", "patron:34", "operator", "public"); ``role``
    (admin, librarian, school_librarian, patron, operator, public); the staff member's ``libraries``; and,
    for the access record, the client's ``address`` and the HTTP ``route`` it came through."""

    def __init__(self, data):
        self.data = data

    @property
    def tenant(self):
        tenant = self.data.get("tenant")
        if not tenant:
            raise DomainError("the call carries no tenant")
        return tenant

    @property
    def actor(self):
        return self.data.get("actor", "unknown")

    @property
    def role(self):
        return self.data.get("role")

    @property
    def libraries(self):
        return [code for code in (self.data.get("libraries") or "").split(",") if code]

    @property
    def patron_id(self):
        """The patron's own id when a patron is calling, else None."""
        kind, _, number = self.actor.partition(":")
        return int(number) if kind == "patron" and number.isdigit() else None

    @property
    def address(self):
        return self.data.get("address")

    @property
    def route(self):
        return self.data.get("route")

    def act_as(self, tenant, actor, role):
        """For work no request started (timers): act for ``tenant`` as ``actor``, and have the calls and
        events this worker makes carry that identity."""
        self.data.update(tenant=tenant, actor=actor, role=role)

    def require(self, roles):
        """Refuse the call unless the caller has one of ``roles``."""
        if self.role not in roles:
            raise Forbidden(details={"allowed_roles": list(roles)})


class ServiceRpc(RpcProxy):
    """Like ``RpcProxy``, with the container's ``RPC_TIMEOUT`` as a deadline on every call."""

    def get_dependency(self, worker_ctx):
        timeout = float(self.container.config.get("RPC_TIMEOUT", DEFAULT_RPC_TIMEOUT))
        return DeadlineServiceProxy(
            worker_ctx, self.target_service, self.rpc_reply_listener, timeout=timeout, **self.options
        )


class DeadlineServiceProxy(ServiceProxy):
    def __init__(self, worker_ctx, service_name, reply_listener, timeout, **options):
        super().__init__(worker_ctx, service_name, reply_listener, **options)
        self.timeout = timeout

    def __getattr__(self, name):
        return DeadlineMethodProxy(
            self.worker_ctx, self.service_name, name, self.reply_listener, timeout=self.timeout, **self.options
        )


class DeadlineMethodProxy(MethodProxy):
    def __init__(self, worker_ctx, service_name, method_name, reply_listener, timeout, **options):
        super().__init__(worker_ctx, service_name, method_name, reply_listener, expiration=timeout, **options)
        self.timeout = timeout

    def _call(self, *args, **kwargs):
        deadline = time.monotonic() + self.timeout
        with _bounded(self, self.timeout):
            reply = super()._call(*args, **kwargs)
        return DeadlineReply(self, reply, deadline)


class DeadlineReply:
    def __init__(self, method, reply, deadline):
        self.method = method
        self.reply = reply
        self.deadline = deadline

    def result(self):
        remaining = max(0.0, self.deadline - time.monotonic())
        try:
            with _bounded(self.method, remaining):
                return self.reply.result()
        except ServiceUnavailable:
            self._forget()
            raise

    def _forget(self):
        # The reply may still come; the listener must not keep waiting for it.
        pending = self.method.reply_listener._reply_events
        for correlation_id, event in list(pending.items()):
            if event is self.reply.reply_event:
                del pending[correlation_id]


class _bounded:
    """Raise ``ServiceUnavailable`` if the block takes longer than ``seconds`` or the broker fails."""

    def __init__(self, method, seconds):
        self.method = method
        self.timer = eventlet.Timeout(seconds)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, _tb):
        self.timer.cancel()
        if exc is self.timer or isinstance(exc, _BROKER_FAILURES):
            service = self.method.service_name
            raise ServiceUnavailable(
                f"the {service} service did not answer in time", {"service": service}
            ) from None
        return False
