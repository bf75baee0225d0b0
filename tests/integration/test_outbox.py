"""The transactional outbox on the real broker and databases (docs/events.md, "Delivery"): an event is written in
the transaction of its change and only a committed change is told; what commits while the relay is stopped or
the broker refuses is published later, nothing lost; two relays on PostgreSQL publish each row once; a handler's
failure is parked with its reason, listed and replayed by the operators' command; /health shows it all."""
import json
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import eventlet
import pytest
import requests
from kombu import Connection, Exchange, Queue
from marshmallow import Schema, fields
from nameko.rpc import rpc
from nameko.runners import ServiceRunner
from nameko.testing.services import entrypoint_hook
from nameko.testing.utils import get_extension
from sqlalchemy import String, create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from conftest import postgres_databases
from services.catalog.repository import CatalogRepository
from shiori.broker import events_exchange
from shiori.commands import dead_letters
from shiori.db import Database
from shiori.events import EventPublisher
from shiori import outbox
from shiori.outbox import OutboxEventMixin
from support import add_copy, check_out, in_database, register_patron, unique, wait_until

REPO = Path(__file__).resolve().parents[2]


# --- a made-up emitter, on a database of its own, connecting as the operator (who may declare its exchange) ---

class EmitterBase(DeclarativeBase):
    pass


class Thing(EmitterBase):
    __tablename__ = "things"

    marker: Mapped[str] = mapped_column(String(40), primary_key=True)


class EmitterOutbox(OutboxEventMixin, EmitterBase):
    pass


class ThingSchema(Schema):
    marker = fields.String(required=True)


THINGS = {"thing_happened": (1, ThingSchema())}


class Emitter:
    """Its envelopes wait in an erasing store, as the loans service's do."""

    name = "test_outbox_emitter"

    db = Database(EmitterBase.metadata)
    publish = EventPublisher(THINGS, EmitterOutbox, envelopes_in="ENVELOPES_URL")

    @rpc
    def make(self, marker, then="commit"):
        self.db.add(Thing(marker=marker))  # a marker made twice is refused at the commit
        self.publish("thing_happened", "t", {"marker": marker})
        if then == "give up":
            raise RuntimeError("the change is given up before it commits")
        self.db.commit()


class PlainEmitter:
    """Its envelopes in the outbox rows, as the catalogue's and the patrons service's are."""

    name = "test_outbox_relays"

    db = Database(EmitterBase.metadata)
    publish = EventPublisher(THINGS, EmitterOutbox)

    @rpc
    def make(self, marker):
        self.publish("thing_happened", "t", {"marker": marker})
        self.db.commit()


@pytest.fixture
def emitter_database(database_urls, tmp_path, request):
    """A database for the made-up emitters, of the kind the suite runs on now (SQLite or PostgreSQL)."""
    if make_url(database_urls["loans"]).get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path}/emitter.db"
        return
    with postgres_databases(request.getfixturevalue("postgres_server"), ["emitter"]) as urls:
        yield urls["emitter"]


class Tap:
    """A queue of ours bound to every event on an exchange: ``tap()`` answers the bodies received so far."""

    def __init__(self, channel, exchange_name):
        self.exchange = Exchange(exchange_name, type="topic", durable=True, channel=channel)
        self.queue = Queue(unique("outbox-tap-"), exclusive=True, auto_delete=True, channel=channel)
        self.queue.declare()
        self.received = []

    def bind(self, declaring=False):
        if declaring:
            self.exchange.declare()
        self.queue.bind_to(exchange=self.exchange.name, routing_key="#")

    def __call__(self):
        while (message := self.queue.get(no_ack=True)) is not None:
            self.received.append(json.loads(message.body))
        return self.received


@contextmanager
def tapped(amqp_uri, exchange_name, declaring=False):
    with Connection(amqp_uri) as connection:
        tap = Tap(connection.channel(), exchange_name)
        tap.bind(declaring)
        yield tap


def start(service_class, amqp_uri, config):
    runner = ServiceRunner({"AMQP_URI": amqp_uri, **config})
    runner.add_service(service_class)
    runner.start()
    return runner


def rows_of(url, statement):
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(statement)).fetchall()
    finally:
        engine.dispose()


def markers(events):
    return [event["data"]["marker"] for event in events if event["event_type"] == "thing_happened"]


def test_an_event_is_told_only_for_a_change_that_commits(amqp_uri, emitter_database, tmp_path):
    envelopes = f"sqlite:///{tmp_path}/envelopes.db"
    with tapped(amqp_uri, events_exchange(Emitter.name), declaring=True) as events:
        runner = start(Emitter, amqp_uri, {"DATABASE_URL": emitter_database, "ENVELOPES_URL": envelopes})
        try:
            [container] = runner.containers
            kept, given_up = unique("kept-"), unique("given-up-")
            with entrypoint_hook(container, "make") as make:
                make(kept)
                with pytest.raises(RuntimeError):
                    make(given_up, then="give up")
                with pytest.raises(IntegrityError):
                    make(kept)  # refused at the commit, after its envelope was kept for it
            wait_until(lambda: kept in markers(events()), message="the committed change's event")
            time.sleep(1.5)  # past the relay's next look
            assert markers(events()) == [kept]
            assert rows_of(emitter_database, "SELECT * FROM outbox") == []
            assert rows_of(envelopes, "SELECT * FROM outbox_envelopes") == []  # none left of the undone two
        finally:
            runner.stop()


def test_a_commit_wakes_the_relay_at_once(amqp_uri, emitter_database, tmp_path, monkeypatch):
    monkeypatch.setattr(outbox, "POLL_SECONDS", 60)  # a relay that only looked now and then would not be in time
    envelopes = f"sqlite:///{tmp_path}/envelopes.db"
    with tapped(amqp_uri, events_exchange(Emitter.name), declaring=True) as events:
        runner = start(Emitter, amqp_uri, {"DATABASE_URL": emitter_database, "ENVELOPES_URL": envelopes})
        try:
            [container] = runner.containers
            time.sleep(0.5)  # the relay has looked once at its start, and rests
            marker = unique("woken-")
            with entrypoint_hook(container, "make") as make:
                make(marker)
            wait_until(lambda: marker in markers(events()), timeout=5, message="the event, without waiting a poll")
        finally:
            runner.stop()


def test_events_wait_while_the_broker_refuses_them_and_leave_once_it_takes_them(amqp_uri, emitter_database, tmp_path):
    envelopes = f"sqlite:///{tmp_path}/envelopes.db"
    exchange = events_exchange(Emitter.name)
    with tapped(amqp_uri, exchange, declaring=True) as events:
        runner = start(Emitter, amqp_uri, {"DATABASE_URL": emitter_database, "ENVELOPES_URL": envelopes})
        try:
            [container] = runner.containers
            with Connection(amqp_uri) as connection:  # the broker now refuses every message to the exchange
                connection.channel().exchange_delete(exchange)
            marker = unique("refused-")
            with entrypoint_hook(container, "make") as make:
                make(marker)  # the change commits; its event cannot leave
            time.sleep(2)
            [(event_type, envelope, ref)] = rows_of(emitter_database,
                                                    "SELECT event_type, envelope, envelope_ref FROM outbox")
            assert (event_type, envelope) == ("thing_happened", None)  # a ref here; the envelope in the store
            [(kept,)] = rows_of(envelopes, "SELECT envelope FROM outbox_envelopes")
            assert json.loads(kept)["data"] == {"marker": marker}
            backlog = get_extension(container, EventPublisher).backlog()
            assert backlog["waiting"] == 1 and backlog["oldest_seconds"] >= 1.5

            events.bind(declaring=True)  # the exchange is back, with our queue bound to it
            wait_until(lambda: marker in markers(events()), timeout=20, message="the refused event, once taken")
            assert rows_of(emitter_database, "SELECT * FROM outbox") == []
            assert rows_of(envelopes, "SELECT * FROM outbox_envelopes") == []
            assert markers(events()) == [marker]
        finally:
            runner.stop()


def test_two_relays_on_postgresql_publish_each_row_once(amqp_uri, emitter_database):
    if make_url(emitter_database).get_backend_name() != "postgresql":
        pytest.skip("SQLite has one writer: one process relays its outbox")
    count = 1500
    engine = create_engine(emitter_database)
    EmitterBase.metadata.create_all(engine)
    now = datetime.now(timezone.utc)
    # What processes that died before relaying leave: committed rows, which two relays then start on at once.
    rows = [{"event_type": "thing_happened", "created_at": now, "envelope_ref": None,
             "envelope": json.dumps({"event_id": str(uuid.uuid4()), "event_type": "thing_happened", "version": 1,
                                     "occurred_at": now.isoformat(), "tenant": "t", "data": {"marker": str(n)}})}
            for n in range(count)]
    with engine.begin() as connection:
        connection.execute(insert(EmitterOutbox.__table__), rows)
    engine.dispose()
    with tapped(amqp_uri, events_exchange(PlainEmitter.name), declaring=True) as events:
        runners = list(eventlet.GreenPool().imap(
            lambda _: start(PlainEmitter, amqp_uri, {"DATABASE_URL": emitter_database}), range(2)))
        try:
            wait_until(lambda: len(events()) >= count, timeout=60, message="every row published")
            wait_until(lambda: rows_of(emitter_database, "SELECT count(*) FROM outbox") == [(0,)],
                       message="the outbox emptied")
            time.sleep(1)  # a row published twice would arrive by now
            published = events()
            assert len(published) == count
            assert len({event["event_id"] for event in published}) == count
        finally:
            for runner in runners:
                runner.stop()


# --- the services ----------------------------------------------------------------------------------------------

def health(system):
    response = requests.get(f"{system.url}/health", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def status_of(staff, barcode):
    return staff.get(f"{staff.base_url}/api/v1/items/{barcode}", timeout=10).json()["status"]


def test_a_library_refused_at_the_commit_is_not_told(system, staff, amqp_uri):
    code = unique("lib-").lower()
    with tapped(amqp_uri, events_exchange("catalog")) as events:
        library = {"code": code, "name": "重複館", "kind": "branch"}
        assert staff.post(f"{staff.base_url}/api/v1/libraries", json=library, timeout=10).status_code == 201
        refused = staff.post(f"{staff.base_url}/api/v1/libraries", json=library, timeout=10)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "LIBRARY_EXISTS"
        told = lambda: [event for event in events()  # noqa: E731
                        if event["event_type"] == "library_added" and event["data"]["library"] == code]
        wait_until(told, message="the library's event")
        time.sleep(1.5)
        assert len(told()) == 1
    assert in_database(system, "catalog", "SELECT count(*) FROM outbox") == [(0,)]


def test_a_check_out_made_while_the_relay_is_stopped_reaches_its_consumers_after_a_restart(system, staff):
    patron = register_patron(staff)
    _work, item = add_copy(staff)
    [loans] = system.runners["loans"].containers
    get_extension(loans, EventPublisher).relay.stop()  # as if the process died right after the commit
    try:
        assert check_out(staff, patron["card_number"], item["barcode"]).status_code == 201
        waiting = in_database(system, "loans", "SELECT event_type, envelope, envelope_ref FROM outbox")
        assert sorted(event_type for event_type, _envelope, _ref in waiting) == ["loan_created", "patron_card_used"]
        # The loans database holds refs only: not the copy, not the patron, not the events' ids.
        assert all(envelope is None for _type, envelope, _ref in waiting)
        kept = in_database(system, "loan_borrowers", "SELECT envelope FROM outbox_envelopes WHERE ref IN (:a, :b)",
                           a=waiting[0][2], b=waiting[1][2])
        assert {json.loads(envelope)["event_type"] for (envelope,) in kept} == {"loan_created", "patron_card_used"}
        time.sleep(1.5)
        assert status_of(staff, item["barcode"]) == "available"  # the catalogue has not heard of the loan
        outbox = health(system)["outbox"]
        assert outbox["loans"]["waiting"] >= 2 and outbox["loans"]["oldest_seconds"] >= 1
    finally:
        system.stop("loans")
        system.start("loans")

    wait_until(lambda: status_of(staff, item["barcode"]) == "on_loan", message="the loan told after the restart")
    wait_until(lambda: staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10).json()[
        "total_uses"] == 1, message="the card's use told after the restart")
    assert in_database(system, "loans", "SELECT count(*) FROM outbox") == [(0,)]
    assert in_database(system, "loan_borrowers", "SELECT count(*) FROM outbox_envelopes") == [(0,)]
    assert health(system)["outbox"]["loans"] == {"waiting": 0, "oldest_seconds": None}


def test_a_failed_handler_is_listed_with_its_reason_and_replayed_once_fixed(system, staff, monkeypatch):
    def broken(self, barcode, as_of):
        raise RuntimeError("the popularity counter is broken")

    patron = register_patron(staff)
    _work, item = add_copy(staff)
    with tapped(system.amqp_uri, events_exchange("loans")) as events:
        monkeypatch.setattr(CatalogRepository, "count_loan", broken)
        assert check_out(staff, patron["card_number"], item["barcode"]).status_code == 201
        [loan_created] = wait_until(lambda: [event for event in events() if event["event_type"] == "loan_created"
                                             and event["data"]["item_barcode"] == item["barcode"]],
                                    message="the loan's event")
    event_id = loan_created["event_id"]
    environ = system.operator_environ

    def parked():
        return [row for row in dead_letters.dead_letters(["catalog"], environ) if row["event_id"] == event_id]

    [row] = wait_until(parked, message="the failed event among the catalogue's dead letters")
    assert row == {"service": "catalog", "handler": "catalog.on_loan_created", "event_type": "loan_created",
                   "error": "RuntimeError: the popularity counter is broken", "event_id": event_id,
                   "occurred_at": loan_created["occurred_at"]}
    assert status_of(staff, item["barcode"]) == "available"
    assert health(system)["dead_letters"]["catalog"] >= 1

    listed = run_command(environ, "list", "--service", "catalog")
    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if event_id in line]
    assert line.split("\t") == ["catalog", "catalog.on_loan_created", "loan_created",
                                "RuntimeError: the popularity counter is broken", event_id, loan_created["occurred_at"]]
    assert item["barcode"] not in listed.stdout  # never the event's data
    assert parked(), "listing takes nothing out of the queue"

    monkeypatch.undo()  # fixed
    replayed = run_command(environ, "replay", "--service", "catalog", "--id", event_id)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    wait_until(lambda: status_of(staff, item["barcode"]) == "on_loan", message="the replayed event handled")
    assert parked() == []
    missing = run_command(environ, "replay", "--service", "catalog", "--id", event_id)
    assert missing.returncode == 1 and f"not found in catalog: {event_id}" in missing.stdout


def run_command(environ, *arguments):
    return subprocess.run([sys.executable, "-m", "shiori", "dead-letters", *arguments], env=environ, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
