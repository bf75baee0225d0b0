"""PRIVACY.md 2, 4 and 5: after a return nothing links the patron to the copy or work; events never pair
a patron with a copy; no queue keeps consumed messages; logs carry no card number next to a title."""
import json
import logging
from pathlib import Path

import pytest
from amqp.exceptions import NotFound
from kombu import Connection, Exchange, Queue
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from services.catalog.schemas import PUBLISHED_EVENTS as CATALOG_EVENTS
from services.loans.schemas import PUBLISHED_EVENTS as LOANS_EVENTS
from services.patrons.schemas import PUBLISHED_EVENTS as PATRONS_EVENTS
from shiori.events import EnvelopeSchema
from shiori.logs import keep_payloads_out_of_logs
from support import add_copy, check_in, check_out, register_patron, unique, wait_until

CONTRACT = {**CATALOG_EVENTS, **LOANS_EVENTS, **PATRONS_EVENTS}
PATRON_KEYS = {"patron_id", "card_number"}
COPY_KEYS = {"item_barcode", "work_id", "title"}


def every_value(database_url):
    """Every table's every value in one service's database, as text."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            for table in inspect(connection).get_table_names():
                for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                    yield table, [str(value) for value in row if value is not None]
    finally:
        engine.dispose()


def values_of(database_url):
    return [value for _table, row in every_value(database_url) for value in row]


@pytest.fixture
def event_tap(system):
    """Every event the services publish while the test runs, read from a queue of our own on each
    service's events exchange."""
    queue = Queue(unique("privacy-tap-"), exclusive=True, auto_delete=True, bindings=[])
    with Connection(system.amqp_uri) as connection:
        channel = connection.channel()
        bound = queue(channel)
        bound.declare()
        for service in ("loans", "patrons", "catalog"):
            exchange = Exchange(f"{service}.events", type="topic", durable=True)
            exchange(channel).declare()
            bound.bind_to(exchange=exchange, routing_key="#")
        received = []

        def drain():
            while (message := bound.get(no_ack=True)) is not None:
                received.append(json.loads(message.body))
            return received

        yield drain


@pytest.mark.privacy(2, 5)
def test_a_return_leaves_no_link_between_patron_and_title(system, staff, event_tap, caplog):
    caplog.set_level(logging.DEBUG)
    keep_payloads_out_of_logs()  # as every service process does at start
    patron = register_patron(staff, name="秘密 読者", name_kana="ヒミツ ドクシャ")
    title = unique("誰にも知られたくない本")
    work, item = add_copy(staff, title=title)
    barcode, card = item["barcode"], patron["card_number"]

    assert check_out(staff, card, barcode).status_code == 201
    on_loan = wait_until(lambda: staff.get(f"{staff.base_url}/api/v1/items/{barcode}").json()["status"] == "on_loan")
    assert on_loan
    assert check_in(staff, barcode).status_code == 200
    wait_until(lambda: staff.get(f"{staff.base_url}/api/v1/items/{barcode}").json()["status"] == "available")
    wait_until(lambda: staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}").json()["total_uses"] == 1)

    urls = system.database_urls
    # loans: the loan row is gone, and with it every trace of the copy.
    assert barcode not in values_of(urls["loans"])
    engine = create_engine(urls["loan_borrowers"])
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM borrowers WHERE patron_id = :p"), {"p": patron["id"]}).scalar() == 0
    engine.dispose()
    # patrons: knows the patron, never what they borrowed.
    patrons_values = values_of(urls["patrons"])
    assert barcode not in patrons_values and title not in patrons_values
    # catalogue: knows the copy and the title, never who had it.
    catalog_values = values_of(urls["catalog"])
    assert card not in catalog_values and "秘密 読者" not in catalog_values
    for table, row in every_value(urls["catalog"]):
        if barcode in row:
            assert table == "items"
    assert not [c for c in inspect(create_engine(urls["catalog"])).get_columns("items")
                if "patron" in c["name"] or "borrower" in c["name"]]

    # SQLite: the bytes themselves, including free pages and the write-ahead log.
    if make_url(urls["loans"]).get_backend_name() == "sqlite":
        loans_file = Path(make_url(urls["loans"]).database)
        wait_until(lambda: all(barcode.encode() not in f.read_bytes()
                               for f in loans_file.parent.glob(loans_file.name + "*")),
                   message="the copy's barcode to leave the loans database files")
        patrons_file = Path(make_url(urls["patrons"]).database)
        for path in patrons_file.parent.glob(patrons_file.name + "*"):
            assert barcode.encode() not in path.read_bytes() and title.encode() not in path.read_bytes()

    # Events: ids only, and never a patron together with a copy or work.
    events = event_tap()
    assert {"loan_created", "loan_returned", "patron_card_used"} <= {event["event_type"] for event in events}
    for event in events:
        assert not (PATRON_KEYS & set(event["data"]) and COPY_KEYS & set(event["data"])), event
        assert card not in json.dumps(event, ensure_ascii=False)

    # Logs: no card number next to a title, no personal field.
    for record in caplog.records:
        line = record.getMessage()
        assert not (card in line and title in line), line
        assert "秘密 読者" not in line


def test_events_follow_their_documented_contract(staff, event_tap):
    patron, waiting = register_patron(staff), register_patron(staff)
    work, item = add_copy(staff)
    loan = check_out(staff, patron["card_number"], item["barcode"]).json()
    assert staff.post(f"{staff.base_url}/api/v1/loans/{loan['loan_id']}/renew", timeout=10).status_code == 200
    assert staff.post(f"{staff.base_url}/api/v1/holds", timeout=10, json={
        "work_id": work["id"], "pickup_library": "main", "card_number": waiting["card_number"]}).status_code == 201
    assert check_in(staff, item["barcode"]).json()["action"] == "hold_shelf"
    events = wait_until(lambda: len(event_tap()) >= 11 and event_tap(), message="events")
    seen = set()
    for event in events:
        envelope = EnvelopeSchema().load(event)
        version, schema = CONTRACT[envelope["event_type"]]
        assert envelope["version"] == version
        assert schema.validate(envelope["data"]) == {}, envelope
        seen.add(envelope["event_type"])
    assert {"patron_registered", "works_saved", "items_added", "loan_created", "loan_due_date_changed",
            "loan_returned", "patron_card_used", "hold_placed", "hold_ready", "copy_status_changed"} <= seen
    for event in events:  # no event pairs a patron with a copy or a work (PRIVACY.md 4)
        assert not (PATRON_KEYS & event["data"].keys() and COPY_KEYS & event["data"].keys()), event


@pytest.mark.privacy(4)
def test_consumed_events_leave_no_message_behind(system, staff):
    patron = register_patron(staff)
    _work, item = add_copy(staff)
    assert check_out(staff, patron["card_number"], item["barcode"]).status_code == 201
    assert check_in(staff, item["barcode"]).status_code == 200
    queues = [f"evt-loans-{event}--{handler}" for event, handler in (
        ("loan_created", "catalog.on_loan_created"), ("loan_returned", "catalog.on_loan_returned"),
        ("patron_card_used", "patrons.on_card_used"))]

    def depths():
        with Connection(system.amqp_uri) as connection:
            channel = connection.channel()
            return [channel.queue_declare(name, passive=True).message_count for name in queues]

    wait_until(lambda: depths() == [0, 0, 0], message="event queues to drain")


@pytest.fixture
def every_message(system):
    """Every message published on any events exchange or parked as a dead letter while the test runs
    (headers and body, read from a queue of the operator's bound with ``#``), and then, on request, every
    message still kept in any queue of the virtual host (read and put back)."""
    from shiori.broker import DEAD_LETTERS_EXCHANGE
    from shiori.commands.provision import ManagementApi, _path, publishing_services

    tap = Queue(unique("privacy-tap-"), exclusive=True, auto_delete=True)
    with Connection(system.amqp_uri) as connection:
        channel = connection.channel()
        bound = tap(channel)
        bound.declare()
        for exchange in [DEAD_LETTERS_EXCHANGE, *(f"{service}.events" for service in publishing_services())]:
            bound.bind_to(exchange=Exchange(exchange, type="topic", no_declare=True), routing_key="#")
        tapped = []

        def read():
            while (message := bound.get(no_ack=True)) is not None:
                tapped.append(("tap", message.headers, message.body))
            kept = []
            api = ManagementApi(system.broker.admin_url)
            for queue in api.call("GET", _path("queues", system.broker.vhost)):
                if queue["name"] == tap.name:
                    continue
                with Connection(system.amqp_uri) as reading:  # unacknowledged, so put back when it closes
                    reading_channel = reading.channel()
                    try:
                        while (message := reading_channel.basic_get(queue["name"], no_ack=False)) is not None:
                            kept.append((queue["name"], message.headers or {}, message.body))
                    except NotFound:  # a reply queue that went with its caller after the listing keeps nothing
                        continue
            return tapped, kept

        yield read


@pytest.mark.privacy(2, 4)
def test_nothing_on_the_broker_links_a_patron_to_a_copy_or_a_work(system, staff, every_message):
    """Issue 11 part 3: after a desk session, no event (body or headers) and no message left in any queue,
    dead letters included, names a patron together with a copy or a work, nor carries who called."""
    reader = register_patron(staff, pin="5831")
    waiting = register_patron(staff)
    work, item = add_copy(staff, title=unique("読まれた本 "))
    other_work, other_item = add_copy(staff)
    barcode = item["barcode"]

    loan = check_out(staff, reader["card_number"], barcode).json()
    token = staff.post(f"{system.url}/api/v1/auth/patron-token", timeout=10,
                       json={"card_number": reader["card_number"], "pin": "5831"}).json()["access_token"]
    as_reader = {"Authorization": f"Bearer {token}"}
    assert staff.post(f"{system.url}/api/v1/loans/{loan['loan_id']}/renew", headers=as_reader, timeout=10,
                      ).status_code == 200  # the patron renews their own loan
    hold = staff.post(f"{system.url}/api/v1/holds", headers=as_reader, timeout=10,
                      json={"work_id": other_work["id"], "pickup_library": "main"})
    assert hold.status_code == 201, hold.text
    assert staff.post(f"{staff.base_url}/api/v1/holds", timeout=10, json={
        "work_id": work["id"], "pickup_library": "main", "card_number": waiting["card_number"]}).status_code == 201
    assert check_in(staff, barcode).json()["action"] == "hold_shelf"  # ready for the waiting patron
    assert staff.delete(f"{system.url}/api/v1/holds/{hold.json()['hold_id']}", headers=as_reader,
                        timeout=10).status_code == 204

    patrons = {reader["id"]: reader, waiting["id"]: waiting}
    copies = {barcode: work, other_item["barcode"]: other_work}

    def names_a_patron(text):
        return any(f'"patron_id": {pid}' in text or f"patron:{pid}" in text or patron["card_number"] in text
                   for pid, patron in patrons.items())

    def names_a_copy(text):
        return any(code in text or f'"work_id": {copy_of["id"]}' in text or copy_of["title"] in text
                   for code, copy_of in copies.items())

    tapped, kept = wait_until(lambda: (found := every_message()) and
                              {"loan_created", "loan_due_date_changed", "hold_placed", "hold_ready",
                               "loan_returned", "patron_card_used"} <=
                              {json.loads(body)["event_type"] for _q, _h, body in found[0]} and found,
                              message="the desk session's events")
    for where, headers, body in tapped + kept:
        text = json.dumps({"headers": headers, "body": json.loads(body)}, ensure_ascii=False, default=str)
        assert not (names_a_patron(text) and names_a_copy(text)), (where, text)
        assert not [key for key in headers if key.startswith("nameko.")], (where, headers)
    assert not [where for where, _h, _b in kept if where.startswith(("rpc-", "rpc.reply-"))]
