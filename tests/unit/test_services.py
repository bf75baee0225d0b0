"""Service methods with nameko.testing's worker_factory: a real SQLite session, other services replaced."""
import re
from datetime import date, datetime, timedelta, timezone

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import event, text

from services.catalog.errors import ItemNotFound
from services.catalog.models import Base as CatalogBase, Contributor, Item, Library, Person, Tenant, Work
from services.catalog.search import Cataloguer, KnownNames
from services.catalog.service import CatalogService
from services.loans.borrowers import Borrower, Borrowers, StoreBase, Suspension
from services.loans.errors import ItemAlreadyOnLoan, ItemNotOnLoan
from services.loans.models import Base as LoansBase, Loan
from services.loans.service import LoansService
from services.patrons.errors import InvalidCredentials
from services.patrons.models import Base as PatronsBase, Patron
from services.patrons.service import PatronsService
from services.patrons.vault import KeyRing, KeysBase, PatronVault, new_master_key_spec
from shiori.clock import LibraryTime
from shiori.config import load_config
from shiori.errors import InvalidInput
from shiori.events import envelope
from shiori.rpc import CallerContext

CALLER = CallerContext({"tenant": "kaizu", "actor": "staff:1", "role": "admin"})
ITEM = {"barcode": "K1", "work_id": 5, "library": "main", "title": "坊っちゃん", "desk_library": "main",
        "item_type": "book", "ndc_class": "9"}
PATRON = {"name": "海津 花子", "name_kana": "カイヅ ハナコ", "birth_date": "1985-04-12", "address": "海津市",
          "phone": "0584-00-0001", "home_library": "main", "category": "adult"}


@pytest.fixture
def loans(sqlite_session):
    service = worker_factory(LoansService, db=sqlite_session(LoansBase.metadata), caller=CALLER,
                             borrowers=Borrowers(sqlite_session(StoreBase.metadata)),
                             config=load_config("loans", environ={}), clock=LibraryTime())  # config.yml's defaults
    service.patrons.borrower.call_async.return_value.result.return_value = {"id": 42, "category": "adult",
                                                                            "age_band": "30-39"}
    service.catalog.item_for_circulation.call_async.return_value.result.return_value = ITEM
    service.catalog.item_for_circulation.return_value = ITEM
    return service


def test_checkout_lends_for_the_loan_period_and_tells_only_ids(loans):
    loan = loans.checkout({"card_number": "100000000008", "item_barcode": "K1", "library": "main"})
    assert date.fromisoformat(loan["due_date"]) - date.fromisoformat(loan["loaned_on"]) == timedelta(days=14)
    assert loans.db.query(Loan).count() == 1
    published = {args[0]: args[2] for args, _ in loans.publish.call_args_list}
    assert set(published) == {"loan_created", "patron_card_used"}
    assert "patron_id" not in published["loan_created"]
    assert published["patron_card_used"]["patron_id"] == 42 and "item_barcode" not in published["patron_card_used"]


def test_the_daily_pass_runs_once_a_day_lifts_past_suspensions_and_announces_reminders(loans):
    today = date(2026, 11, 25)
    loans.clock.travel(to=today)
    for number, (patron_id, due) in enumerate([(1, today + timedelta(days=2)), (1, today + timedelta(days=2)),
                                               (2, today - timedelta(days=1)), (3, today - timedelta(days=8)),
                                               (3, today - timedelta(days=3)), (4, today - timedelta(days=3))]):
        loans.borrowers.session.add(Borrower(ref=f"r{number}", tenant="kaizu", patron_id=patron_id,
                                             recorded_at=datetime.now(timezone.utc)))
        loans.db.add(Loan(tenant="kaizu", borrower_ref=f"r{number}", item_barcode=f"K{number}", work_id=number,
                          library="main", loaned_on=due - timedelta(days=14), due_date=due,
                          created_at=datetime.now(timezone.utc)))
    loans.borrowers.session.add_all([Suspension(tenant="kaizu", patron_id=5, until=today - timedelta(days=1)),
                                     Suspension(tenant="kaizu", patron_id=6, until=today)])
    loans.db.commit()
    loans.borrowers.session.commit()

    loans.daily_pass()
    published = [(args[0], args[2]) for args, _ in loans.publish.call_args_list]
    assert published == [
        ("loans_due_soon", {"patron_id": 1, "items": 2, "due_date": today + timedelta(days=2)}),
        ("loans_overdue", {"patron_id": 2, "items": 1, "oldest_due_date": today - timedelta(days=1),
                           "days_overdue": 1}),
        ("loans_overdue", {"patron_id": 3, "items": 2, "oldest_due_date": today - timedelta(days=8),
                           "days_overdue": 8}),
    ]  # patron 4, three days overdue, was reminded on day 1 and will be again on day 8
    assert [suspension.patron_id for suspension in loans.borrowers.session.query(Suspension)] == [6]
    loans.publish.reset_mock()
    loans.daily_pass()
    assert loans.publish.call_args_list == []


def test_a_second_checkout_of_a_copy_is_refused_by_the_database(loans):
    payload = {"card_number": "100000000008", "item_barcode": "K1", "library": "main"}
    loans.checkout(payload)
    loans.publish.reset_mock()
    with pytest.raises(ItemAlreadyOnLoan):
        loans.checkout(payload)
    assert loans.db.query(Loan).count() == 1
    assert loans.publish.call_count == 0  # nothing announced for what did not happen


def test_checkin_deletes_the_loan(loans):
    loans.checkout({"card_number": "100000000008", "item_barcode": "K1", "library": "main"})
    assert loans.checkin({"item_barcode": "K1", "library": "main"})["action"] == "shelve"
    assert loans.db.query(Loan).count() == 0
    with pytest.raises(ItemNotOnLoan):
        loans.checkin({"item_barcode": "K1", "library": "main"})


def test_a_refused_checkout_forgets_the_borrower_it_recorded_and_a_return_erases_its_own(loans):
    payload = {"card_number": "100000000008", "item_barcode": "K1", "library": "main"}
    loans.checkout(payload)
    with pytest.raises(ItemAlreadyOnLoan):
        loans.checkout(payload)
    [(patron_id, ref)] = loans.borrowers.session.query(Borrower.patron_id, Borrower.ref).all()
    assert (patron_id, ref) == (42, loans.db.query(Loan).one().borrower_ref)
    loans.checkin({"item_barcode": "K1", "library": "main"})
    assert loans.borrowers.session.query(Borrower).count() == 0


def test_a_borrower_the_store_fails_to_erase_at_checkin_is_swept_once_no_loan_names_it(loans, monkeypatch):
    loans.checkout({"card_number": "100000000008", "item_barcode": "K1", "library": "main"})
    with monkeypatch.context() as failing:
        failing.setattr(loans.borrowers, "forget", lambda refs: loans.borrowers.session.execute(text("SELECT x")))
        assert loans.checkin({"item_barcode": "K1", "library": "main"})["action"] == "shelve"
    assert loans.db.query(Loan).count() == 0 and loans.borrowers.session.query(Borrower).count() == 1
    loans.sweep_borrowers()
    assert loans.borrowers.session.query(Borrower).count() == 1  # too recent to tell from a commit under way
    loans.borrowers.session.query(Borrower).update({"recorded_at": datetime.now(timezone.utc) - timedelta(hours=1)})
    loans.sweep_borrowers()
    assert loans.borrowers.session.query(Borrower).count() == 0


def test_bad_checkout_input_is_refused_before_anyone_is_asked(loans):
    with pytest.raises(InvalidInput) as refused:
        loans.checkout({"card_number": "", "library": "x" * 100})
    assert set(refused.value.details) == {"card_number", "item_barcode", "library"}
    assert not loans.patrons.borrower.call_async.called


def vault_on(sqlite_session):
    return PatronVault(KeyRing(new_master_key_spec("unit")), b"k" * 32, sqlite_session(KeysBase.metadata))


@pytest.fixture
def patrons(sqlite_session):
    service = worker_factory(PatronsService, db=sqlite_session(PatronsBase.metadata), caller=CALLER,
                             vault=vault_on(sqlite_session),
                             config={"CARD_VALIDITY_YEARS": 3, "LOGIN_MAX_FAILURES": 5, "LOGIN_BLOCK_SECONDS": 900},
                             clock=LibraryTime())
    service.on_library_added(envelope("library_added", 1, "kaizu", {"library": "main", "kind": "main"}))
    return service


def test_registration_draws_another_card_number_when_one_is_taken(patrons, monkeypatch):
    first = patrons.register(PATRON)
    numbers = iter([first["card_number"], "100000000008"])
    monkeypatch.setattr("services.patrons.service.new_card_number", lambda: next(numbers))
    second = patrons.register(PATRON)
    assert second["card_number"] == "100000000008"


def test_card_use_events_count_once_however_often_they_arrive(patrons):
    patron = patrons.register(PATRON)
    event = envelope("patron_card_used", 1, "kaizu", {"patron_id": patron["id"], "used_on": "2026-11-20",
                                                       "library": "main"})
    for _ in range(3):
        patrons.on_card_used(event)
    later = envelope("patron_card_used", 1, "kaizu", {"patron_id": patron["id"], "used_on": "2026-11-25",
                                                       "library": "main"})
    patrons.on_card_used(later)
    record = patrons.db.get(Patron, patron["id"])
    assert (record.total_uses, record.last_used_on) == (2, date(2026, 11, 25))


def test_events_of_another_tenant_or_malformed_change_nothing(patrons):
    patron = patrons.register(PATRON)
    patrons.on_card_used(envelope("patron_card_used", 1, "elsewhere", {"patron_id": patron["id"],
                                                                        "used_on": "2026-11-20", "library": "x"}))
    patrons.on_card_used({"event_id": "not-a-uuid"})
    patrons.on_card_used(envelope("patron_card_used", 99, "kaizu", {"patron_id": patron["id"]}))
    assert patrons.db.get(Patron, patron["id"]).total_uses == 0


def test_staff_log_in_with_the_right_password_only(patrons):
    patrons.ensure_staff_account({"username": "desk", "password": "correct horse battery", "role": "librarian",
                                  "libraries": ["main"]})
    account = patrons.authenticate_staff({"username": "desk", "password": "correct horse battery"})
    assert (account["role"], account["libraries"], account["tenant"]) == ("librarian", ["main"], "kaizu")
    assert "password" not in account and "password_hash" not in account
    for wrong in ({"username": "desk", "password": "wrong"}, {"username": "ghost", "password": "whatever"}):
        with pytest.raises(InvalidCredentials):
            patrons.authenticate_staff(wrong)
    again = patrons.ensure_staff_account({"username": "desk", "password": "another password", "role": "admin"})
    assert again == {"created": False, "username": "desk"}


@pytest.fixture
def catalog(sqlite_session):
    service = worker_factory(CatalogService, db=sqlite_session(CatalogBase.metadata), caller=CALLER,
                             known_names=KnownNames())
    service.db.add_all([Tenant(code="kaizu", name="海津市"), Library(tenant="kaizu", code="main", name="本館",
                                                                      kind="main")])
    service.db.commit()
    return service


def loan_event(event_type, barcode, at, due_date=None):
    event = envelope(event_type, 1, "kaizu", {"item_barcode": barcode, "due_date": due_date})
    event["occurred_at"] = at.isoformat()
    return event


def test_availability_follows_loan_events_and_ignores_late_old_ones(catalog):
    work = catalog.add_work({"title": "こころ"})
    catalog.add_item({"barcode": "K1", "work_id": work["id"], "library": "main"})
    t0 = datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc)
    catalog.on_loan_created(loan_event("loan_created", "K1", t0, "2026-12-09"))
    catalog.on_loan_returned(loan_event("loan_returned", "K1", t0 + timedelta(minutes=5)))
    catalog.on_loan_created(loan_event("loan_created", "K1", t0))  # the same loan, redelivered late
    item = catalog.db.query(Item).one()
    assert (item.on_loan, item.due_date) == (False, None)
    assert catalog.get_work(work["id"])["availability"] == [{"library": "main", "name": "本館", "total": 1,
                                                              "available": 1}]


def test_a_return_applied_after_the_newer_news_of_the_shelf_still_ends_the_loan(catalog):
    """A check-in elsewhere, then at home: loan_returned and copy_status_changed travel on queues of their own,
    so the copy's "available" (the later check-in) may be applied before the return itself (seen in CI)."""
    work = catalog.add_work({"title": "三四郎"})
    catalog.add_item({"barcode": "K2", "work_id": work["id"], "library": "main"})
    t0 = datetime(2026, 12, 3, 1, 0, tzinfo=timezone.utc)
    catalog.on_loan_created(loan_event("loan_created", "K2", t0, "2026-12-17"))
    shelf = envelope("copy_status_changed", 1, "kaizu", {"item_barcode": "K2", "status": "available",
                                                          "library": "main"})
    shelf["occurred_at"] = (t0 + timedelta(minutes=9)).isoformat()
    catalog.on_copy_status_changed(shelf)
    catalog.on_loan_returned(loan_event("loan_returned", "K2", t0 + timedelta(minutes=5)))
    assert (catalog.get_item("K2")["status"], catalog.get_item("K2")["due_date"]) == ("available", None)


def popularity(catalog, query):
    """Titles of a search by the most borrowed first, with how often each was lent."""
    counts = dict(catalog.db.execute(text("SELECT work_id, loans FROM loan_counts")).all())
    return [(hit["title"], counts.get(hit["id"], 0))
            for hit in catalog.search({"q": query, "sort": "popular"})["items"]]


def test_each_loan_counts_once_towards_its_works_popularity_however_often_it_is_told(catalog):
    work = catalog.add_work({"title": "坊っちゃん 上"})
    other = catalog.add_work({"title": "坊っちゃん 下"})
    for barcode, lent in (("P1", work), ("P2", work), ("P3", other)):
        catalog.add_item({"barcode": barcode, "work_id": lent["id"], "library": "main"})
    t0 = datetime(2026, 12, 1, 1, 0, tzinfo=timezone.utc)
    first = loan_event("loan_created", "P1", t0, "2026-12-15")
    catalog.on_loan_created(first)
    catalog.on_loan_created(first)  # redelivered: the same event id
    catalog.on_loan_created(loan_event("loan_created", "P1", t0, "2026-12-15"))  # the same loan published again
    catalog.on_loan_created(loan_event("loan_created", "P2", t0, "2026-12-15"))  # another copy, the same work
    catalog.on_loan_created(loan_event("loan_created", "P3", t0, "2026-12-15"))
    assert popularity(catalog, "坊っちゃん") == [("坊っちゃん 上", 2), ("坊っちゃん 下", 1)]


def test_the_next_loan_of_a_copy_counts_even_when_it_comes_before_the_return_of_the_last(catalog):
    """loan_created and loan_returned travel on queues of their own: lent, returned and lent again at the
    desk, the second loan may be applied before the return. Both are loans; the late return changes nothing."""
    work = catalog.add_work({"title": "草枕"})
    catalog.add_item({"barcode": "P4", "work_id": work["id"], "library": "main"})
    t0 = datetime(2026, 12, 2, 1, 0, tzinfo=timezone.utc)
    catalog.on_loan_created(loan_event("loan_created", "P4", t0, "2026-12-16"))
    catalog.on_loan_created(loan_event("loan_created", "P4", t0 + timedelta(minutes=10), "2026-12-16"))
    catalog.on_loan_returned(loan_event("loan_returned", "P4", t0 + timedelta(minutes=9)))
    catalog.on_loan_created(loan_event("loan_created", "P4", t0, "2026-12-16"))  # the first, told again late
    assert popularity(catalog, "草枕") == [("草枕", 2)]
    assert catalog.get_item("P4")["status"] == "on_loan"  # the late return is older than the loan after it
    catalog.on_loan_due_date_changed(loan_event("loan_due_date_changed", "P4", t0 + timedelta(days=1),
                                                "2026-12-30"))  # a renewal is not another loan
    assert popularity(catalog, "草枕") == [("草枕", 2)]


def test_a_loan_of_a_copy_the_catalogue_does_not_hold_counts_nowhere(catalog):
    catalog.add_work({"title": "行人"})
    catalog.on_loan_created(loan_event("loan_created", "NOSUCH", datetime(2026, 12, 2, tzinfo=timezone.utc)))
    assert popularity(catalog, "行人") == [("行人", 0)]


def test_a_reimport_updates_instead_of_duplicating(catalog):
    record = {"source_id": "aozora:1", "title": "旧題", "authors": [{"name": "夏目 漱石"}]}
    first = catalog.import_works([record, {"title": ""}])
    assert (first["added"], first["updated"], first["rejected"]) == (1, 0, 1)
    assert first["errors"][0]["record"] == 1 and "title" in first["errors"][0]["reason"]
    second = catalog.import_works([dict(record, title="新題")])
    assert (second["added"], second["updated"]) == (0, 1)
    assert [work.title for work in catalog.db.query(Work)] == ["新題"]


def test_people_met_before_are_not_looked_up_again_and_a_batch_rolled_back_is_forgotten(catalog):
    statements = []
    event.listen(catalog.db.get_bind(), "before_cursor_execute",
                 lambda _conn, _cursor, sql, *_args: statements.append(sql))
    catalog.import_works([{"title": "こころ", "authors": [{"name": "夏目 漱石"}], "publisher": "岩波書店"}])
    names_asked = re.compile(r"\b(FROM|INTO) (people|publishers)\b")
    assert any(names_asked.search(sql) for sql in statements)
    statements.clear()
    catalog.import_works([{"title": "門", "authors": [{"name": "夏目 漱石"}], "publisher": "岩波書店"}])
    assert statements and not any(names_asked.search(sql) for sql in statements)

    cataloguer = Cataloguer(catalog.db, "kaizu", catalog.known_names)
    cataloguer.save([{"title": "舞姫", "authors": [{"name": "森 鷗外", "role": "author"}]}])
    catalog.db.rollback()  # the batch failed: the person it made is gone, and must not be remembered
    catalog.import_works([{"title": "高瀬舟", "authors": [{"name": "森 鷗外"}]}])
    ogai = catalog.db.query(Person).filter_by(name="森 鷗外").one()
    assert [credit.person_id for credit in catalog.db.query(Contributor).join(Work).filter(Work.title == "高瀬舟")] \
        == [ogai.id]
    assert [author["name"] for work in catalog.search({"q": "もりおうがい"})["items"] for author in work["authors"]] \
        == ["森 鷗外"]


def test_bulk_copies_report_each_rejected_one(catalog):
    work = catalog.add_work({"title": "こころ"})
    result = catalog.add_items([
        {"barcode": "K1", "work_id": work["id"], "library": "main"},
        {"barcode": "K1", "work_id": work["id"], "library": "main"},
        {"barcode": "K2", "work_id": 999, "library": "main"},
        {"barcode": "bad barcode!", "work_id": work["id"], "library": "main"},
    ])
    assert (result["added"], result["rejected"]) == (1, 3)
    assert [error["record"] for error in result["errors"]] == [1, 2, 3]
    with pytest.raises(ItemNotFound):
        catalog.get_item("K2")


def test_bulk_copies_keep_their_item_type_and_say_it(catalog):
    work = catalog.add_work({"title": "広辞苑"})
    catalog.add_items([{"barcode": "R1", "work_id": work["id"], "library": "main", "item_type": "reference"},
                       {"barcode": "B1", "work_id": work["id"], "library": "main"}])
    assert {item.barcode: item.item_type for item in catalog.db.query(Item)} == {"R1": "reference", "B1": "book"}
    event_type, _tenant, payload = catalog.publish.call_args.args
    assert event_type == "items_added"
    assert [(item["item_barcode"], item["item_type"]) for item in payload["items"]] == [("R1", "reference"),
                                                                                        ("B1", "book")]


def test_one_address_failing_across_many_accounts_is_throttled(sqlite_session):
    from services.patrons.rules import ADDRESS_FACTOR
    from shiori.errors import TooManyAttempts

    caller = CallerContext({"tenant": "kaizu", "actor": "public", "role": "public", "address": "192.0.2.7"})
    patrons = worker_factory(PatronsService, db=sqlite_session(PatronsBase.metadata), caller=caller,
                             vault=vault_on(sqlite_session), config={"LOGIN_MAX_FAILURES": 1, "LOGIN_BLOCK_SECONDS": 60},
                             clock=LibraryTime())
    for n in range(ADDRESS_FACTOR):
        with pytest.raises(InvalidCredentials):
            patrons.authenticate_staff({"username": f"guess-{n}", "password": "x"})
    with pytest.raises(TooManyAttempts) as refused:
        patrons.authenticate_staff({"username": "guess-new", "password": "x"})
    assert 0 < refused.value.retry_after <= 60


# --- who erases a patron, and which libraries patrons know (issue 12: patrons calls no other service) ---


def test_only_the_loans_service_may_send_the_erasure_and_it_erases_everywhere(patrons):
    from services.patrons.errors import PatronNotFound
    from shiori.commands.provision import service_grants
    from shiori.commands.serve import SERVICE_NAMES, service_class

    def may_send(name, routing_key):
        return any(re.match(topic["write"], routing_key) for topic in service_grants(
            service_class(name), service_class).topic_permissions() if topic["exchange"] == "nameko-rpc")

    assert {name for name in SERVICE_NAMES if may_send(name, "patrons.erase_cleared_patron")} == {"loans"}
    assert may_send("gateway", "patrons.get_patron") and may_send("loans", "patrons.borrower")

    patron = patrons.register(PATRON)
    patrons.erase_cleared_patron(patron["id"])
    assert patrons.db.get(Patron, patron["id"]) is None
    assert patrons.publish.call_args_list[-2].args == ("patron_deleted", "kaizu", {"patron_id": patron["id"]})
    with pytest.raises(PatronNotFound):
        patrons.erase_cleared_patron(patron["id"])


def test_the_loans_service_refuses_to_erase_a_patron_with_anything_out_and_says_how_much(loans):
    from services.patrons.errors import PatronHasLoans

    loans.checkout({"card_number": "100000000008", "item_barcode": "K1", "library": "main"})  # to patron 42
    with pytest.raises(PatronHasLoans) as refused:
        loans.erase_patron(42)
    assert refused.value.details == {"loans": 1}
    loans.patrons.ensure_visible.assert_called_once_with(42)  # one out of the caller's sight is not found first
    assert not loans.patrons.erase_cleared_patron.called

    loans.checkin({"item_barcode": "K1", "library": "main"})
    loans.erase_patron(42)
    loans.patrons.erase_cleared_patron.assert_called_once_with(42)


def test_a_patron_is_registered_only_at_a_library_the_patrons_service_has_heard_of(patrons):
    with pytest.raises(InvalidInput) as refused:
        patrons.register(dict(PATRON, home_library="kita"))
    assert refused.value.details == {"home_library": ["no library has this code"]}
    patrons.on_library_added(envelope("library_added", 1, "kaizu", {"library": "kita", "kind": "branch"}))
    assert patrons.register(dict(PATRON, home_library="kita"))["home_library"] == "kita"
    assert patrons.known_libraries() == {"main": "main", "kita": "branch"}
    patrons.on_library_added(envelope("library_added", 1, "elsewhere", {"library": "nishi", "kind": "main"}))
    with pytest.raises(InvalidInput):
        patrons.register(dict(PATRON, home_library="nishi"))  # another tenant's


def test_the_last_admin_keeps_the_role_and_with_a_second_admin_may_hand_it_on(patrons):
    from services.patrons.errors import LastAdmin
    from services.patrons.models import StaffAccount

    first = patrons.create_staff_account({"username": "head", "password": "a-long-password", "role": "admin",
                                          "libraries": []})
    with pytest.raises(LastAdmin) as refused:
        patrons.update_staff_account(first["id"], {"role": "librarian", "libraries": ["main"]})
    assert refused.value.details == {"role": "librarian"}
    assert (patrons.db.get(StaffAccount, first["id"]).role, patrons.publish.call_count) == ("admin", 0)

    second = patrons.create_staff_account({"username": "deputy", "password": "a-long-password", "role": "admin",
                                           "libraries": []})
    assert patrons.update_staff_account(first["id"], {"role": "librarian", "libraries": ["main"]})["role"] \
        == "librarian"
    with pytest.raises(LastAdmin):
        patrons.update_staff_account(second["id"], {"role": "librarian", "libraries": ["main"]})
    with pytest.raises(LastAdmin):
        patrons.delete_staff_account(second["id"])
