"""RPC between services, always with a deadline.

nameko 2's in-service ``RpcProxy`` waits for ever. Every proxy here gives up after ``RPC_TIMEOUT`` seconds
with ``ServiceUnavailable``, and the request message carries the same TTL, so a command that nobody
picked up in time expires in the queue instead of running late, after the caller has given up. The call
also carries that moment as its ``deadline`` (epoch milliseconds, never later than the deadline of the call
it is part of): a command taken up in time but slow refuses to commit after it (shiori.idempotency).
"""
import logging
import time
from functools import partial

import eventlet
from amqp.exceptions import AMQPError
from kombu.exceptions import OperationalError
from nameko.constants import CALL_ID_STACK_CONTEXT_KEY
from nameko.exceptions import UnknownService
from nameko.extensions import DependencyProvider, SharedExtension
from nameko.rpc import MethodProxy, Rpc, RpcProxy, ServiceProxy

from shiori.broker import REPLIES, ScopedReplyListener
from shiori.context import (
    DEFAULT_LIFETIME_SECONDS, ContextRefused, ContextSigner, ContextVerifier, anonymous, refusal_logged,
)
from shiori.errors import DomainError, Forbidden, ServiceUnavailable

log = logging.getLogger(__name__)
DEFAULT_RPC_TIMEOUT = 5.0
_BROKER_FAILURES = (UnknownService, OSError, OperationalError, AMQPError)


class ContextKeys(SharedExtension):
    """The container's keys for caller contexts: the public keys of every signer, and its own signing key
    if it has one (``CONTEXT_SIGNING_KEY``; the public catalogue has none)."""

    def setup(self):
        config = self.container.config
        self.verifier = ContextVerifier.from_text(config.get("CONTEXT_VERIFY_KEYS"))
        key = config.get("CONTEXT_SIGNING_KEY")
        lifetime = int(config.get("CONTEXT_LIFETIME_SECONDS") or DEFAULT_LIFETIME_SECONDS)
        self.signer = ContextSigner(self.container.service_name, key, lifetime) if key else None

    def sign(self, data):
        """``data`` signed by this process, or unchanged (anonymous) where it holds no key."""
        return self.signer.sign(data) if self.signer else data


class VerifiedRpc(Rpc):
    """An RPC entrypoint that runs a worker only for a caller context it can verify (``shiori.context``); a
    ``public`` one also serves anonymous calls, as the anonymous public. A refusal is answered as
    ``CONTEXT_REFUSED`` and logged."""

    context_keys = ContextKeys()

    def __init__(self, public=False, callers=None, **kwargs):
        self.public, self.callers = public, callers
        super().__init__(**kwargs)

    def handle_message(self, body, message):
        # A reply that cannot be published (no reply address, or one outside reply.*, which no principal may
        # publish to) would kill the container in nameko's result handling: such a request is dropped.
        if not str(message.properties.get("reply_to") or "").startswith(REPLIES):
            log.warning("dropped a call to %s.%s without a reply address", self.container.service_name,
                        self.method_name)
            self.rpc_consumer.queue_consumer.ack_message(message)
            return
        super().handle_message(body, message)

    def unpack_message_headers(self, message):
        data = super().unpack_message_headers(message)
        call_ids = data.pop(CALL_ID_STACK_CONTEXT_KEY, [])
        if self.public and "signature" not in data:
            return {**anonymous(data), CALL_ID_STACK_CONTEXT_KEY: call_ids}
        try:
            checked = self.context_keys.verifier.verify(data)
        except ContextRefused as error:
            refusal_logged(self.container.service_name, self.method_name, error, data)
            raise
        return {**checked, CALL_ID_STACK_CONTEXT_KEY: call_ids}


def rpc(method=None, *, public=False, callers=None):
    """An RPC entrypoint whose domain errors are expected outcomes (logged quietly, sent back as themselves);
    ``@rpc(public=True)`` for the few the anonymous public may call; ``@rpc(callers=("loans",))`` for one only
    those services may call (the broker's permissions, read off the code, let no other service's user send it;
    the operators' user may)."""
    if method is None:
        return partial(rpc, public=public, callers=callers)
    return VerifiedRpc.decorator(expected_exceptions=DomainError, public=public, callers=callers)(method)


class Caller(DependencyProvider):
    """Who is calling, from the verified context data: the gateway signs it per request and it follows every
    call the request leads to (never an event: an event handler starts with nobody)."""

    context_keys = ContextKeys()

    def get_dependency(self, worker_ctx):
        return CallerContext(worker_ctx.data, self.context_keys)


class CallerContext:
    """Who the call is for: ``tenant``; ``actor`` ("staff:12", "patron:34", "operator", "public"); ``role``
    (admin, librarian, school_librarian, patron, operator, public); the staff member's ``libraries``; and,
    for the access record, the client's ``address`` and the HTTP ``route`` it came through."""

    def __init__(self, data, context_keys=None):
        self.data = data
        self.context_keys = context_keys

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
        """For work no request started (timers, events): act for ``tenant`` as ``actor`` (``system:<this
        service>…``), and have the calls this worker makes carry that identity, signed by this service."""
        signed = self.context_keys.sign({"tenant": tenant, "actor": actor, "role": role})
        self.data.clear()
        self.data.update(signed)

    def require(self, roles):
        """Refuse the call unless the caller has one of ``roles``."""
        if self.role not in roles:
            raise Forbidden(details={"allowed_roles": list(roles)})


class ServiceRpc(RpcProxy):
    """Like ``RpcProxy``, with the container's ``RPC_TIMEOUT`` as a deadline on every call, and replies on a
    queue named after this service's broker user. ``public_only``: this caller is anonymous and is let call
    only the target's public methods (the broker's permissions say so; see shiori.commands.provision)."""

    rpc_reply_listener = ScopedReplyListener()

    def __init__(self, target_service, public_only=False, **options):
        self.public_only = public_only
        super().__init__(target_service, **options)

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

    def get_message_headers(self, worker_ctx):
        headers = super().get_message_headers(worker_ctx)
        name = self._get_header_name("deadline")  # the callee finds it as ``deadline`` in its context data
        own, inherited = int((time.time() + self.timeout) * 1000), headers.get(name)
        headers[name] = min(own, inherited) if isinstance(inherited, int) else own
        return headers

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
