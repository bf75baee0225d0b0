"""The catalogue's queries, within one tenant: the service asks here and decides; search lives in
``search.py``, saving records in ``search.Cataloguer``."""
from sqlalchemy import select, update

from services.catalog import errors
from services.catalog.models import CopyLent, Item, Library, LoanCount, Tenant, Work
from shiori.db import insert_or_merge


class CatalogRepository:
    def __init__(self, session, tenant):
        self.session, self.tenant = session, tenant

    def tenant_row(self):
        return self.session.get(Tenant, self.tenant)

    def libraries(self):
        return self.session.scalars(select(Library).where(Library.tenant == self.tenant).order_by(Library.id))

    def library_ids(self):
        """Every library's id, by its code."""
        return dict(self.session.execute(select(Library.code, Library.id).where(Library.tenant == self.tenant)).all())

    def library(self, code):
        library = self.session.scalar(select(Library).where(Library.tenant == self.tenant, Library.code == code))
        if library is None:
            raise errors.LibraryNotFound(details={"library": code})
        return library

    def work(self, work_id):
        work = self.session.get(Work, work_id)
        if work is None or work.tenant != self.tenant:
            raise errors.WorkNotFound(details={"work_id": work_id})
        return work

    def works(self, work_ids):
        return self.session.scalars(select(Work).where(Work.tenant == self.tenant, Work.id.in_(list(work_ids))))

    def existing_work_ids(self, work_ids):
        return set(self.session.scalars(select(Work.id).where(Work.tenant == self.tenant,
                                                              Work.id.in_(set(work_ids)))))

    def works_by_source(self, source_ids):
        """The ids of the works imported before from these ``source_id``s, by source id."""
        if not source_ids:
            return {}
        return dict(self.session.execute(select(Work.source_id, Work.id).where(
            Work.tenant == self.tenant, Work.source_id.in_(source_ids))).all())

    def item(self, barcode):
        item = self.item_or_none(barcode)
        if item is None:
            raise errors.ItemNotFound(details={"barcode": barcode})
        return item

    def item_or_none(self, barcode):
        return self.session.scalar(select(Item).where(Item.tenant == self.tenant, Item.barcode == barcode))

    def barcodes_taken(self, barcodes):
        return set(self.session.scalars(select(Item.barcode).where(Item.tenant == self.tenant,
                                                                   Item.barcode.in_(list(barcodes)))))

    def copies_on_shelf(self, work_ids, library):
        """Copies of these works on ``library``'s open shelves: neither lent, nor kept, nor travelling."""
        return self.session.scalars(select(Item).where(
            Item.tenant == self.tenant, Item.library_id == library.id, Item.work_id.in_(list(work_ids)),
            Item.on_loan.is_(False), Item.shelf_status == "available").order_by(Item.work_id, Item.id)).all()

    def count_loan(self, barcode, lent_at):
        """Count the loan of the copy ``barcode`` lent at ``lent_at`` once towards its work's popularity.
        A copy is lent once at a time, so a loan of it told again (a redelivery, the same fact published
        anew) is not newer than the newest loan of it counted, and is not counted. Answers whether it counted.

        Compared with the newest loan counted, not with whether the copy is out now: a loan and the return
        before it travel on queues of their own, so the next loan may come before that return, and each is
        a loan all the same. The price: an older loan of the copy arriving after a newer one (its delivery
        failed and came again later) is not counted. Both statements decide in the database, row by row, so
        two deliveries at once cannot both count."""
        item = self.item_or_none(barcode)
        if item is None:
            return False
        first = self.session.execute(
            insert_or_merge(self.session, CopyLent.__table__).values(item_id=item.id, lent_at=lent_at)
            .on_conflict_do_nothing(index_elements=["item_id"]).returning(CopyLent.item_id)).first()
        newer = first is not None or self.session.execute(
            update(CopyLent).where(CopyLent.item_id == item.id, CopyLent.lent_at < lent_at)
            .values(lent_at=lent_at)).rowcount == 1
        if newer:
            self.session.execute(
                insert_or_merge(self.session, LoanCount.__table__).values(work_id=item.work_id, loans=1)
                .on_conflict_do_update(index_elements=["work_id"], set_={"loans": LoanCount.loans + 1}))
        return newer
