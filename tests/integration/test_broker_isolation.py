"""PRIVACY.md 9 and issue 11 parts 1 and 2, on the real broker: each process's own broker user may do what
its code needs and nothing else, and a service acts only on a caller context it can verify."""
import logging
import uuid
from urllib.parse import urlsplit

import pytest
from amqp.exceptions import AccessRefused, AMQPError
from kombu import Connection, Exchange, Producer, Queue
from nameko.standalone.rpc import ClusterRpcProxy

from shiori.broker import ScopedStandaloneReplyListener
from shiori.context import ContextRefused, ContextSigner, new_signing_key
from support import register_patron

RPC = Exchange("nameko-rpc", type="topic", durable=True, no_declare=True)


def uri_of(system, principal):
    return system.broker.amqp_uri(principal)


def publish(system, principal, routing_key, exchange=RPC):
    """Publish with confirms as ``principal``: a refusal closes the channel with ACCESS_REFUSED."""
    with Connection(uri_of(system, principal), transport_options={"confirm_publish": True}) as connection:
        Producer(connection.channel()).publish({"args": [], "kwargs": {}}, exchange=exchange, routing_key=routing_key,
                                               serializer="json")


def bind(system, principal, exchange, routing_key, queue_name):
    with Connection(uri_of(system, principal)) as connection:
        channel = connection.channel()
        queue = Queue(queue_name, exchange=Exchange(exchange, type="topic", no_declare=True),
                      routing_key=routing_key, auto_delete=True)(channel)
        queue.declare()


def own_reply_queue(principal):
    return f"rpc.reply-{principal}-{uuid.uuid4().hex}"


@pytest.mark.parametrize("routing_key", ["patrons.get_patron", "patrons.authenticate_staff", "loans.checkout",
                                         "loans.patron_loans", "catalog.add_work", "catalog.import_works"])
@pytest.mark.privacy(9)
def test_the_opac_may_not_call_the_patrons_or_loans_or_change_the_catalogue(system, routing_key):
    with pytest.raises(AccessRefused):
        publish(system, "opac", routing_key)


def test_the_opac_may_call_the_public_catalogue(system):
    publish(system, "opac", "catalog.search")  # no refusal (and no reply address: the catalogue drops it)


def test_only_the_loans_service_may_send_the_patrons_service_an_erasure(system):
    """Erasing a patron goes through the loans service, which knows what is on loan (docs/services.md)."""
    for principal in ("gateway", "notices"):
        with pytest.raises(AccessRefused):
            publish(system, principal, "patrons.erase_cleared_patron")
    publish(system, "loans", "patrons.erase_cleared_patron")  # no refusal (no reply address: dropped)
    publish(system, "gateway", "patrons.get_patron")


def test_a_call_without_a_reply_address_is_dropped_and_the_service_keeps_serving(system, staff):
    publish(system, "gateway", "patrons.get_patron")
    publish(system, "gateway", "catalog.list_libraries")
    assert register_patron(staff)["id"]  # patrons and the catalogue both still answer


@pytest.mark.privacy(9)
@pytest.mark.parametrize("exchange", ["nameko-rpc", "loans.events", "patrons.events", "catalog.events"])
def test_the_opac_may_not_listen_to_everything(system, exchange):
    with pytest.raises(AccessRefused):
        bind(system, "opac", exchange, "#", own_reply_queue("opac"))


def test_a_service_may_not_bind_everything_nor_another_principals_replies(system):
    with pytest.raises(AccessRefused):  # a queue of its own, bound to the whole RPC traffic
        bind(system, "loans", "nameko-rpc", "#", own_reply_queue("loans"))
    with pytest.raises(AccessRefused):  # the gateway's replies carry patron records
        bind(system, "loans", "nameko-rpc", f"reply.gateway.{uuid.uuid4().hex}", own_reply_queue("loans"))
    with pytest.raises(AccessRefused):  # events it does not subscribe to
        bind(system, "catalog", "patrons.events", "patron_registered",
             "evt-patrons-patron_registered--catalog.on_patron_registered")
    with pytest.raises(AccessRefused):  # a queue named as another principal's
        bind(system, "loans", "nameko-rpc", f"reply.loans.{uuid.uuid4().hex}", own_reply_queue("gateway"))


def test_nobody_but_the_operator_publishes_past_the_exchanges(system):
    default = Exchange("", type="direct", no_declare=True)  # straight into any queue by its name
    with pytest.raises(AccessRefused):
        publish(system, "gateway", "rpc-patrons", exchange=default)
    with pytest.raises(AccessRefused):  # another service's events
        publish(system, "catalog", "loan_returned", exchange=Exchange("loans.events", type="topic", no_declare=True))


def test_guest_has_no_access_to_the_deployment(system):
    parts = urlsplit(system.broker.broker_url)
    guest = f"{parts.scheme}://guest:guest@{parts.netloc}/{system.broker.vhost}"
    with pytest.raises((AMQPError, OSError)):
        with Connection(guest, connect_timeout=5) as connection:
            connection.connect()


@pytest.fixture
def as_loans(system):
    """RPC with the loans service's own broker user (someone who broke into its process, or its host)."""
    def proxy(context):
        return ClusterRpcProxy({"AMQP_URI": uri_of(system, "loans"), "BROKER_PRINCIPAL": "loans"},
                               context_data=context, timeout=10, reply_listener_cls=ScopedStandaloneReplyListener)
    return proxy


def test_a_forged_operator_context_is_refused_and_recorded(system, staff, as_loans, caplog):
    caplog.set_level(logging.WARNING, logger="shiori.security")
    patron = register_patron(staff)
    forged = {"tenant": "testcity", "actor": "operator", "role": "operator"}
    with as_loans(forged) as rpc:
        with pytest.raises(ContextRefused):
            rpc.patrons.get_patron(patron["id"])
    with as_loans(dict(ContextSigner("gateway", new_signing_key()).sign(forged | {"actor": "staff:1",
                                                                                  "role": "admin"}))) as rpc:
        with pytest.raises(ContextRefused):  # signed, but not by a key the services know
            rpc.patrons.get_patron(patron["id"])
    loans_key = system.broker.secrets.signing_key("loans")
    with pytest.raises(ValueError):  # the loans key cannot even make an operator's context
        ContextSigner("loans", loans_key).sign(forged)
    genuine = ContextSigner("gateway", system.broker.secrets.signing_key("gateway")).sign(
        {"tenant": "testcity", "actor": "staff:1", "role": "librarian", "libraries": "main"})
    altered = dict(genuine, role="admin")
    with as_loans(altered) as rpc:
        with pytest.raises(ContextRefused):
            rpc.patrons.get_patron(patron["id"])
    with as_loans(dict(genuine)) as rpc:  # what the gateway signed works through any door
        assert rpc.patrons.get_patron(patron["id"])["id"] == patron["id"]
    refusals = [record.getMessage() for record in caplog.records if record.name == "shiori.security"]
    assert len([line for line in refusals if "refused a call to patrons.get_patron" in line]) >= 3
    assert any("'operator'" in line for line in refusals)


def test_an_anonymous_call_is_only_the_public_whatever_it_claims(system, as_loans):
    claimed = {"tenant": "testcity", "actor": "staff:1", "role": "admin"}
    with as_loans(claimed) as rpc:
        assert rpc.catalog.search({"q": "本"})["total"] >= 0  # a public method serves anyone, as the public
        with pytest.raises(ContextRefused):
            rpc.catalog.add_work({"title": "偽の管理者"})
