"""shiori.idempotency on a service of its own: a command runs once per key, within its deadline."""
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Integer, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shiori.errors import Forbidden, ServiceUnavailable
from shiori.idempotency import (
    CommandRecordMixin, DeadlinePassed, IdempotencyKeyReused, RequestAlreadyDone, forget_answers_with, idempotent,
)
from shiori.rpc import CallerContext


class Base(DeclarativeBase):
    pass


class Shelf(Base):
    __tablename__ = "shelves"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(20))


class CommandRecord(CommandRecordMixin, Base):
    pass


forget_answers_with(Shelf, CommandRecord, lambda shelf: [f"shelf:{shelf.id}"])


class Shelves:
    """A service with one command, counting how often its body runs."""

    def __init__(self, session, context):
        self.db, self.caller, self.runs = session, CallerContext(context), 0

    @idempotent(CommandRecord, subject=lambda shelf: f"shelf:{shelf['id']}")
    def add_shelf(self, label, pause=0.0, fail=None):
        self.runs += 1
        if fail:
            raise fail
        shelf = Shelf(label=label)
        self.db.add(shelf)
        self.db.flush()
        time.sleep(pause)
        self.db.commit()
        return {"id": shelf.id, "label": label}


def shelves(sqlite_session, key="k1", digest="d1", deadline_in=5.0):
    context = {"tenant": "t", "idempotency_key": key, "request_digest": digest,
               "deadline": int((time.time() + deadline_in) * 1000)}
    return Shelves(sqlite_session(Base.metadata), context)


def count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def test_a_repeat_answers_the_first_answer_without_running_again(sqlite_session):
    service = shelves(sqlite_session)
    first = service.add_shelf("A")
    assert service.add_shelf("A") == first
    assert service.runs == 1 and count(service.db, Shelf) == 1


def test_the_same_key_for_another_request_is_refused(sqlite_session):
    service = shelves(sqlite_session)
    service.add_shelf("A")
    service.caller.data["request_digest"] = "d2"
    with pytest.raises(IdempotencyKeyReused):
        service.add_shelf("B")
    assert count(service.db, Shelf) == 1


def test_a_refusal_is_kept_and_a_passing_fault_is_not(sqlite_session):
    service = shelves(sqlite_session)
    with pytest.raises(Forbidden):
        service.add_shelf("A", fail=Forbidden())
    with pytest.raises(Forbidden):
        service.add_shelf("A")  # the stored refusal, not a run
    assert service.runs == 1

    service.caller.data["idempotency_key"] = "k2"
    with pytest.raises(ServiceUnavailable):
        service.add_shelf("A", fail=ServiceUnavailable())
    assert service.add_shelf("A")["label"] == "A"
    assert service.runs == 3


def test_a_command_whose_deadline_passed_is_refused_before_it_runs(sqlite_session):
    service = shelves(sqlite_session, deadline_in=-1.0)
    with pytest.raises(DeadlinePassed):
        service.add_shelf("A")
    assert service.runs == 0


def test_a_command_that_outruns_its_deadline_commits_nothing(sqlite_session):
    service = shelves(sqlite_session, deadline_in=0.2)
    with pytest.raises(DeadlinePassed):
        service.add_shelf("A", pause=0.4)
    assert count(service.db, Shelf) == 0 and count(service.db, CommandRecord) == 0


def test_a_message_delivered_twice_under_the_gateways_own_key_acts_once(sqlite_session):
    """Without the client's key (no digest) no answer is kept, but the key is, with the change."""
    service = shelves(sqlite_session, digest=None)
    service.add_shelf("A")
    with pytest.raises(RequestAlreadyDone):
        service.add_shelf("A")
    assert service.runs == 1 and count(service.db, Shelf) == 1


def test_without_a_key_the_command_simply_runs(sqlite_session):
    service = shelves(sqlite_session, key=None)
    service.add_shelf("A")
    service.add_shelf("A")
    assert service.runs == 2 and count(service.db, CommandRecord) == 0


def test_when_the_subject_goes_the_record_keeps_only_its_key(sqlite_session):
    service = shelves(sqlite_session)
    shelf = service.add_shelf("A")
    service.db.delete(service.db.get(Shelf, shelf["id"]))
    service.db.commit()
    (record,) = service.db.scalars(select(CommandRecord))
    assert (record.answer, record.subject) == (None, None)
    with pytest.raises(RequestAlreadyDone):
        service.add_shelf("A")


def test_records_older_than_the_time_kept_are_swept(sqlite_session):
    service = shelves(sqlite_session)
    service.db.add(CommandRecord(key="old", command="Shelves.add_shelf", digest="d", answer="{}",
                                 recorded_at=datetime.now(timezone.utc) - timedelta(hours=25)))
    service.db.commit()
    service.add_shelf("A")
    assert [record.key for record in service.db.scalars(select(CommandRecord))] == ["k1"]


def test_a_command_holds_no_write_lock_before_it_commits(tmp_path):
    """On SQLite a record flushed as the command began would lock out every other writer while the command
    waits on other services (the load benchmark's stall): another writer must get through meanwhile."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from shiori.db import create_schema

    engine = create_engine(f"sqlite:///{tmp_path / 'shelves.db'}", connect_args={"timeout": 0.1})
    create_schema(engine, Base.metadata)
    sessions = sessionmaker(engine, expire_on_commit=False)
    others_wrote = []

    class AskingShelves(Shelves):
        @idempotent(CommandRecord)
        def add_shelf(self, label, pause=0.0, fail=None):
            self.db.scalar(select(func.count()).select_from(Shelf))  # a query, as the command asks others
            with sessions() as other:  # another worker of the process writes meanwhile
                other.add(Shelf(label="other"))
                other.commit()
                others_wrote.append(True)
            self.db.add(Shelf(label=label))
            self.db.commit()
            return {"label": label}

    service = AskingShelves(sessions(), {"tenant": "t", "idempotency_key": "k", "request_digest": "d",
                                         "deadline": int((time.time() + 5) * 1000)})
    assert service.add_shelf("A") == {"label": "A"} and others_wrote == [True]
    assert count(service.db, CommandRecord) == 1
    engine.dispose()
