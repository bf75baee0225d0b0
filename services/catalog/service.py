"""The catalogue: libraries, works and copies, and which copies are on the shelf. Holds no personal data,
so the public catalogue (OPAC) can be served from it alone."""
from sqlalchemy import func, or_, select

from services.catalog import errors
from services.catalog.models import Base, Contributor, Item, Library, ProcessedEvent, Tenant, Work
from services.catalog.rules import availability, like_pattern, normalize_isbn
from services.catalog.schemas import (
    PUBLISHED_EVENTS, ItemSchema, LibrarySchema, LoanStatusEventSchema, SearchHitSchema, SearchQuerySchema,
    TenantSchema, WorkSchema,
)
from shiori.db import Database, commit_unique
from shiori.errors import load
from shiori.events import EventPublisher, first_delivery, read_event, subscribe
from shiori.rpc import Caller, rpc

LOAN_EVENT_VERSION = 1


class CatalogService:
    name = "catalog"

    db = Database(Base.metadata)
    caller = Caller()
    publish = EventPublisher(PUBLISHED_EVENTS)

    @rpc
    def health(self):
        self.db.execute(select(1))
        return "ok"

    # --- tenants and libraries -------------------------------------------------------------------

    @rpc
    def ensure_tenant(self, payload):
        """Operators' call: create the tenant, or rename it if it exists."""
        data = load(TenantSchema(), payload)
        tenant = self.db.get(Tenant, data["code"]) or Tenant(code=data["code"])
        tenant.name = data["name"]
        self.db.add(tenant)
        self.db.commit()
        return TenantSchema().dump(tenant)

    @rpc
    def list_libraries(self):
        libraries = self.db.scalars(
            select(Library).where(Library.tenant == self.caller.tenant).order_by(Library.id)
        )
        return LibrarySchema(many=True).dump(libraries)

    @rpc
    def get_library(self, code):
        return LibrarySchema().dump(self._library(code))

    @rpc
    def add_library(self, payload):
        data = load(LibrarySchema(), payload)
        tenant = self.caller.tenant
        if self.db.get(Tenant, tenant) is None:
            raise errors.TenantNotFound(details={"tenant": tenant})
        library = Library(tenant=tenant, **data)
        self.db.add(library)
        commit_unique(self.db, errors.LibraryExists(details={"code": data["code"]}))
        self.publish("library_added", tenant, {"library": library.code, "name": library.name, "kind": library.kind})
        return LibrarySchema().dump(library)

    # --- works ---------------------------------------------------------------------------------------

    @rpc
    def add_work(self, payload):
        data = load(WorkSchema(), payload)
        work = Work(tenant=self.caller.tenant)
        _fill_work(work, data)
        self.db.add(work)
        self.db.commit()
        self.publish("work_added", work.tenant, {"work_id": work.id})
        return self._dump_work(work)

    @rpc
    def import_works(self, payloads):
        """Add or update many records; a record with a ``source_id`` seen before updates that work.
        Answers counts and, for each rejected record, its position and the reasons."""
        tenant = self.caller.tenant
        schema = WorkSchema()
        added, updated, rejects, new_works = 0, 0, [], []
        for position, payload in enumerate(payloads):
            problems = schema.validate(payload)
            if problems:
                rejects.append({"record": position, "reason": problems})
                continue
            data = schema.load(payload)
            work = None
            if data.get("source_id"):
                work = self.db.scalar(
                    select(Work).where(Work.tenant == tenant, Work.source_id == data["source_id"])
                )
            if work is None:
                work = Work(tenant=tenant)
                self.db.add(work)
                new_works.append(work)
                added += 1
            else:
                updated += 1
            _fill_work(work, data)
        self.db.commit()
        for work in new_works:
            self.publish("work_added", tenant, {"work_id": work.id})
        return {"added": added, "updated": updated, "rejected": len(rejects), "errors": rejects,
                "work_ids": [work.id for work in new_works]}

    @rpc
    def get_work(self, work_id):
        return self._dump_work(self._work(work_id))

    @rpc
    def describe_works(self, work_ids):
        """Title and authors of each work asked for, by id (for lists such as a patron's loans)."""
        works = self.db.scalars(
            select(Work).where(Work.tenant == self.caller.tenant, Work.id.in_(list(work_ids)))
        )
        return {str(work.id): {"title": work.title, "authors": [a.name for a in work.authors]} for work in works}

    @rpc
    def search(self, query):
        params = load(SearchQuerySchema(), query)
        tenant = self.caller.tenant
        pattern = like_pattern(params["q"].strip())
        statement = select(Work).where(
            Work.tenant == tenant,
            or_(Work.title.like(pattern, escape="\\"), Work.title_reading.like(pattern, escape="\\")),
        )
        if "library" in params or params["available"]:
            copies = select(Item.work_id).join(Library).where(Item.tenant == tenant)
            if "library" in params:
                copies = copies.where(Library.code == params["library"])
            if params["available"]:
                copies = copies.where(Item.on_loan.is_(False))
            statement = statement.where(Work.id.in_(copies))
        total = self.db.scalar(select(func.count()).select_from(statement.subquery()))
        page, per_page = params["page"], params["per_page"]
        works = self.db.scalars(
            statement.order_by(func.length(Work.title), Work.title, Work.id)
            .limit(per_page).offset((page - 1) * per_page)
        )
        hits = [dict(SearchHitSchema().dump(work), availability=availability(work.items)) for work in works]
        return {"items": hits, "total": total, "page": page, "per_page": per_page}

    # --- items -----------------------------------------------------------------------------------------

    @rpc
    def add_item(self, payload):
        item = self._new_item(load(ItemSchema(), payload))
        commit_unique(self.db, errors.BarcodeInUse(details={"barcode": item.barcode}))
        self._publish_item_added(item)
        return _dump_item(item)

    @rpc
    def add_items(self, payloads):
        """Add many copies in one transaction (bulk loads); answers counts and each rejected copy's reasons."""
        schema = ItemSchema()
        barcodes = [payload.get("barcode") for payload in payloads if isinstance(payload, dict)]
        taken = set(self.db.scalars(
            select(Item.barcode).where(Item.tenant == self.caller.tenant, Item.barcode.in_(barcodes))
        ))
        added, rejects = [], []
        for position, payload in enumerate(payloads):
            problems = schema.validate(payload)
            if not problems and payload["barcode"] in taken:
                problems = {"barcode": ["another item has this barcode"]}
            if not problems:
                try:
                    added.append(self._new_item(schema.load(payload)))
                    taken.add(payload["barcode"])
                except (errors.WorkNotFound, errors.LibraryNotFound) as error:
                    problems = {"item": [error.message]}
            if problems:
                rejects.append({"record": position, "reason": problems})
        self.db.commit()
        for item in added:
            self._publish_item_added(item)
        return {"added": len(added), "rejected": len(rejects), "errors": rejects}

    def _new_item(self, data):
        item = Item(
            tenant=self.caller.tenant, barcode=data["barcode"], work=self._work(data["work_id"]),
            library=self._library(data["library"]), call_number=data.get("call_number"),
            shelf_location=data.get("shelf_location"), on_loan=False,
        )
        self.db.add(item)
        return item

    def _publish_item_added(self, item):
        self.publish("item_added", item.tenant,
                     {"item_barcode": item.barcode, "work_id": item.work_id, "library": item.library.code})

    @rpc
    def get_item(self, barcode):
        return _dump_item(self._item(barcode))

    @rpc
    def item_for_circulation(self, barcode, library_code):
        """The copy and the desk's library, checked together in one call for a check-out or check-in."""
        library = self._library(library_code)
        item = self._item(barcode)
        return dict(_dump_item(item), desk_library=library.code)

    # --- availability, projected from loan events ---------------------------------------------------

    @subscribe("loans", "loan_created")
    def on_loan_created(self, body):
        self._apply_loan_event(body, on_loan=True)

    @subscribe("loans", "loan_returned")
    def on_loan_returned(self, body):
        self._apply_loan_event(body, on_loan=False)

    def _apply_loan_event(self, body, on_loan):
        event = read_event(body, LOAN_EVENT_VERSION, LoanStatusEventSchema())
        if event is None or not first_delivery(self.db, ProcessedEvent, event):
            return
        item = self.db.scalar(
            select(Item).where(Item.tenant == event["tenant"], Item.barcode == event["data"]["item_barcode"])
        )
        if item is not None and (item.loan_status_as_of is None or item.loan_status_as_of <= event["occurred_at"]):
            item.on_loan = on_loan
            item.due_date = event["data"]["due_date"] if on_loan else None
            item.loan_status_as_of = event["occurred_at"]
        self.db.commit()

    # --- lookups within the caller's tenant --------------------------------------------------------

    def _library(self, code):
        library = self.db.scalar(select(Library).where(Library.tenant == self.caller.tenant, Library.code == code))
        if library is None:
            raise errors.LibraryNotFound(details={"library": code})
        return library

    def _work(self, work_id):
        work = self.db.get(Work, work_id)
        if work is None or work.tenant != self.caller.tenant:
            raise errors.WorkNotFound(details={"work_id": work_id})
        return work

    def _item(self, barcode):
        item = self.db.scalar(select(Item).where(Item.tenant == self.caller.tenant, Item.barcode == barcode))
        if item is None:
            raise errors.ItemNotFound(details={"barcode": barcode})
        return item

    def _dump_work(self, work):
        dumped = WorkSchema().dump(work)
        dumped["availability"] = availability(work.items)
        return dumped


def _fill_work(work, data):
    for field in ("title", "title_reading", "publisher", "published_year", "ndc", "source_id"):
        setattr(work, field, data.get(field))
    work.isbn = normalize_isbn(data["isbn"]) if data.get("isbn") else None
    work.authors = [
        Contributor(position=position, name=author["name"], role=author["role"])
        for position, author in enumerate(data.get("authors", []))
    ]


def _dump_item(item):
    dumped = ItemSchema().dump(item)
    dumped.update(
        library=item.library.code, title=item.work.title, work_id=item.work_id,
        status="on_loan" if item.on_loan else "available",
        due_date=item.due_date.isoformat() if item.due_date else None,
    )
    return dumped
