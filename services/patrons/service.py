"""Patrons: library cards and the personal data on them, and the staff accounts that may read it."""
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from nameko.dependency_providers import Config
from sqlalchemy import case, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from services.patrons import errors
from services.patrons.models import Base, Patron, ProcessedEvent, StaffAccount
from services.patrons.rules import borrowing_refusal, card_expiry, new_card_number
from services.patrons.schemas import (
    PUBLISHED_EVENTS, CardLookupSchema, CardUsedEventSchema, CredentialsSchema, PatronSchema,
    StaffAccountSchema,
)
from shiori.clock import library_today, now
from shiori.db import Database, commit_unique
from services.catalog.errors import LibraryNotFound
from shiori.errors import InvalidInput, load
from shiori.events import EventPublisher, first_delivery, read_event, subscribe
from shiori.rpc import Caller, ServiceRpc, rpc

CARD_USED_VERSION = 1
password_hasher = PasswordHasher()
# Verified against when the user name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = password_hasher.hash("not a password of anyone")


class PatronsService:
    name = "patrons"

    db = Database(Base.metadata)
    caller = Caller()
    config = Config()
    publish = EventPublisher(PUBLISHED_EVENTS)
    catalog = ServiceRpc("catalog")
    loans = ServiceRpc("loans")

    @rpc
    def health(self):
        self.db.execute(select(1))
        return "ok"

    # --- library cards ---------------------------------------------------------------------------

    @rpc
    def register(self, payload):
        data = load(PatronSchema(), payload)
        self._check_library(data["home_library"])
        today = library_today()
        validity_years = int(self.config["CARD_VALIDITY_YEARS"])
        patron = Patron(
            tenant=self.caller.tenant, registered_on=today, expires_on=card_expiry(today, validity_years),
            total_uses=0, status="active", **data,
        )
        for _attempt in range(5):
            patron.card_number = new_card_number()
            self.db.add(patron)
            try:
                self.db.commit()
                break
            except IntegrityError:  # the random card number is taken: draw another
                self.db.rollback()
        else:
            raise RuntimeError("could not draw a free card number")
        self.publish("patron_registered", patron.tenant,
                     {"patron_id": patron.id, "home_library": patron.home_library, "category": patron.category})
        return PatronSchema().dump(patron)

    @rpc
    def get_patron(self, patron_id):
        return PatronSchema().dump(self._patron(patron_id))

    @rpc
    def find_by_card(self, query):
        params = load(CardLookupSchema(), query)
        patron = self._patron_by_card(params["card_number"])
        items = [] if patron is None else [PatronSchema().dump(patron)]
        return {"items": items, "total": len(items), "page": params["page"], "per_page": params["per_page"]}

    @rpc
    def update_patron(self, patron_id, payload):
        changes = load(PatronSchema(), payload, partial=True)
        patron = self._patron(patron_id)
        if "home_library" in changes:
            self._check_library(changes["home_library"])
        for field, value in changes.items():
            setattr(patron, field, value)
        self.db.commit()
        self.publish("patron_updated", patron.tenant, {"patron_id": patron.id, "changed_fields": sorted(changes)})
        return PatronSchema().dump(patron)

    @rpc
    def delete_patron(self, patron_id):
        patron = self._patron(patron_id)
        loans_out = self.loans.count_patron_loans(patron.id)
        if loans_out:
            raise errors.PatronHasLoans(details={"loans": loans_out})
        tenant = patron.tenant
        self.db.delete(patron)
        self.db.commit()
        self.publish("patron_deleted", tenant, {"patron_id": patron_id})

    @rpc
    def borrower(self, card_number):
        """For a check-out: the card's patron, if the card may borrow today."""
        patron = self._patron_by_card(load(CardLookupSchema(), {"card_number": card_number})["card_number"])
        if patron is None:
            raise errors.PatronNotFound("no patron has this card number", {"card_number": card_number})
        refusal = borrowing_refusal(patron.status, patron.expires_on, library_today())
        if refusal:
            raise errors.PatronBlocked(refusal, {"status": patron.status})
        return {"id": patron.id, "category": patron.category, "home_library": patron.home_library}

    @subscribe("loans", "patron_card_used")
    def on_card_used(self, body):
        event = read_event(body, CARD_USED_VERSION, CardUsedEventSchema())
        if event is None or not first_delivery(self.db, ProcessedEvent, event):
            return
        used_on = event["data"]["used_on"]
        # One UPDATE, so that two check-outs counted at the same moment both count.
        self.db.execute(
            update(Patron)
            .where(Patron.id == event["data"]["patron_id"], Patron.tenant == event["tenant"])
            .values(total_uses=Patron.total_uses + 1, last_used_on=case(
                (or_(Patron.last_used_on.is_(None), Patron.last_used_on < used_on), used_on),
                else_=Patron.last_used_on))
        )
        self.db.commit()

    # --- staff accounts ----------------------------------------------------------------------------

    @rpc
    def ensure_staff_account(self, payload):
        """First-run and operators' call: create the account unless the user name exists. Answers whether
        it was created (a password is never returned)."""
        data = load(StaffAccountSchema(), payload)
        if self.db.scalar(select(StaffAccount).where(StaffAccount.username == data["username"])):
            return {"created": False, "username": data["username"]}
        account = StaffAccount(
            tenant=self.caller.tenant, username=data["username"], role=data["role"],
            libraries=data["libraries"], password_hash=password_hasher.hash(data["password"]), created_at=now(),
        )
        self.db.add(account)
        commit_unique(self.db, errors.UsernameTaken(details={"username": data["username"]}))
        return {"created": True, "username": account.username}

    @rpc
    def authenticate_staff(self, payload):
        credentials = load(CredentialsSchema(), payload)
        account = self.db.scalar(select(StaffAccount).where(StaffAccount.username == credentials["username"]))
        try:
            password_hasher.verify(account.password_hash if account else _DUMMY_HASH, credentials["password"])
        except (VerificationError, InvalidHashError):
            raise errors.InvalidCredentials() from None
        if account is None:
            raise errors.InvalidCredentials()
        if password_hasher.check_needs_rehash(account.password_hash):
            account.password_hash = password_hasher.hash(credentials["password"])
            self.db.commit()
        return StaffAccountSchema().dump(account)

    @rpc
    def count_staff_accounts(self):
        return self.db.scalar(select(func.count()).select_from(StaffAccount).where(
            StaffAccount.tenant == self.caller.tenant))

    # --- helpers -----------------------------------------------------------------------------------

    def _check_library(self, code):
        try:
            self.catalog.get_library(code)
        except LibraryNotFound:
            raise InvalidInput(details={"home_library": ["no library has this code"]}) from None

    def _patron(self, patron_id):
        patron = self.db.get(Patron, patron_id)
        if patron is None or patron.tenant != self.caller.tenant:
            raise errors.PatronNotFound(details={"patron_id": patron_id})
        return patron

    def _patron_by_card(self, card_number):
        return self.db.scalar(
            select(Patron).where(Patron.tenant == self.caller.tenant, Patron.card_number == card_number)
        )
