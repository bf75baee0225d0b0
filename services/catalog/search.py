"""The catalogue's search index and search query, on the catalogue's own tables (SQLite and PostgreSQL alike).

Writing: ``Cataloguer`` saves work records with their people and publisher, and keeps the bigram index of
titles (``title_grams``) and of people (``person_grams``) in step, in bulk, in the caller's transaction.
Reading: ``search`` finds candidates through the grams, checks each against the folded text (grams only say
that the pieces are there, not that they are adjacent), ranks and pages them.
"""
from sqlalchemy import and_, case, delete, func, insert, or_, select

from services.catalog.models import Contributor, Item, Library, Person, PersonGram, Publisher, TitleGram, Work
from services.catalog.rules import escape_like, normalize_isbn
from services.catalog.text import fold, grams, query_grams, reading, words

FIELD_SEPARATOR = "\x1f"  # never part of folded text, so no match spans two fields
WORK_FIELDS = ("title", "subtitle", "responsibility", "title_reading", "published_year", "ndc", "ddc", "subjects",
               "source_id")


class Cataloguer:
    """Saves works for one tenant in one session, creating people and publishers as it meets them."""

    def __init__(self, session, tenant):
        self.session = session
        self.tenant = tenant
        self.people = {}
        self.publishers = {}

    def save(self, records, existing=None):
        """Add or update works from validated records; ``existing`` maps a record's position to the Work it
        updates. Answers the works in record order."""
        existing = existing or {}
        self._meet_people({author["name"] for record in records for author in record.get("authors", [])})
        self._meet_publishers({record["publisher"] for record in records if record.get("publisher")})
        works = []
        for position, record in enumerate(records):
            work = existing.get(position) or Work(tenant=self.tenant)
            self._fill(work, record)
            if work.id is None:
                self.session.add(work)
            works.append(work)
        self.session.flush()
        updated_ids = [work.id for work in existing.values()]
        if updated_ids:
            self.session.execute(delete(TitleGram).where(TitleGram.work_id.in_(updated_ids)))
        gram_rows = [{"gram": gram, "work_id": work.id} for work in works for gram in _title_grams(work)]
        if gram_rows:
            self.session.execute(insert(TitleGram), gram_rows)
        return works

    def _fill(self, work, record):
        for field in WORK_FIELDS:
            setattr(work, field, record.get(field))
        work.subjects = record.get("subjects") or []
        work.isbn = normalize_isbn(record["isbn"]) if record.get("isbn") else None
        work.publisher_entry = self.publishers.get(record.get("publisher"))
        work.authors = [
            Contributor(position=position, person=self.people[author["name"]], role=author["role"])
            for position, author in enumerate(record.get("authors", []))
        ]
        work.title_folded = fold(work.title)
        work.reading_folded = fold(work.title_reading) if work.title_reading else reading(work.title)
        work.title_key = FIELD_SEPARATOR.join((work.title_folded, fold(work.subtitle), work.reading_folded))
        work.people_key = FIELD_SEPARATOR.join(
            part for contributor in work.authors for part in (contributor.person.folded, contributor.person.reading_folded)
        )

    def _meet_people(self, names):
        missing = names - self.people.keys()
        if not missing:
            return
        for person in self.session.scalars(select(Person).where(Person.tenant == self.tenant, Person.name.in_(missing))):
            self.people[person.name] = person
        new = [Person(tenant=self.tenant, name=name, folded=fold(name), reading_folded=reading(name))
               for name in sorted(missing - self.people.keys())]
        if new:
            self.session.add_all(new)
            self.session.flush()
            self.session.execute(insert(PersonGram), [
                {"gram": gram, "person_id": person.id}
                for person in new for gram in grams(person.folded) | grams(person.reading_folded)
            ])
            self.people.update((person.name, person) for person in new)

    def _meet_publishers(self, names):
        missing = names - self.publishers.keys()
        if not missing:
            return
        for publisher in self.session.scalars(
            select(Publisher).where(Publisher.tenant == self.tenant, Publisher.name.in_(missing))
        ):
            self.publishers[publisher.name] = publisher
        new = [Publisher(tenant=self.tenant, name=name, folded=fold(name))
               for name in sorted(missing - self.publishers.keys())]
        self.session.add_all(new)
        self.publishers.update((publisher.name, publisher) for publisher in new)


def _title_grams(work):
    return grams(work.title_folded) | grams(fold(work.subtitle)) | grams(work.reading_folded)


def _candidates(gram_table, key_column, word):
    """Ids whose indexed text holds every bigram of ``word`` (or, for one character, that character)."""
    query = query_grams(word)
    if query[0] == "range":
        return select(key_column).where(gram_table.gram.between(query[1], query[2])).distinct()
    codes = query[1]
    return select(key_column).where(gram_table.gram.in_(codes)).group_by(key_column).having(
        func.count() == len(codes))


def _contains(word):
    return f"%{escape_like(word)}%"


def in_title(word):
    return and_(Work.id.in_(_candidates(TitleGram, TitleGram.work_id, word)),
                Work.title_key.like(_contains(word), escape="\\"))


def in_people(word):
    people = _candidates(PersonGram, PersonGram.person_id, word)
    return and_(Work.id.in_(select(Contributor.work_id).where(Contributor.person_id.in_(people))),
                Work.people_key.like(_contains(word), escape="\\"))


def in_publisher(tenant, word):
    return Work.publisher_id.in_(
        select(Publisher.id).where(Publisher.tenant == tenant, Publisher.folded.like(_contains(word), escape="\\")))


def rank(word):
    """0 exact title, 1 title prefix, 2 title substring, 3 a person's name, 4 anything else (publisher)."""
    prefix = f"{escape_like(word)}%"
    return case(
        (or_(Work.title_folded == word, Work.reading_folded == word), 0),
        (or_(Work.title_folded.like(prefix, escape="\\"), Work.reading_folded.like(prefix, escape="\\")), 1),
        (Work.title_key.like(_contains(word), escape="\\"), 2),
        (Work.people_key.like(_contains(word), escape="\\"), 3),
        else_=4,
    )


def search(session, tenant, params):
    """(total, works of the asked page) for validated search parameters (schemas.SearchQuerySchema)."""
    conditions = [Work.tenant == tenant]
    ranks = []
    for word in words(params.get("q", "")):
        conditions.append(or_(in_title(word), in_people(word), in_publisher(tenant, word)))
        ranks.append(rank(word))
    for word in words(params.get("title", "")):
        conditions.append(in_title(word))
        ranks.append(rank(word))
    for word in words(params.get("author", "")):
        conditions.append(in_people(word))
    for word in words(params.get("publisher", "")):
        conditions.append(in_publisher(tenant, word))
    if "isbn" in params:
        conditions.append(Work.isbn == (normalize_isbn(params["isbn"]) or ""))
    if "ndc" in params:
        conditions.append(Work.ndc.like(f"{escape_like(params['ndc'])}%", escape="\\"))
    if "library" in params or params.get("available"):
        copies = select(Item.work_id).join(Library).where(Item.tenant == tenant)
        if "library" in params:
            copies = copies.where(Library.code == params["library"])
        if params.get("available"):
            copies = copies.where(Item.on_loan.is_(False))
        conditions.append(Work.id.in_(copies))

    matching = select(Work.id).where(*conditions)
    total = session.scalar(select(func.count()).select_from(matching.subquery()))
    page, per_page = params["page"], params["per_page"]
    works = session.scalars(
        select(Work).where(*conditions)
        .order_by(*([sum(ranks[1:], ranks[0])] if ranks else []), func.length(Work.title), Work.id)
        .limit(per_page).offset((page - 1) * per_page)
    ).all()
    return total, works
