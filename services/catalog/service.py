"""The catalogue: libraries, works and copies, and which copies are on the shelf. Holds no personal data,
so the public catalogue (OPAC) can be served from it alone."""
from marshmallow import ValidationError
from nameko.dependency_providers import Config
from sqlalchemy import select

from services.catalog import errors
from services.catalog.models import Base, CommandRecord, Item, Library, OutboxEvent, ProcessedEvent, Tenant
from services.catalog.repository import CatalogRepository
from services.catalog.rules import availability, ndc_class
from services.catalog.schemas import (
    PUBLISHED_EVENTS, CopyStatusEventSchema, ItemSchema, LibrarySchema, LoanStatusEventSchema, SearchQuerySchema,
    TenantSchema, WorkSchema,
)
from services.catalog.search import Cataloguer, KnownNames, search
from shiori.db import ContainerCache, Database, commit_unique, insert_rows
from shiori.errors import Forbidden, load
from shiori.roles import ANY_STAFF, CATALOGUERS, OPERATOR, STAFF_OR_PATRON, WHOLE_TENANT, require_at
from shiori.events import EventDelivery, EventPublisher, first_delivery, read_event, subscribe
from shiori.idempotency import idempotent
from shiori.rpc import Caller, rpc

LOAN_EVENT_VERSION = 1
# Schemas are built once: building one (with its nested schemas) costs more than dumping a record with it.
TENANT_SCHEMA, LIBRARY_SCHEMA, WORK_SCHEMA = TenantSchema(), LibrarySchema(), WorkSchema()
ITEM_SCHEMA, SEARCH_QUERY_SCHEMA, LOAN_STATUS_EVENT_SCHEMA = ItemSchema(), SearchQuerySchema(), LoanStatusEventSchema()
COPY_STATUS_EVENT_SCHEMA = CopyStatusEventSchema()


class CatalogService:
    name = "catalog"

    db = Database(Base.metadata)
    known_names = ContainerCache(KnownNames)
    caller = Caller()
    config = Config()
    publish = EventPublisher(PUBLISHED_EVENTS, OutboxEvent)
    delivery = EventDelivery()

    @rpc(public=True)
    def health(self):
        self.db.execute(select(1))
        return {"status": "ok", **self.delivery()}

    # --- tenants and libraries -------------------------------------------------------------------

    @rpc
    def ensure_tenant(self, payload):
        """Operators' call: create the tenant, or rename it if it exists."""
        self.caller.require((OPERATOR,))
        data = load(TENANT_SCHEMA, payload)
        tenant = CatalogRepository(self.db, data["code"]).tenant_row() or Tenant(code=data["code"])
        tenant.name = data["name"]
        self.db.add(tenant)
        self.db.commit()
        return TENANT_SCHEMA.dump(tenant)

    @rpc(public=True)
    def list_libraries(self):
        return LIBRARY_SCHEMA.dump(self._catalogue().libraries(), many=True)

    @rpc
    def get_library(self, code):
        return LIBRARY_SCHEMA.dump(self._catalogue().library(code))

    @rpc
    @idempotent(CommandRecord)
    def add_library(self, payload):
        self.caller.require(WHOLE_TENANT)
        data = load(LIBRARY_SCHEMA, payload)
        tenant = self.caller.tenant
        if self._catalogue().tenant_row() is None:
            raise errors.TenantNotFound(details={"tenant": tenant})
        library = Library(tenant=tenant, **data)
        self.db.add(library)
        self.publish("library_added", tenant, {"library": library.code, "name": library.name, "kind": library.kind})
        commit_unique(self.db, errors.LibraryExists(details={"code": data["code"]}))
        return LIBRARY_SCHEMA.dump(library)

    # --- works ---------------------------------------------------------------------------------------

    @rpc
    @idempotent(CommandRecord)
    def add_work(self, payload):
        self.caller.require(ANY_STAFF)
        work_ids, _added = self._save_works([load(WORK_SCHEMA, payload)])
        return self._dump_work(self._catalogue().work(work_ids[0]))

    @rpc
    @idempotent(CommandRecord, per_call=True)
    def import_works(self, payloads):
        """Add or update many records in one transaction; a record whose ``source_id`` was seen before
        updates that work. Answers counts and, for each rejected record, its position and the reasons."""
        self.caller.require(CATALOGUERS)
        schema = WORK_SCHEMA
        records, rejects = [], []
        for position, payload in enumerate(payloads):
            try:
                records.append(schema.load(payload))
            except ValidationError as error:
                rejects.append({"record": position, "reason": error.normalized_messages()})
        work_ids, added = self._save_works(records)
        return {"added": added, "updated": len(records) - added, "rejected": len(rejects), "errors": rejects,
                "work_ids": work_ids}

    def _save_works(self, records):
        """Save validated records, announce them and commit. Answers the ids of the works saved (a
        ``source_id`` that repeats in the batch is saved once, the last record winning) and how many are new."""
        tenant = self.caller.tenant
        unique = list({record.get("source_id") or f"#{position}": record
                       for position, record in enumerate(records)}.values())
        source_ids = [record["source_id"] for record in unique if record.get("source_id")]
        known = self._catalogue().works_by_source(source_ids)
        existing = {position: known[record["source_id"]] for position, record in enumerate(unique)
                    if record.get("source_id") in known}
        if existing and self.caller.role not in CATALOGUERS:
            raise Forbidden("your role adds new records but does not change the tenant's records",
                            {"work_ids": sorted(existing.values())})
        cataloguer = Cataloguer(self.db, tenant, self.known_names)
        work_ids = cataloguer.save(unique, existing)
        added = [work_id for position, work_id in enumerate(work_ids) if position not in existing]
        self.publish("works_saved", tenant, {"added": added, "updated": list(existing.values())})
        self.db.commit()
        cataloguer.committed()
        return work_ids, len(added)

    @rpc(public=True)
    def get_work(self, work_id):
        return self._dump_work(self._catalogue().work(work_id))

    @rpc(public=True)
    def copies_of_work(self, work_id):
        """Every copy of a work, for the public catalogue: where it is shelved and whether it is in, by library
        (a lent copy shows its due date, and never who has it: the catalogue does not know)."""
        work = self._catalogue().work(work_id)
        copies = sorted(work.items, key=lambda item: (item.library.code, item.call_number or "", item.id))
        return [_public_copy(item) for item in copies]

    @rpc
    def copies_on_shelf(self, work_ids, library_code):
        """Copies of these works on a library's open shelves now (for the desk's pull list of holds)."""
        catalogue = self._catalogue()
        items = catalogue.copies_on_shelf(work_ids, catalogue.library(library_code))
        return [{"item_barcode": item.barcode, "work_id": item.work_id, "title": item.work.title,
                 "call_number": item.call_number, "shelf_location": item.shelf_location} for item in items]

    @rpc
    def describe_works(self, work_ids):
        """Title and authors of each work asked for, by id (for lists such as a patron's loans)."""
        works = self._catalogue().works(work_ids)
        return {str(work.id): {"title": work.title, "authors": [a.name for a in work.authors]} for work in works}

    @rpc(public=True)
    def search(self, query):
        params = load(SEARCH_QUERY_SCHEMA, query)
        found = search(self.db, self.caller.tenant, params)
        answer = {"items": [self._dump_work(work) for work in found.works], "total": found.total,
                  "more": found.more, "page": params["page"], "per_page": params["per_page"], "sort": params["sort"]}
        return {**answer, "facets": found.facets} if params["facets"] else answer

    # --- items -----------------------------------------------------------------------------------------

    @rpc
    @idempotent(CommandRecord)
    def add_item(self, payload):
        self.caller.require(ANY_STAFF)
        data = load(ITEM_SCHEMA, payload)
        require_at(self.caller, data["library"])
        item = self._new_item(data)
        self._announce_items([(item.barcode, item.item_type, item.work.id, item.library.code)])
        commit_unique(self.db, errors.BarcodeInUse(details={"barcode": item.barcode}))
        return _dump_item(item)

    @rpc
    def add_items(self, payloads):
        """Add many copies in one transaction (bulk loads); answers counts and each rejected copy's reasons."""
        self.caller.require(WHOLE_TENANT)
        tenant = self.caller.tenant
        records, rejects = [], []
        for position, payload in enumerate(payloads):
            try:
                records.append((position, ITEM_SCHEMA.load(payload)))
            except ValidationError as error:
                rejects.append({"record": position, "reason": error.normalized_messages()})
        catalogue = self._catalogue()
        libraries = catalogue.library_ids()
        works = catalogue.existing_work_ids(data["work_id"] for _position, data in records)
        taken = catalogue.barcodes_taken(data["barcode"] for _position, data in records)
        rows = []
        for position, data in records:
            problem = ("another item has this barcode" if data["barcode"] in taken
                       else "no such work" if data["work_id"] not in works
                       else "no such library" if data["library"] not in libraries else None)
            if problem:
                rejects.append({"record": position, "reason": {"item": [problem]}})
                continue
            taken.add(data["barcode"])
            rows.append({"tenant": tenant, "barcode": data["barcode"], "work_id": data["work_id"],
                         "library_id": libraries[data["library"]], "call_number": data.get("call_number"),
                         "item_type": data["item_type"], "shelf_location": data.get("shelf_location"),
                         "on_loan": False, "shelf_status": "available"})
        if rows:
            insert_rows(self.db, Item.__table__, rows)
        codes = {library_id: code for code, library_id in libraries.items()}
        self._announce_items([(row["barcode"], row["item_type"], row["work_id"], codes[row["library_id"]])
                              for row in rows])
        self.db.commit()
        return {"added": len(rows), "rejected": len(rejects), "errors": sorted(rejects, key=lambda r: r["record"])}

    def _new_item(self, data):
        catalogue = self._catalogue()
        item = Item(
            tenant=self.caller.tenant, barcode=data["barcode"], work=catalogue.work(data["work_id"]),
            library=catalogue.library(data["library"]), call_number=data.get("call_number"), item_type=data["item_type"],
            shelf_location=data.get("shelf_location"), on_loan=False,
        )
        self.db.add(item)
        return item

    def _announce_items(self, items):
        """``items_added`` for (barcode, item type, work id, library code) of copies about to commit."""
        if items:
            self.publish("items_added", self.caller.tenant, {"items": [
                {"item_barcode": barcode, "item_type": item_type, "work_id": work_id, "library": library}
                for barcode, item_type, work_id, library in items]})

    @rpc
    def get_item(self, barcode):
        self.caller.require(STAFF_OR_PATRON)  # a patron's cancelled hold passes its copy on
        return _dump_item(self._catalogue().item(barcode))

    @rpc
    def item_for_circulation(self, barcode, library_code):
        """The copy and the desk's library, checked together in one call for a check-out or check-in."""
        catalogue = self._catalogue()
        library = catalogue.library(library_code)
        return dict(_dump_item(catalogue.item(barcode)), desk_library=library.code)

    # --- availability, projected from loan events ---------------------------------------------------

    @subscribe("loans", "loan_created")
    def on_loan_created(self, body):
        """The copy is out; and its work was lent once more (popularity: a count per work, never who)."""
        self._apply_loan_event(body, on_loan=True, counts_a_loan=True)

    @subscribe("loans", "loan_returned")
    def on_loan_returned(self, body):
        self._apply_loan_event(body, on_loan=False)

    @subscribe("loans", "loan_due_date_changed")
    def on_loan_due_date_changed(self, body):
        self._apply_loan_event(body, on_loan=True)

    @subscribe("loans", "copy_status_changed")
    def on_copy_status_changed(self, body):
        """Back on the shelf, kept on the hold shelf, or travelling (the loans service decides which)."""
        event = read_event(body, LOAN_EVENT_VERSION, COPY_STATUS_EVENT_SCHEMA)
        if event is None or not first_delivery(self.db, ProcessedEvent, event):
            return
        item = self._newer_than_last_event(event, "shelf_status_as_of")
        if item is not None:
            item.shelf_status = event["data"]["status"]
            item.shelf_status_as_of = event["occurred_at"]
        self.db.commit()

    def _newer_than_last_event(self, event, as_of):
        """The event's copy, unless a newer event of the same kind (its time is the copy's ``as_of``) has been
        applied already."""
        item = CatalogRepository(self.db, event["tenant"]).item_or_none(event["data"]["item_barcode"])
        last = getattr(item, as_of, None)
        if item is not None and (last is None or last <= event["occurred_at"]):
            return item
        return None

    def _apply_loan_event(self, body, on_loan, counts_a_loan=False):
        """A copy is out until its due date (lent, renewed, moved by a closure) or back on the shelf."""
        event = read_event(body, LOAN_EVENT_VERSION, LOAN_STATUS_EVENT_SCHEMA)
        if event is None or not first_delivery(self.db, ProcessedEvent, event):
            return
        if counts_a_loan:
            CatalogRepository(self.db, event["tenant"]).count_loan(event["data"]["item_barcode"], event["occurred_at"])
        item = self._newer_than_last_event(event, "loan_status_as_of")
        if item is not None:
            item.on_loan = on_loan
            item.due_date = event["data"]["due_date"] if on_loan else None
            item.loan_status_as_of = event["occurred_at"]
        self.db.commit()

    def _catalogue(self):
        """The queries, within the caller's tenant."""
        return CatalogRepository(self.db, self.caller.tenant)

    def _dump_work(self, work):
        dumped = WORK_SCHEMA.dump(work)
        dumped["availability"] = availability(work.items)
        return dumped


def _dump_item(item):
    dumped = ITEM_SCHEMA.dump(item)
    dumped.update(
        library=item.library.code, title=item.work.title, work_id=item.work_id, ndc_class=ndc_class(item.work.ndc),
        status="on_loan" if item.on_loan else item.shelf_status,
        due_date=item.due_date.isoformat() if item.due_date else None,
    )
    return dumped


def _public_copy(item):
    dumped = _dump_item(item)
    return {"library": dumped["library"], "library_name": item.library.name, "call_number": item.call_number,
            "shelf_location": item.shelf_location, "item_type": item.item_type, "status": dumped["status"],
            "due_date": dumped["due_date"]}
