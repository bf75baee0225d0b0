"""Notices: a consumer of the loans service's events that tells patrons by e-mail that a hold is ready, a
loan is due soon or overdue; patrons without an address are listed for the desk to phone. A notice is kept
until it has been sent (failures are tried again, further apart each time) and deleted once it has been.
It learns of them by subscribing; the services that publish the events do not know it is there."""
import logging
import smtplib
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formataddr

from nameko.dependency_providers import Config
from nameko.timer import timer
from sqlalchemy import select

from services.notices import errors
from services.notices.mailer import Mailer
from services.notices.models import Base, Notice, NoticeSettings, ProcessedEvent
from services.notices.repository import NoticesRepository
from services.notices.schemas import (
    HoldReadySchema, LoansDueSoonSchema, LoansOverdueSchema, NoticeSchema, NoticeSettingsSchema, PatronEventSchema,
)
from services.notices.rules import notice_library, retry_pause, titles_about
from services.notices.templates import render, titles_line
from shiori.clock import Clock
from shiori.db import Database, checkpoint
from shiori.errors import load
from shiori.events import EventDelivery, first_delivery, read_event, subscribe
from shiori.roles import OPERATOR, STAFF_ROLES, WHOLE_TENANT, may_serve_at
from shiori.rpc import Caller, ServiceRpc, rpc

log = logging.getLogger(__name__)
EVENT_VERSION = 1


class NoticesService:
    name = "notices"

    db = Database(Base.metadata)
    delivery = EventDelivery()
    caller = Caller()
    clock = Clock()
    config = Config()
    send_mail = Mailer()
    patrons = ServiceRpc("patrons")
    loans = ServiceRpc("loans")
    catalog = ServiceRpc("catalog")

    @rpc
    def health(self):
        self.db.execute(select(1))
        return {"status": "ok", **self.delivery()}

    # --- taking notices from events ----------------------------------------------------------------

    @subscribe("loans", "hold_ready")
    def on_hold_ready(self, body):
        self._take(body, HoldReadySchema(), "hold_ready",
                   lambda data: {"library": data["pickup_library"], "date": data["ready_until"].isoformat()})

    @subscribe("loans", "loans_due_soon")
    def on_due_soon(self, body):
        self._take(body, LoansDueSoonSchema(), "due_soon",
                   lambda data: {"items": data["items"], "date": data["due_date"].isoformat()})

    @subscribe("loans", "loans_overdue")
    def on_overdue(self, body):
        self._take(body, LoansOverdueSchema(), "overdue",
                   lambda data: {"items": data["items"], "date": data["oldest_due_date"].isoformat()})

    @subscribe("patrons", "patron_deleted")
    def on_patron_deleted(self, body):
        """A deleted patron is told nothing more: their notices not sent yet and their lines on the phone list
        go."""
        event = read_event(body, EVENT_VERSION, PatronEventSchema())
        if event is None or not first_delivery(self.db, ProcessedEvent, event):
            return
        NoticesRepository(self.db).forget_patron(event["tenant"], event["data"]["patron_id"])
        self.db.commit()
        checkpoint(self.db)

    def _take(self, body, schema, kind, facts_of):
        """Keep the notice first (it survives anything after this commit), then try to send it."""
        event = read_event(body, EVENT_VERSION, schema)
        if event is None or not first_delivery(self.db, ProcessedEvent, event):
            return
        notice = Notice(tenant=event["tenant"], patron_id=event["data"]["patron_id"], kind=kind,
                        facts=facts_of(event["data"]), channel="email", attempts=0,
                        next_attempt_at=self.clock.now(), created_at=self.clock.now())
        self.db.add(notice)
        self.db.commit()
        self._deliver(notice)

    @timer(interval=10)
    def retry_due_notices(self):
        """Notices whose earlier attempt failed, when their pause is over."""
        for notice in NoticesRepository(self.db).due_for_retry(self.clock.now()):
            self._deliver(notice)

    def _deliver(self, notice):
        self.caller.act_as(notice.tenant, "system:notices", OPERATOR)
        try:
            contact = self.patrons.contacts([notice.patron_id], ["name", "email"]).get(str(notice.patron_id))
            if contact is None:  # the patron was deleted meanwhile: nobody to tell
                self.db.delete(notice)
            elif not contact["email"]:
                notice.channel = "phone"
                notice.facts = {**notice.facts, "library": notice_library(notice.facts, contact["home_library"])}
            else:
                self.send_mail(self._message(notice, contact))
                self.db.delete(notice)  # told: nothing of it stays
            self.db.commit()
        except Exception as error:  # noqa: BLE001 — whatever failed, the notice is kept and tried again later
            self.db.rollback()
            notice.attempts += 1
            pause = retry_pause(notice.attempts, int(self.config["RETRY_FIRST_SECONDS"]),
                                int(self.config["RETRY_MAX_SECONDS"]))
            notice.next_attempt_at = self.clock.now() + timedelta(seconds=pause)
            notice.last_error = _reason(error)
            self.db.commit()
            log.warning("notice %d not sent (attempt %d, next in %d s): %s", notice.id, notice.attempts, pause,
                        notice.last_error)

    def _message(self, notice, contact):
        settings = NoticesRepository(self.db).settings(notice.tenant)
        library = notice_library(notice.facts, contact["home_library"])
        values = {"name": contact["name"], "library": self.catalog.get_library(library)["name"],
                  "items": notice.facts.get("items", ""), "date": notice.facts["date"],
                  "titles": titles_line(self._titles(notice)) if settings.include_titles else ""}
        subject, body = render(notice.kind, settings.templates, values)
        message = EmailMessage()
        message["From"] = formataddr((values["library"], self.config["MAIL_FROM"]))
        message["To"] = contact["email"]
        message["Subject"] = subject
        message.set_content(body)
        return message

    def _titles(self, notice):
        """The titles a notice is about, asked of the loans service when it is sent (no event carries them)."""
        current = self.loans.patron_holds(notice.patron_id) if notice.kind == "hold_ready" else \
            self.loans.patron_loans(notice.patron_id)
        return titles_about(notice.kind, notice.facts, current, self.clock.today())

    # --- for the desk and the admins ---------------------------------------------------------------

    @rpc
    def phone_list(self):
        """Notices for the caller's libraries' patrons without e-mail, with the name and phone number to call
        (each read recorded)."""
        self.caller.require(STAFF_ROLES)
        notices = [notice for notice in NoticesRepository(self.db).on_channel(self.caller.tenant, "phone")
                   if self._ours(notice)]
        contacts = self.patrons.contacts(sorted({notice.patron_id for notice in notices}), ["name", "phone"]) \
            if notices else {}
        return [dict(NoticeSchema().dump(notice), **contacts[str(notice.patron_id)])
                for notice in notices if str(notice.patron_id) in contacts]

    @rpc
    def pending(self):
        """E-mail notices not sent yet, with how often they failed and why (no personal data)."""
        self.caller.require(STAFF_ROLES + (OPERATOR,))
        notices = NoticesRepository(self.db).on_channel(self.caller.tenant, "email")
        return NoticeSchema(many=True, exclude=("patron_id", "facts")).dump(notices)

    @rpc
    def done(self, notice_id):
        """The desk has phoned the patron: the notice goes. Another library's notice is as unknown as none."""
        self.caller.require(STAFF_ROLES)
        notice = NoticesRepository(self.db).phone_notice(self.caller.tenant, notice_id)
        if notice is None or not self._ours(notice):
            raise errors.NoticeNotFound(details={"notice_id": notice_id})
        self.db.delete(notice)
        self.db.commit()

    @rpc
    def get_settings(self):
        self.caller.require(STAFF_ROLES + (OPERATOR,))
        return NoticeSettingsSchema().dump(NoticesRepository(self.db).settings(self.caller.tenant))

    @rpc
    def update_settings(self, payload):
        self.caller.require(WHOLE_TENANT)
        values = load(NoticeSettingsSchema(), payload)
        self.db.merge(NoticeSettings(tenant=self.caller.tenant, **values))
        self.db.commit()
        return values

    def _ours(self, notice):
        """Whether the notice is for a desk the caller works at."""
        return may_serve_at(self.caller.role, self.caller.libraries, notice.facts.get("library"))


def _reason(error):
    """Why sending failed, without the recipient: SMTP replies can quote the address refused."""
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{type(error).__name__} {error.smtp_code}"
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "SMTPRecipientsRefused"
    return type(error).__name__
