"""The patrons database's queries within one tenant: its patrons (found by id or through the keyed hashes of
their card, their phone, and their name's reading with their birth date), retired cards, staff accounts, the
libraries it has heard of, and the access record's entries as admins and patrons read them. The service asks
here and decides. Stores of their own keep their queries: log-in failures and revocations in ``logins.py``, the
access record's hash chain in ``access_record.py``, data keys in ``vault.py``."""
from sqlalchemy import case, func, or_, select, update

from services.patrons.access_record import AccessEntry
from services.patrons.models import KnownLibrary, Patron, RetiredCard, StaffAccount
from shiori.roles import ADMIN


class PatronsRepository:
    def __init__(self, session, tenant):
        self.session, self.tenant = session, tenant

    # --- library cards ---------------------------------------------------------------------------

    def patron(self, patron_id):
        """The tenant's patron, or None (also for no id: a caller that is not a patron asking for "me")."""
        return self._own(self.session.get(Patron, patron_id)) if patron_id is not None else None

    def unused_since(self, cutoff):
        """The ids of the patrons last seen (a check-out, else their registration) before ``cutoff``."""
        return list(self.session.scalars(select(Patron.id).where(
            Patron.tenant == self.tenant,
            func.coalesce(Patron.last_used_on, Patron.registered_on) < cutoff).order_by(Patron.id)))

    @staticmethod
    def tenants(session):
        """Every tenant that has patrons."""
        return session.scalars(select(Patron.tenant).distinct()).all()

    def patron_by_card(self, card_hash):
        return self.session.scalar(select(Patron).where(Patron.tenant == self.tenant, Patron.card_hash == card_hash))

    def patrons_by_hash(self, kind, lookup_hash):
        """The patrons whose keyed hash of this ``kind`` ("phone", "reading": name reading and birth date) is
        ``lookup_hash``: several may share a phone, or a reading and a birth date."""
        column = {"phone": Patron.phone_hash, "reading": Patron.reading_hash}[kind]
        return self.session.scalars(select(Patron).where(Patron.tenant == self.tenant, column == lookup_hash)).all()

    def patrons(self, patron_ids):
        return self.session.scalars(select(Patron).where(Patron.tenant == self.tenant,
                                                         Patron.id.in_(list(patron_ids)))).all()

    def card_retired(self, card_hash):
        """Whether a card with this keyed hash was reported lost."""
        return self.session.get(RetiredCard, (self.tenant, card_hash)) is not None

    def count_card_use(self, patron_id, used_on):
        # One UPDATE, so that two check-outs counted at the same moment both count.
        self.session.execute(
            update(Patron)
            .where(Patron.id == patron_id, Patron.tenant == self.tenant)
            .values(total_uses=Patron.total_uses + 1, last_used_on=case(
                (or_(Patron.last_used_on.is_(None), Patron.last_used_on < used_on), used_on),
                else_=Patron.last_used_on))
        )

    # --- staff accounts ----------------------------------------------------------------------------

    def staff_account(self, account_id):
        return self._own(self.session.get(StaffAccount, account_id))

    def staff_account_named(self, username):
        return self.session.scalar(select(StaffAccount).where(StaffAccount.tenant == self.tenant,
                                                              StaffAccount.username == username))

    def staff_accounts(self):
        return self.session.scalars(select(StaffAccount).where(StaffAccount.tenant == self.tenant)
                                    .order_by(StaffAccount.id)).all()

    def admin_count(self):
        """How many admin accounts the tenant has. On PostgreSQL their rows stay locked until the transaction
        ends, so that two admins taken away at once cannot each count the other and leave none."""
        return len(self.session.scalars(select(StaffAccount.id).where(
            StaffAccount.tenant == self.tenant, StaffAccount.role == ADMIN).order_by(StaffAccount.id)
            .with_for_update()).all())

    # --- the libraries this service has heard of (``library_added``) -------------------------------------

    def knows_library(self, code):
        return self.session.get(KnownLibrary, (self.tenant, code)) is not None

    def known_libraries(self):
        """Code to kind."""
        return dict(self.session.execute(select(KnownLibrary.code, KnownLibrary.kind).where(
            KnownLibrary.tenant == self.tenant)).all())

    def school_libraries(self):
        return set(self.session.scalars(select(KnownLibrary.code).where(
            KnownLibrary.tenant == self.tenant, KnownLibrary.kind == "school")))

    # --- the access record, as it is read ------------------------------------------------------------

    def access_entries_about(self, patron_id):
        """Every entry about the patron, oldest first."""
        return self.session.scalars(select(AccessEntry).where(
            AccessEntry.tenant == self.tenant, AccessEntry.patron_id == patron_id).order_by(AccessEntry.seq)).all()

    def access_entries_page(self, query):
        """One page of the entries ``query`` asks for, newest first, and how many there are in all. ``query``
        has ``page`` and ``per_page``, and may name a ``patron_id``, an ``actor`` and a period ``since`` …
        ``until``."""
        conditions = [AccessEntry.tenant == self.tenant]
        if "patron_id" in query:
            conditions.append(AccessEntry.patron_id == query["patron_id"])
        if "actor" in query:
            conditions.append(AccessEntry.actor == query["actor"])
        if "since" in query:
            conditions.append(AccessEntry.at >= query["since"])
        if "until" in query:
            conditions.append(AccessEntry.at < query["until"])
        page, per_page = query["page"], query["per_page"]
        total = self.session.scalar(select(func.count()).select_from(AccessEntry).where(*conditions))
        entries = self.session.scalars(select(AccessEntry).where(*conditions).order_by(AccessEntry.seq.desc())
                                       .limit(per_page).offset((page - 1) * per_page)).all()
        return entries, total

    def _own(self, row):
        """``row`` if it is this tenant's: another tenant's looks like none."""
        return row if row is not None and row.tenant == self.tenant else None
