"""Commands that run once, however often they are sent (API.md: ``Idempotency-Key``).

A desk or kiosk that times out cannot tell whether its check-out happened, so it sends it again; nameko may
deliver a command twice too (redelivery after a crash). The gateway therefore names every write it passes on:
``idempotency_key``, a hash of the tenant, the caller and the client's ``Idempotency-Key`` (or a key of its
own when the client sent none), and, for a client's key, ``request_digest``, a keyed hash of the request
(method, route, path and body). Both are signed with the caller's context (shiori.context), so a replayed
message is absorbed like a retry.

The service that owns the change keeps a ``CommandRecord`` per key and command, written in the same
transaction as the change. For a client's key it then keeps the answer: a repeat with the same key and
request answers the first answer again and changes nothing; the same key with another request is refused
(``IdempotencyKeyReused``). Refusals are answers too, and are kept; passing faults (a service or the database
unreachable, a deadline passed) are not, so a retry runs anew. The gateway's own keys keep no answer (nobody
asks again with them): they only stop a message delivered twice from acting twice, at the cost of one row in
the change's own transaction. Records go after ``IDEMPOTENCY_HOURS`` (default 24).

Every call also carries a ``deadline`` (shiori.rpc): past it, the caller has given up and answered 503, so a
command refuses to commit (``DeadlinePassed``) rather than change anything behind that answer.

Privacy (PRIVACY.md 2): a record's answer and digest name what the command did, so a record is tied to the
loan or hold its answer shows (``subject``), and when that ends the record keeps only its key: a repeat then
learns that the request was carried out (``RequestAlreadyDone``), not what it was.
"""
import hashlib
import json
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from functools import wraps

import eventlet
from sqlalchemy import String, Text, delete, event, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from shiori.db import UtcDateTime
from shiori.errors import DomainError, ServiceUnavailable, error_class

DEFAULT_KEEP_HOURS = 24
SWEEP_EVERY_SECONDS = 600
ANSWER_WAIT_SECONDS = 2.0
FORGOTTEN = "-"  # the digest of a record whose answer was erased with its subject
# Faults of the moment: the same request may succeed when sent again, so they are not kept as its answer.
PASSING_ERRORS = ("SERVICE_UNAVAILABLE", "CONTEXT_REFUSED", "DEADLINE_PASSED")


class IdempotencyKeyReused(DomainError):
    code = "IDEMPOTENCY_KEY_REUSED"
    default_message = "this Idempotency-Key was used for another request: use a new key for a new request"


class RequestAlreadyDone(DomainError):
    code = "REQUEST_ALREADY_DONE"
    default_message = ("this request was carried out before, and its answer is not kept: the loan or hold it "
                       "made has ended, or the service stopped before keeping it")


class DeadlinePassed(ServiceUnavailable):
    code = "DEADLINE_PASSED"
    default_message = "the request took longer than its caller waits; nothing was changed"


class CommandRecordMixin:
    """A command carried out under an idempotency key: the key and command, the request's digest and the
    answer (JSON), until its ``subject`` (``loan:12``, ``hold:3``) ends."""

    __tablename__ = "command_records"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    command: Mapped[str] = mapped_column(String(80), primary_key=True)
    digest: Mapped[str | None] = mapped_column(String(64))
    answer: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(String(40), index=True)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


def idempotent(model, subject=None, kept=None, replayed=None, per_call=False):
    """Have an RPC command run once per idempotency key (see the module's docstring).

    ``model``: the service's CommandRecord. ``subject(answer)``: what the answer shows, whose end erases the
    record's answer (``forget_answers_with``). ``kept(answer)`` is what is stored of an answer (default: all of it)
    and ``replayed(service, kept)`` the answer rebuilt from it, for answers that hold personal data, which
    stays sealed in its owner's records and nowhere else. ``per_call``: a request sends this command several
    times with different arguments (the batches of an import): each call is a command of its own, named by
    its arguments."""

    def decorate(method):
        name = method.__qualname__

        @wraps(method)
        def run_once(self, *args, **kwargs):
            context = self.caller.data
            refuse_if_late(context)
            key = context.get("idempotency_key")
            if not key:
                return method(self, *args, **kwargs)
            command, digest = name, context.get("request_digest")
            answered = digest is not None  # the client's own key: it may ask again and must get the answer
            if per_call:
                if not answered:  # nobody will ask again for one batch of an upload
                    return method(self, *args, **kwargs)
                command, digest = f"{name}:{arguments_digest(args, kwargs)[:24]}", None
            records = CommandRecords(self.db, model, key, command, digest, _keep_hours(self))
            first = records.first()
            if first is not None:
                return records.replay(first, self, replayed)
            try:
                with records.claimed(context):
                    answer = method(self, *args, **kwargs)
            except (DomainError, IntegrityError) as error:
                self.db.rollback()
                # The same request, sent twice at once, was carried out by the other call.
                earlier = None if records.committed else records.first()
                if earlier is not None:
                    return records.replay(earlier, self, replayed)
                if answered and isinstance(error, DomainError) and error.code not in PASSING_ERRORS:
                    records.keep({"error": {"code": error.code, "message": error.message,
                                            "details": error.details}})
                raise
            if answered:
                records.keep({"result": kept(answer) if kept else answer}, subject(answer) if subject else None)
            return answer

        return run_once

    return decorate


def refuse_if_late(context):
    """Refuse (``DeadlinePassed``) once the call's deadline (epoch milliseconds) has passed."""
    deadline = context.get("deadline")
    if isinstance(deadline, (int, float)) and time.time() * 1000 > deadline:
        raise DeadlinePassed(details={"late_by_ms": int(time.time() * 1000 - deadline)})


class CommandRecords:
    """One command's record under one key, in the worker's session."""

    def __init__(self, session, model, key, command, digest, keep_hours):
        self.session, self.model = session, model
        self.key, self.command, self.digest, self.keep_hours = key, command, digest, keep_hours
        self.committed = False  # whether the command committed its change (and the record with it)

    def first(self):
        return self.session.get(self.model, (self.key, self.command))

    @contextmanager
    def claimed(self, context):
        """The record, without an answer yet, goes into the transaction that the command commits, so the
        change and its record are durable together; a commit past the deadline is refused. It is added as the
        command commits, not before it runs: flushed by the command's first query, it would take SQLite's write
        lock for the whole command, calls to other services included, and every other writer of the process
        would wait on it (the load benchmark's stall: 2.7 operations/s at 20 desks, against 19.2)."""

        def before_commit(session):
            refuse_if_late(context)
            if not self.committed:
                session.add(self.model(key=self.key, command=self.command, digest=self.digest, recorded_at=_now()))

        def after_commit(_session):
            self.committed = True

        event.listen(self.session, "before_commit", before_commit)
        event.listen(self.session, "after_commit", after_commit)
        try:
            yield
        finally:
            event.remove(self.session, "before_commit", before_commit)
            event.remove(self.session, "after_commit", after_commit)

    def replay(self, record, service, replayed):
        if record.answer is None and record.digest not in (None, FORGOTTEN):  # an answer is on its way
            record = self._answered(record)
        if record.answer is None:
            raise RequestAlreadyDone()
        if record.digest != self.digest:
            raise IdempotencyKeyReused()
        answer = json.loads(record.answer)
        if "error" in answer:
            error = answer["error"]
            raise error_class(error["code"])(error["message"], error["details"])
        return replayed(service, answer["result"]) if replayed else answer["result"]

    def _answered(self, record):
        """The record once the call that carried out the command has kept its answer (it commits the change
        first, then the answer): a retry sent while the first call was finishing waits for it, a little."""
        waited = 0.0
        while record.answer is None and waited < ANSWER_WAIT_SECONDS:
            self.session.rollback()  # a fresh snapshot each time
            eventlet.sleep(0.05)
            waited += 0.05
            record = self.first()
        return record

    def keep(self, answer, subject=None):
        self.session.merge(self.model(
            key=self.key, command=self.command, digest=self.digest, subject=subject, recorded_at=_now(),
            answer=json.dumps(answer, ensure_ascii=False, default=str)))
        self._sweep()
        self.session.commit()

    def _sweep(self):
        """Every few minutes in each process and database: drop the records older than the time they are kept."""
        now, database = time.monotonic(), (self.model, id(self.session.get_bind()))
        if now - _last_sweeps.get(database, float("-inf")) < SWEEP_EVERY_SECONDS:
            return
        _last_sweeps[database] = now
        self.session.execute(delete(self.model).where(
            self.model.recorded_at < _now() - timedelta(hours=self.keep_hours)))


_last_sweeps = {}


def forget_answers_with(model, records, subjects_of):
    """Whenever a row of ``model`` (a loan, a hold) is deleted, the command records showing it (``subjects_of(row)``)
    keep only their keys, in the same flush: whatever code path ends the loan."""

    @event.listens_for(model, "after_delete")
    def forget(_mapper, connection, row):
        connection.execute(update(records).where(records.subject.in_(subjects_of(row)))
                           .values(digest=FORGOTTEN, answer=None, subject=None))


def arguments_digest(args, kwargs):
    text = json.dumps([args, kwargs], sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _keep_hours(service):
    config = getattr(service, "config", None) or {}
    return float(config.get("IDEMPOTENCY_HOURS") or DEFAULT_KEEP_HOURS)


def _now():
    return datetime.now(timezone.utc)
