"""Small helpers the tests share (fixtures live in conftest.py)."""
import email
import email.policy
import socket
import time
import uuid
from contextlib import closing
from datetime import datetime, timedelta, timezone

from shiori.clock import library_day

# Longer ago than any retention period: a test travels this far back to make a patron who has not come since.
TEN_YEARS = timedelta(days=3653)

# Short, so that tests of a service being down wait little; the default in production is 5 s.
RPC_TIMEOUT = 3


def wait_until(condition, timeout=10.0, interval=0.05, message="condition"):
    """Poll until ``condition()`` is truthy: events are applied asynchronously, shortly after the call."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def patrons_know(system, *codes, tenant=None):
    """Wait until the patrons service has heard of libraries just added: it keeps its own projection of the
    catalogue's (``library_added``), and refuses patrons or staff at a library it has not heard of yet."""
    from shiori.commands.calls import wait_for_libraries

    with system.rpc(**({"tenant": tenant} if tenant else {})) as rpc:
        wait_for_libraries(rpc, codes)


def wall_today():
    """The library's day by the wall clock, for tests that do not move the services' clocks."""
    return library_day(datetime.now(timezone.utc))


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:10].upper()}"


def patron_fields(**overrides):
    fields = {
        "name": "試験 花子", "name_kana": "シケン ハナコ", "birth_date": "1990-04-01", "sex": "female",
        "address": "試験県試験市本町1-2-3", "phone": "0584-12-3456", "email": "hanako@example.jp",
        "home_library": "main", "category": "adult",
    }
    fields.update(overrides)
    return fields


def register_patron(staff, **overrides):
    response = staff.post(f"{staff.base_url}/api/v1/patrons", json=patron_fields(**overrides), timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def add_copy(staff, title=None, library="main"):
    """A new work with one copy; answers (work, item)."""
    work = staff.post(f"{staff.base_url}/api/v1/works", timeout=10, json={
        "title": title or unique("試験の本 "), "authors": [{"name": "試験 作者"}], "publisher": "試験書房",
    })
    assert work.status_code == 201, work.text
    item = staff.post(f"{staff.base_url}/api/v1/items", timeout=10, json={
        "barcode": unique("T"), "work_id": work.json()["id"], "library": library,
        "call_number": "913.6", "shelf_location": "一般書架",
    })
    assert item.status_code == 201, item.text
    return work.json(), item.json()


def check_out(staff, card_number, barcode, library="main"):
    return staff.post(f"{staff.base_url}/api/v1/checkouts", timeout=10,
                      json={"card_number": card_number, "item_barcode": barcode, "library": library})


def check_in(staff, barcode, library="main"):
    return staff.post(f"{staff.base_url}/api/v1/checkins", timeout=10,
                      json={"item_barcode": barcode, "library": library})


def free_port():
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MailCatcher:
    """An aiosmtpd handler that keeps every message it receives, parsed."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, _server, _session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def to(self, address):
        return [message for message in self.messages if message["To"] == address]


def in_database(system, service, statement, **params):
    """Run SQL in a service's own database: a test moves time there (a loan falls due, a card expires, a
    pickup window ends) or looks at what it holds. Answers the rows, if the statement has any."""
    from sqlalchemy import create_engine, text

    engine = create_engine(system.database_urls[service])
    try:
        with engine.begin() as connection:
            rows = connection.execute(text(statement), params)
            return rows.fetchall() if rows.returns_rows else None
    finally:
        engine.dispose()


def run_daily_pass(system):
    """Today's daily pass of the loans service, again if it ran today, as an operator after an outage."""
    with system.rpc() as rpc:
        rpc.loans.run_daily_pass(again=True)


def refused(response, code):
    """A 409 with this code and a message the desk can read out in Japanese; answers the error."""
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert any("\u3040" <= char <= "\u9fff" for char in error["message"]), error["message"]
    return error


def session_cookie(key, token, started, seen, values=None):
    """A web session's cookie as a gateway signs it (services/gateway/sessions.py), made with that gateway's key:
    for a test that needs a session begun or last used long ago."""
    import base64
    import hashlib
    import hmac
    import json

    body = base64.urlsafe_b64encode(json.dumps(
        {"token": token, "started": started, "seen": seen, "values": values or {}}).encode()).decode()
    return f"{body}.{hmac.new(key.encode(), b'session:' + body.encode(), hashlib.sha256).hexdigest()}"


def session_held(cookie):
    """What a session's cookie holds (its token, its times and values), unchecked."""
    import base64
    import json

    return json.loads(base64.urlsafe_b64decode(cookie.partition(".")[0]))
