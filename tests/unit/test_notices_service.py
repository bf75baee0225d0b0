"""The notices service with its neighbours replaced (nameko.testing's worker_factory): the mailer, the patrons,
loans and catalogue services are mocks, the database a real SQLite session."""
from datetime import timedelta
from types import SimpleNamespace

import pytest
from nameko.testing.services import worker_factory

from services.notices.models import Base, Notice
from services.notices.service import NoticesService
from shiori.clock import LibraryTime
from shiori.config import load_config
from shiori.events import envelope
from shiori.rpc import CallerContext

READY = {"patron_id": 7, "pickup_library": "east", "ready_until": "2026-12-10"}


@pytest.fixture
def notices(sqlite_session):
    service = worker_factory(NoticesService, db=sqlite_session(Base.metadata), clock=LibraryTime(),
                             caller=CallerContext({}, SimpleNamespace(sign=dict)),
                             config=load_config("notices", environ={}))  # config.yml's defaults
    service.catalog.get_library.return_value = {"code": "east", "name": "海津市図書館 平田分館"}
    return service


def contact(email):
    return {"7": {"name": "海津 花子", "email": email, "home_library": "main"}}


def test_a_ready_hold_is_mailed_from_the_pickup_library_and_nothing_of_it_stays(notices):
    notices.patrons.contacts.return_value = contact("hanako@example.jp")
    notices.on_hold_ready(envelope("hold_ready", 1, "kaizu", READY))
    [(message,), _] = notices.send_mail.call_args
    assert (message["To"], message["Subject"]) == ("hanako@example.jp", "【海津市図書館 平田分館】ご予約の資料をご用意しました")
    assert "2026-12-10" in message.get_content()
    notices.catalog.get_library.assert_called_once_with("east")
    notices.loans.patron_holds.assert_not_called()  # titles are asked for only where the library wants them
    assert notices.db.query(Notice).count() == 0
    assert (notices.caller.tenant, notices.caller.actor) == ("kaizu", "system:notices")


def test_a_patron_without_mail_is_put_on_the_pickup_desks_phone_list(notices):
    notices.patrons.contacts.return_value = contact(None)
    notices.on_hold_ready(envelope("hold_ready", 1, "kaizu", READY))
    notices.send_mail.assert_not_called()
    [notice] = notices.db.query(Notice).all()
    assert (notice.channel, notice.facts["library"]) == ("phone", "east")


def test_a_notice_the_mail_server_refuses_is_kept_and_tried_again_after_a_pause(notices):
    notices.patrons.contacts.return_value = contact("hanako@example.jp")
    notices.send_mail.side_effect = ConnectionRefusedError("the mail server does not answer")
    notices.on_hold_ready(envelope("hold_ready", 1, "kaizu", READY))
    [notice] = notices.db.query(Notice).all()
    assert (notice.channel, notice.attempts) == ("email", 1)
    pause = notice.next_attempt_at - notices.clock.now()
    assert timedelta(seconds=25) < pause <= timedelta(seconds=30)  # RETRY_FIRST_SECONDS, less the test's time

    notices.retry_due_notices()  # not due yet: no second try
    assert notices.send_mail.call_count == 1
    notices.clock.travel(by=timedelta(seconds=31))
    notices.send_mail.side_effect = None
    notices.retry_due_notices()
    assert notices.send_mail.call_count == 2 and notices.db.query(Notice).count() == 0


def test_the_same_event_delivered_twice_makes_one_notice(notices):
    notices.patrons.contacts.return_value = contact(None)
    ready = envelope("hold_ready", 1, "kaizu", READY)
    notices.on_hold_ready(ready)
    notices.on_hold_ready(ready)
    assert notices.db.query(Notice).count() == 1
