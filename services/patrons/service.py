"""Patrons: library cards and the personal data on them, and the staff accounts that may read it.

This service enforces who may see whom itself (``rules.Scope``), from the caller's identity that travels
with every call, so that a mistake in the gateway alone cannot leak a resident's data.
"""
import logging
from datetime import date, timedelta

from argon2 import PasswordHasher
from eventlet import tpool
from argon2.exceptions import InvalidHashError, VerificationError
from nameko.dependency_providers import Config
from nameko.timer import timer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.patrons import errors, logins
from services.patrons.access_record import AccessRecord
from services.patrons.models import (
    SEALED_FIELDS, Base, CommandRecord, KnownLibrary, OutboxEvent, Patron, ProcessedEvent, RetiredCard, StaffAccount,
)
from services.patrons.repository import PatronsRepository
from services.patrons.rules import (
    AdminRemains, Scope, WorksAtListedLibraries, age_band, borrowing_refusal, login_throttle, new_card_number,
    phone_digits, pin_refusal, reading_key, years_after,
)
from services.patrons.vault import Vault
from services.patrons.schemas import (
    PERSONAL_FIELDS, PUBLISHED_EVENTS, AccessEntrySchema, AccessQuerySchema, CardUsedEventSchema, PatronLookupSchema,
    CardStatusSchema, CredentialsSchema, LibraryAddedEventSchema, OwnAccessEntrySchema, OwnRecordChangeSchema,
    PatronCredentialsSchema, PatronSchema, PinChangeSchema, RevocationQuerySchema, RevokedCredentialSchema,
    StaffAccountChangeSchema, StaffAccountSchema,
)
from shiori.clock import Clock, token_time
from shiori.db import Database, commit_unique
from shiori.errors import Forbidden, InvalidInput, load
from shiori.events import EventDelivery, EventPublisher, first_delivery, read_event, subscribe
from shiori.idempotency import idempotent
from shiori.roles import OPERATOR, PATRON, STAFF_ROLES, SYSTEM, WHOLE_TENANT
from shiori.rpc import Caller, rpc

log = logging.getLogger(__name__)
EVENT_VERSION = 1
# Changing these ends the patron's tokens: whoever held the old PIN or the lost card is logged out.
CREDENTIAL_FIELDS = {"pin", "card_number"}
# A revocation is kept for a token's lifetime and this much more, for clocks a little apart.
REVOCATION_MARGIN = timedelta(minutes=1)
password_hasher = PasswordHasher()
# Verified against when the account is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = password_hasher.hash("not a password of anyone")


def slow_hash(secret):
    """Argon2 takes ~170 ms of CPU: in a native thread, so this process's other calls (a desk's check-out)
    do not wait behind a log-in. (argon2-cffi releases the GIL while it hashes.)"""
    return tpool.execute(password_hasher.hash, secret)


# A command answering a patron's record keeps only the patron's id: a repeat reads the record again (and the access
# record notes that read), so personal data stays sealed in the patron's row alone.
once_for_patron = idempotent(CommandRecord, kept=lambda patron: {"patron_id": patron["id"]},
                             replayed=lambda service, kept: service.get_patron(kept["patron_id"]))


class PatronsService:
    name = "patrons"

    db = Database(Base.metadata)
    vault = Vault()
    access_record = AccessRecord()
    caller = Caller()
    clock = Clock()
    config = Config()
    publish = EventPublisher(PUBLISHED_EVENTS, OutboxEvent)
    delivery = EventDelivery()

    @rpc
    def health(self):
        self.db.execute(select(1))
        return {"status": "ok", **self.delivery()}

    # --- library cards ---------------------------------------------------------------------------

    @rpc
    @once_for_patron
    def register(self, payload):
        self.caller.require(STAFF_ROLES + WHOLE_TENANT)
        data = load(PatronSchema(), payload)
        self._check_home_library(data["home_library"])
        pin = data.pop("pin", None)
        today = self.clock.today()
        tenant = self.caller.tenant
        patron = Patron(
            tenant=tenant, key_ref=self.vault.new_key(), home_library=data["home_library"],
            category=data["category"], registered_on=today, total_uses=0, status="active",
            expires_on=years_after(today, int(self.config["CARD_VALIDITY_YEARS"])),
            pin_hash=self._pin_hash(pin),
        )
        self._seal(patron, data)
        for _attempt in range(5):
            card_number = new_card_number()
            self._seal(patron, {"card_number": card_number})
            self.db.add(patron)
            try:
                self.db.flush()
                break
            except IntegrityError:  # the random card number is taken: draw another
                self.db.rollback()
        else:
            raise RuntimeError("could not draw a free card number")
        self._record("create", [patron.id], data)
        self.publish("patron_registered", patron.tenant,
                     {"patron_id": patron.id, "home_library": patron.home_library, "category": patron.category})
        # The same fact without the patron, for consumers that must never hold a patron id (statistics).
        self.publish("card_registered", patron.tenant, {
            "home_library": patron.home_library, "category": patron.category,
            "age_band": age_band(data["birth_date"], today), "registered_on": today})
        self.db.commit()
        return self._dump(patron)

    @rpc
    def get_patron(self, patron_id):
        self.caller.require(STAFF_ROLES + WHOLE_TENANT + (PATRON,))
        patron = self._patron(patron_id)
        self._record("read", [patron.id], PERSONAL_FIELDS)
        self.db.commit()
        return self._dump(patron)

    @rpc
    def ensure_visible(self, patron_id):
        """Raises PatronNotFound unless the caller may see this patron (for services listing their data)."""
        self._patron(patron_id)

    @rpc
    def find_patrons(self, query):
        """Look a patron up by card number, by phone number, or by name reading with birth date (through their
        keyed hashes)."""
        self.caller.require(STAFF_ROLES + WHOLE_TENANT)
        params = load(PatronLookupSchema(), query)
        if "card_number" in params:
            found = [self._patron_by_card(params["card_number"])]
        elif "phone" in params:
            found = self._registry().patrons_by_hash(
                "phone", self.vault.lookup_hash(self.caller.tenant, "phone", phone_digits(params["phone"])))
        else:
            found = self._registry().patrons_by_hash(
                "reading", self._reading_hash(self.caller.tenant, params["name_reading"], params["birth_date"]))
        found = [patron for patron in found if self._visible(patron)]
        if found:  # a list read is recorded for every patron it shows
            self._record("read", [patron.id for patron in found], PERSONAL_FIELDS)
            self.db.commit()
        return {"items": [self._dump(patron) for patron in found], "total": len(found),
                "page": params["page"], "per_page": params["per_page"]}

    @rpc
    @once_for_patron
    def update_patron(self, patron_id, payload):
        self.caller.require(STAFF_ROLES + WHOLE_TENANT)
        changes = load(PatronSchema(), payload, partial=True)
        patron = self._patron(patron_id)
        if "home_library" in changes:
            self._check_home_library(changes["home_library"])
        changed_fields = sorted(changes)  # the PIN among them by name, never by value
        if "pin" in changes:
            patron.pin_hash = self._pin_hash(changes.pop("pin"))
        for field in ("home_library", "category"):
            if field in changes:
                setattr(patron, field, changes.pop(field))
        self._seal(patron, changes)
        return self._changed_card(patron, changed_fields)

    # --- a patron's own changes (my page) -----------------------------------------------------------

    @rpc
    @once_for_patron
    def update_own_record(self, payload):
        """The logged-in patron changes their own e-mail address; any other field is refused by name (the desk
        changes those, and the PIN has ``change_own_pin``)."""
        self.caller.require((PATRON,))
        changes = load(OwnRecordChangeSchema(), payload)
        patron = self._patron(self.caller.patron_id)
        self._seal(patron, changes)
        return self._changed_card(patron, sorted(changes))

    @rpc
    @idempotent(CommandRecord)
    def change_own_pin(self, payload):
        """The logged-in patron changes their PIN, giving the current one. Each try counts against the card and
        the address as a log-in does, so a token left open on a library's terminal cannot be used to guess the
        PIN. The patron's tokens end, this one too: answers whom to issue a new one to."""
        self.caller.require((PATRON,))
        change = load(PinChangeSchema(), payload)
        patron = self._patron(self.caller.patron_id)
        card_key = self._card_key(patron.card_hash)
        self._admit_attempt(card_key)
        if not self._verify(patron.pin_hash, change["current_pin"]):
            raise errors.CurrentPinWrong(details={"current_pin": [errors.CurrentPinWrong.field_message]})
        self._attempt_succeeded(card_key)
        patron.pin_hash = self._pin_hash(change["new_pin"], field="new_pin")
        self._changed_card(patron, ["pin"])
        return self._patron_account(patron)

    @rpc(callers=("loans",))
    def erase_cleared_patron(self, patron_id):
        """Erase a patron, on request or by the retention pass: the record everywhere, and the key that
        opened every copy of it. Only the loans service may ask (its ``erase_patron``; the broker lets no other
        service send this), once it has found nothing out on loan to them: this service does not know what is
        (docs/services.md)."""
        self.caller.require(STAFF_ROLES + WHOLE_TENANT)
        self._erase(self._patron(patron_id))

    @rpc
    def export_patron(self, patron_id):
        """This service's part of everything held about a patron (開示請求): the record and the access
        record's entries about them (the loans the caller asks the loans service for). The export is itself
        recorded, after the entries are read."""
        self.caller.require(STAFF_ROLES + WHOLE_TENANT + (PATRON,))
        patron = self._patron(patron_id)
        entries = self._registry().access_entries_about(patron.id)
        export = {"patron": self._dump(patron), "access_record": AccessEntrySchema(many=True).dump(entries)}
        self._record("export", [patron.id], PERSONAL_FIELDS)
        self.db.commit()
        return export

    @rpc
    def unused_patrons(self):
        """The tenant's patrons unused for the retention period (by id), for the loans service's
        ``apply_retention``, which erases those with nothing on loan."""
        self.caller.require(WHOLE_TENANT)
        return self._unused_patrons()

    def _unused_patrons(self):
        years = int(self.config["RETENTION_YEARS"])
        if years <= 0:
            return {"retention_years": 0, "patron_ids": []}
        cutoff = years_after(self.clock.today(), -years)  # last use (or registration) before this day
        return {"retention_years": years, "patron_ids": self._registry().unused_since(cutoff)}

    @rpc
    def known_libraries(self):
        """The tenant's libraries as this service has heard of them (``library_added``), code to kind: who adds
        a library and at once registers patrons or staff there waits until it is among them."""
        self.caller.require(STAFF_ROLES + WHOLE_TENANT)
        return self._registry().known_libraries()

    @rpc
    def drop_expired_addresses(self):
        """Operators: drop now the client addresses older than the address retention period, as the hourly
        pass does, in every tenant's access record and in the log-in failure records."""
        self.caller.require((OPERATOR,))
        return self._drop_expired_addresses()

    @timer(interval=3600)
    def retention_timer(self):
        """The scheduled pass: addresses past their time go; then each tenant's patrons unused for the
        retention period are announced (``patrons_past_retention``), and the loans service erases those with
        nothing on loan (only it knows what is)."""
        dropped = self._drop_expired_addresses()
        if dropped["access_entries"] or dropped["login_failures"]:
            log.info("dropped the addresses of %d access record entries and %d log-in failure records",
                     dropped["access_entries"], dropped["login_failures"])
        for tenant in PatronsRepository.tenants(self.db):
            self.caller.act_as(tenant, "system:patrons:retention", OPERATOR)
            unused = self._unused_patrons()
            if unused["patron_ids"]:
                self.publish("patrons_past_retention", tenant, unused)
                self.db.commit()

    def _drop_expired_addresses(self):
        days = int(self.config["ADDRESS_RETENTION_DAYS"])
        if days <= 0:
            return {"address_retention_days": 0, "access_entries": 0, "login_failures": 0}
        cutoff = self.clock.now() - timedelta(days=days)
        login_failures = logins.forget_addresses_before(self.db, cutoff)
        access_entries = self.access_record.drop_addresses(self.db, cutoff)  # commits both
        return {"address_retention_days": days, "access_entries": access_entries, "login_failures": login_failures}

    def _erase(self, patron):
        patron_id, tenant = patron.id, patron.tenant
        # The key first: once it is gone the record is unreadable everywhere, backups included, even if
        # deleting the row itself were to fail (a retry then completes it).
        self.vault.shred(patron.key_ref)
        self.db.delete(patron)
        self._record("delete", [patron_id], PERSONAL_FIELDS)
        revoked = [self._revoke(tenant, f"patron:{patron_id}")]  # their tokens end with them
        self.publish("patron_deleted", tenant, {"patron_id": patron_id})
        self._announce(tenant, revoked)
        self.db.commit()

    @rpc
    def rewrap_data_keys(self, limit=1000):
        """Operators, after adding a new master key in front of the ring: move up to ``limit`` data keys to it."""
        self.caller.require(WHOLE_TENANT)
        return self.vault.rewrap(limit)

    @rpc
    def borrower(self, card_number):
        """For a check-out: the card's patron, if the card may borrow today."""
        card_number = load(PatronLookupSchema(), {"card_number": card_number})["card_number"]
        patron = self._patron_by_card(card_number)
        if patron is None:
            if self._registry().card_retired(self._card_hash(card_number)):
                raise errors.CardReportedLost(details={"card_number": card_number})
            raise errors.PatronNotFound("no patron has this card number", {"card_number": card_number})
        return self._may_borrow(patron)

    @rpc
    def borrower_by_id(self, patron_id):
        """For a renewal or a hold: the patron, if the caller may see them (what ``ensure_visible`` refuses, this
        refuses too: a renewal asks patrons this alone) and their card may borrow today."""
        return self._may_borrow(self._patron(patron_id))

    def _may_borrow(self, patron):
        refusal = borrowing_refusal(patron.status, patron.expires_on, self.clock.today())
        if refusal:
            raise refusal
        birth_date = date.fromisoformat(self.vault.open(patron.key_ref, "birth_date", patron.birth_date_sealed))
        return {"id": patron.id, "category": patron.category, "home_library": patron.home_library,
                "age_band": age_band(birth_date, self.clock.today())}

    @rpc
    def contacts(self, patron_ids, fields):
        """Name and e-mail (for a notice) or name and phone (for the desk to call), with the home library, of
        patrons the caller may see; each read is recorded like any other. Patrons gone or out of sight are
        left out."""
        allowed = {("name", "email"), ("name", "phone")}
        if tuple(fields) not in allowed:
            raise InvalidInput(details={"fields": [f"one of {sorted(allowed)}"]})
        patrons = [patron for patron in self._registry().patrons(patron_ids) if self._visible(patron)]
        if patrons:
            self._record("read", [patron.id for patron in patrons], list(fields))
            self.db.commit()
        return {str(patron.id): {"home_library": patron.home_library, **{
            field: self.vault.open(patron.key_ref, field, getattr(patron, f"{field}_sealed")) for field in fields}}
            for patron in patrons}

    @rpc
    @once_for_patron
    def renew_card(self, patron_id):
        """The desk renews an expired (or expiring) card: valid again for the card validity period from today."""
        self.caller.require(STAFF_ROLES + WHOLE_TENANT)
        patron = self._patron(patron_id)
        patron.expires_on = years_after(self.clock.today(), int(self.config["CARD_VALIDITY_YEARS"]))
        return self._changed_card(patron, ["expires_on"])

    @rpc
    @once_for_patron
    def replace_lost_card(self, patron_id):
        """A card reported lost: the old number stops working (the desk is told it was reported lost) and a
        new one is issued; the patron, their loans and holds stay as they are."""
        self.caller.require(STAFF_ROLES + WHOLE_TENANT)
        patron = self._patron(patron_id)
        self.db.add(RetiredCard(tenant=patron.tenant, card_hash=patron.card_hash, retired_on=self.clock.today()))
        self._seal(patron, {"card_number": new_card_number()})
        return self._changed_card(patron, ["card_number"])

    @rpc
    @once_for_patron
    def set_card_status(self, patron_id, payload):
        """Suspend a patron's borrowing (status "suspended") or lift it ("active")."""
        self.caller.require(STAFF_ROLES + WHOLE_TENANT)
        patron = self._patron(patron_id)
        patron.status = load(CardStatusSchema(), payload)["status"]
        return self._changed_card(patron, ["status"])

    def _changed_card(self, patron, changed_fields):
        self._record("change", [patron.id], changed_fields)
        credentials_changed = CREDENTIAL_FIELDS & set(changed_fields)
        revoked = [self._revoke(patron.tenant, f"patron:{patron.id}")] if credentials_changed else []
        self.publish("patron_updated", patron.tenant, {"patron_id": patron.id, "changed_fields": changed_fields})
        self._announce(patron.tenant, revoked)
        self.db.commit()
        return self._dump(patron)

    @subscribe("loans", "patron_card_used")
    def on_card_used(self, body):
        event = read_event(body, EVENT_VERSION, CardUsedEventSchema())
        if event is None or not first_delivery(self.db, ProcessedEvent, event):
            return
        PatronsRepository(self.db, event["tenant"]).count_card_use(event["data"]["patron_id"],
                                                                    event["data"]["used_on"])
        self.db.commit()

    @subscribe("catalog", "library_added")
    def on_library_added(self, body):
        event = read_event(body, EVENT_VERSION, LibraryAddedEventSchema())
        if event is None:
            return
        self.db.merge(KnownLibrary(tenant=event["tenant"], code=event["data"]["library"], kind=event["data"]["kind"]))
        self.db.commit()

    # --- the access record --------------------------------------------------------------------------

    @rpc
    def search_access_record(self, query):
        """Admins: entries by patron, by staff member and by period, newest first."""
        self.caller.require(WHOLE_TENANT)
        return self._entries_page(load(AccessQuerySchema(), query), AccessEntrySchema)

    @rpc
    def own_access_record(self, query):
        """A patron's view of who read or changed their record, and when."""
        self.caller.require((PATRON,))
        params = load(AccessQuerySchema(only=("page", "per_page")), query)
        return self._entries_page(dict(params, patron_id=self.caller.patron_id), OwnAccessEntrySchema)

    @rpc
    def verify_access_record(self):
        """Operators: walk the tenant's hash chain; says whether it is intact, and where it breaks."""
        self.caller.require(WHOLE_TENANT)
        return self.access_record.verify(self.db, self.caller.tenant)

    def _entries_page(self, query, schema):
        entries, total = self._registry().access_entries_page(query)
        return {"items": schema(many=True).dump(entries), "total": total, "page": query["page"],
                "per_page": query["per_page"]}

    # --- log-in ------------------------------------------------------------------------------------

    @rpc
    def authenticate_staff(self, payload):
        """User name and password, in the tenant the log-in names (else the one the gateway serves)."""
        credentials = load(CredentialsSchema(), payload)
        tenant = credentials.get("tenant") or self.caller.tenant
        # The tenant is part of the key: wrong passwords for one town's ``admin`` do not block another's.
        account_key = f"user:{self.vault.lookup_hash(tenant, 'user', credentials['username'])[:40]}"
        self._admit_attempt(account_key)
        account = PatronsRepository(self.db, tenant).staff_account_named(credentials["username"])
        if not self._verify(account.password_hash if account else None, credentials["password"]):
            raise errors.InvalidCredentials()
        self._attempt_succeeded(account_key)
        if password_hasher.check_needs_rehash(account.password_hash):
            account.password_hash = slow_hash(credentials["password"])
            self.db.commit()
        return StaffAccountSchema().dump(account)

    @rpc
    def authenticate_patron(self, payload):
        """Card number and PIN: the patron's own log-in. Unknown card, no PIN set and wrong PIN look alike."""
        credentials = load(PatronCredentialsSchema(), payload)
        # Keyed, like the card look-up: a plain hash of a 12-digit number could be reversed by trying them all.
        card_hash = self._card_hash(credentials["card_number"])
        card_key = self._card_key(card_hash)
        self._admit_attempt(card_key)
        patron = self._registry().patron_by_card(card_hash)
        if not self._verify(patron.pin_hash if patron else None, credentials["pin"]):
            raise errors.InvalidCredentials("unknown card number or wrong PIN")
        self._attempt_succeeded(card_key)
        return self._patron_account(patron)

    @staticmethod
    def _card_key(card_hash):
        """The key under which a card's PIN tries are counted, at log-in and at a PIN change alike."""
        return f"card:{card_hash[:40]}"

    @staticmethod
    def _patron_account(patron):
        """Whom a patron's token is issued to."""
        return {"id": patron.id, "tenant": patron.tenant, "role": PATRON}

    # --- revoked credentials -----------------------------------------------------------------------

    @rpc
    def recent_revocations(self, since):
        """For the gateways, when they start and every minute (in case they missed a ``credentials_revoked``
        broadcast): every tenant's revocations since ``since`` (ISO 8601)."""
        self.caller.require((SYSTEM, OPERATOR))
        params = load(RevocationQuerySchema(), {"since": since})
        return RevokedCredentialSchema(many=True).dump(logins.revocations_since(self.db, params["since"]))

    @timer(interval=600)
    def forget_old_revocations(self):
        """Once no token issued before a revocation can still be valid, the revocation goes."""
        lifetime = timedelta(seconds=int(self.config["TOKEN_LIFETIME_SECONDS"]))
        logins.forget_revocations_before(self.db, token_time() - lifetime - REVOCATION_MARGIN)

    def _revoke(self, tenant, subject):
        """End the tokens ``subject`` holds, in this transaction; answers the revocation, to announce in it."""
        revocation = {"subject": subject, "not_before": token_time()}
        logins.revoke(self.db, tenant, subject, revocation["not_before"])
        return revocation

    def _announce(self, tenant, revocations):
        for revocation in revocations:
            self.publish("credentials_revoked", tenant, revocation)

    # --- staff accounts ----------------------------------------------------------------------------

    @rpc
    def ensure_staff_account(self, payload):
        """Operators' first-run call: create the account unless the user name exists. Answers whether it
        was created (a password is never returned)."""
        self.caller.require(WHOLE_TENANT)
        data = load(StaffAccountSchema(), payload)
        if self._registry().staff_account_named(data["username"]):
            return {"created": False, "username": data["username"]}
        account = self._new_staff_account(data)
        return {"created": True, "username": account.username}

    @rpc
    @idempotent(CommandRecord)
    def create_staff_account(self, payload):
        self.caller.require(WHOLE_TENANT)
        data = load(StaffAccountSchema(), payload)
        self._check_staff_libraries(data["role"], data["libraries"])
        return StaffAccountSchema().dump(self._new_staff_account(data))

    @rpc
    def list_staff_accounts(self):
        self.caller.require(WHOLE_TENANT)
        return StaffAccountSchema(many=True).dump(self._registry().staff_accounts())

    @rpc
    @idempotent(CommandRecord)
    def update_staff_account(self, account_id, payload):
        self.caller.require(WHOLE_TENANT)
        changes = load(StaffAccountChangeSchema(), payload)
        account = self._staff_account(account_id)
        role = changes.get("role", account.role)
        libraries = changes.get("libraries", account.libraries)
        self._check_staff_libraries(role, libraries)
        self._check_admin_remains(account, role)
        # Whoever holds a token issued for the old role, libraries or password must log in again.
        changed = (role, set(libraries)) != (account.role, set(account.libraries)) or "password" in changes
        account.role, account.libraries = role, libraries
        if "password" in changes:
            account.password_hash = slow_hash(changes["password"])
        revoked = [self._revoke(account.tenant, f"staff:{account.id}")] if changed else []
        self._announce(account.tenant, revoked)
        self.db.commit()
        return StaffAccountSchema().dump(account)

    @rpc
    @idempotent(CommandRecord)
    def delete_staff_account(self, account_id):
        self.caller.require(WHOLE_TENANT)
        account = self._staff_account(account_id)
        self._check_admin_remains(account)
        revoked = [self._revoke(account.tenant, f"staff:{account.id}")]
        self.db.delete(account)
        self._announce(account.tenant, revoked)
        self.db.commit()

    # --- helpers -----------------------------------------------------------------------------------

    def _registry(self):
        """The queries, within the caller's tenant."""
        return PatronsRepository(self.db, self.caller.tenant)

    def _scope(self):
        return Scope(self.caller.role, tuple(self.caller.libraries), self.caller.patron_id)

    def _visible(self, patron):
        """Whether the caller may see this patron of their tenant (None: none)."""
        return patron is not None and self._scope().covers(patron.id, patron.home_library,
                                                           self._registry().school_libraries())

    def _patron(self, patron_id):
        patron = self._registry().patron(patron_id)
        if not self._visible(patron):  # another tenant's, another school's, or none: all look the same
            if patron is not None:
                # a look at a patron outside the caller's scope is itself recorded, in the patron's tenant
                self._record("denied", [patron.id], PERSONAL_FIELDS)
                self.db.commit()
            raise errors.PatronNotFound(details={"patron_id": patron_id})
        return patron

    def _patron_by_card(self, card_number):
        patron = self._registry().patron_by_card(self._card_hash(card_number))
        return patron if self._visible(patron) else None

    def _card_hash(self, card_number):
        return self.vault.lookup_hash(self.caller.tenant, "card", card_number)

    def _seal(self, patron, values):
        """Seal the personal fields among ``values`` into the patron's row, with its lookup hashes."""
        for field in SEALED_FIELDS:
            if field in values:
                setattr(patron, f"{field}_sealed", self.vault.seal(patron.key_ref, field, values[field]))
        if "card_number" in values:
            patron.card_hash = self.vault.lookup_hash(patron.tenant, "card", values["card_number"])
        if "phone" in values:
            patron.phone_hash = self.vault.lookup_hash(patron.tenant, "phone", phone_digits(values["phone"]))
        if "name_kana" in values or "birth_date" in values:  # the other of the two as it is now sealed
            opened = {field: self.vault.open(patron.key_ref, field, getattr(patron, f"{field}_sealed"))
                      for field in ("name_kana", "birth_date")}
            patron.reading_hash = self._reading_hash(patron.tenant, opened["name_kana"],
                                                     date.fromisoformat(opened["birth_date"]))

    def _reading_hash(self, tenant, name_kana, birth_date):
        return self.vault.lookup_hash(tenant, "reading", f"{reading_key(name_kana)}\x1f{birth_date.isoformat()}")

    def _dump(self, patron):
        """The patron as the API shows them, personal fields opened with their data key."""
        view = {field: self.vault.open(patron.key_ref, field, getattr(patron, f"{field}_sealed"))
                for field in SEALED_FIELDS}
        view["birth_date"] = date.fromisoformat(view["birth_date"])
        for field in ("id", "home_library", "category", "registered_on", "expires_on", "last_used_on",
                      "total_uses", "status"):
            view[field] = getattr(patron, field)
        return PatronSchema().dump(view)

    def _check_home_library(self, code):
        """The library must exist, and the caller may keep patrons there."""
        if not self._registry().knows_library(code):
            raise InvalidInput(details={"home_library": ["no library has this code"]})
        if not self._scope().covers(None, code, self._registry().school_libraries()):
            raise Forbidden("your role may not keep patrons of this library", {"home_library": code})

    def _record(self, action, patron_ids, fields):
        self.access_record.record(self.db, self.caller, self.clock.now(), action, patron_ids, fields)

    def _verify(self, stored_hash, secret):
        try:
            return tpool.execute(password_hasher.verify, stored_hash or _DUMMY_HASH, secret) and stored_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    def _throttle(self, key):
        return login_throttle(int(self.config["LOGIN_MAX_FAILURES"]),
                              timedelta(seconds=int(self.config["LOGIN_BLOCK_SECONDS"])),
                              shared_address=key.startswith("address:"))

    def _address_key(self):
        return f"address:{self.caller.address}"

    def _admit_attempt(self, account_key):
        """Count this log-in against the account (or card) and the address before its secret is checked;
        TooManyAttempts while either is blocked."""
        keys = (account_key, self._address_key())
        logins.admit_attempt(self.db, {key: self._throttle(key) for key in keys}, self.clock.now)

    def _attempt_succeeded(self, account_key):
        address_key = self._address_key()
        logins.attempt_succeeded(self.db, account_key, {address_key: self._throttle(address_key)}, self.clock.now)

    def _pin_hash(self, pin, field="pin"):
        """What is stored of a PIN being chosen (None: no PIN); one too easy to guess is refused, naming the
        input ``field`` it came in."""
        if pin is None:
            return None
        refusal = pin_refusal(pin, field)
        if refusal:
            raise refusal
        return slow_hash(pin)

    def _new_staff_account(self, data):
        account = StaffAccount(
            tenant=self.caller.tenant, username=data["username"], role=data["role"], libraries=data["libraries"],
            password_hash=slow_hash(data["password"]), created_at=self.clock.now(),
        )
        self.db.add(account)
        commit_unique(self.db, errors.UsernameTaken(details={"username": data["username"]}))
        return account

    def _staff_account(self, account_id):
        account = self._registry().staff_account(account_id)
        if account is None:
            raise errors.StaffAccountNotFound(details={"account_id": account_id})
        return account

    def _check_staff_libraries(self, role, libraries):
        refusal = WorksAtListedLibraries(role, libraries, self._registry().known_libraries()).refusal()
        if refusal:
            raise refusal

    def _check_admin_remains(self, account, role_after=None):
        """LAST_ADMIN when this would delete the tenant's last admin account (``role_after`` None) or give it
        another role."""
        refusal = AdminRemains(account.role, self._registry().admin_count(), role_after).refusal()
        if refusal:
            raise refusal
