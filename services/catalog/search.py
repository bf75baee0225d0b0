"""The catalogue's search index and search query, on the catalogue's own tables (SQLite and PostgreSQL alike).

Writing: ``Cataloguer`` saves work records with their people and publisher, and keeps the bigram index of
titles (``title_grams``) and of people (``person_grams``) in step, in bulk, in the caller's transaction.
Reading: ``search`` finds candidates through the grams, checks each against the folded text (grams only say
that the pieces are there, not that they are adjacent), ranks and pages them.
"""
from sqlalchemy import case, delete, func, insert, or_, select, update

from services.catalog.models import Contributor, Item, Library, Person, PersonGram, Publisher, TitleGram, Work
from services.catalog.rules import escape_like, normalize_isbn
from services.catalog.text import fold, grams, query_grams, reading, words

FIELD_SEPARATOR = "\x1f"  # never part of folded text, so no match spans two fields
# Ids one word may bring from one index: three sources stay under SQLite's 32,766 bound parameters.
CANDIDATE_CAP = 10_000
RESULT_CAP = 5_000  # matches counted and ranked
PROBE_LIMIT = 5_000  # postings counted to find a word's rarest bigram
WORK_FIELDS = ("title", "subtitle", "responsibility", "title_reading", "published_year", "ndc", "ddc", "subjects",
               "source_id")


class Cataloguer:
    """Saves works for one tenant in one session, creating people and publishers as it meets them. Works,
    credits and grams are written with bulk statements: an import of a million records is mostly this."""

    def __init__(self, session, tenant):
        self.session = session
        self.tenant = tenant
        self.people = {}
        self.publishers = {}

    def save(self, records, existing=None):
        """Add or update works from validated records; ``existing`` maps a record's position to the id of
        the work it updates. Answers the works' ids in record order."""
        existing = existing or {}
        self._meet_people({author["name"] for record in records for author in record.get("authors", [])})
        self._meet_publishers({record["publisher"] for record in records if record.get("publisher")})
        rows = [self._row(record) for record in records]
        new = [position for position in range(len(records)) if position not in existing]
        ids = dict(existing)
        if new:
            inserted = self.session.execute(
                insert(Work).returning(Work.id, sort_by_parameter_order=True), [rows[p] for p in new])
            ids.update(zip(new, inserted.scalars()))
        if existing:
            self.session.execute(update(Work), [dict(rows[p], id=work_id) for p, work_id in existing.items()])
            updated = list(existing.values())
            self.session.execute(delete(Contributor).where(Contributor.work_id.in_(updated)))
            self.session.execute(delete(TitleGram).where(TitleGram.work_id.in_(updated)))
        credits = [
            {"work_id": ids[position], "person_id": self.people[author["name"]].id, "position": rank, "role": author["role"]}
            for position, record in enumerate(records) for rank, author in enumerate(record.get("authors", []))
        ]
        if credits:
            self.session.execute(insert(Contributor.__table__), credits)
        # (PostgreSQL's COPY would be faster, but psycopg2 refuses it under eventlet's wait callback.)
        gram_rows = [{"gram": gram, "work_id": ids[position]} for position, row in enumerate(rows)
                     for gram in grams(row["title_folded"]) | grams(fold(row["subtitle"])) | grams(row["reading_folded"])]
        if gram_rows:
            self.session.execute(insert(TitleGram.__table__), gram_rows)
        return [ids[position] for position in range(len(records))]

    def _row(self, record):
        row = {field: record.get(field) for field in WORK_FIELDS}
        row.update(
            tenant=self.tenant,
            subjects=record.get("subjects") or [],
            isbn=normalize_isbn(record["isbn"]) if record.get("isbn") else None,
            publisher_id=self.publishers[record["publisher"]].id if record.get("publisher") else None,
            title_folded=fold(record["title"]),
            reading_folded=fold(record["title_reading"]) if record.get("title_reading") else reading(record["title"]),
        )
        row["title_key"] = FIELD_SEPARATOR.join((row["title_folded"], fold(row["subtitle"]), row["reading_folded"]))
        people = [self.people[author["name"]] for author in record.get("authors", [])]
        row["people_key"] = FIELD_SEPARATOR.join(part for person in people for part in (person.folded,
                                                                                         person.reading_folded))
        return row

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
            self.session.execute(insert(PersonGram.__table__), [
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
        if new:
            self.session.add_all(new)
            self.session.flush()
            self.publishers.update((publisher.name, publisher) for publisher in new)


def _candidates(session, gram_table, key_column, word):
    """Ids whose indexed text may hold ``word``, at most CANDIDATE_CAP of them (a common character such as
    の would otherwise bring half the catalogue). For two characters or more, the ids come from the word's
    rarest bigram alone: intersecting a common bigram's long list (もの) costs more than confirming the few
    candidates of a rare one against the text, which every candidate is anyway."""
    query = query_grams(word)
    if query[0] == "range":  # repeats are harmless in IN (...), and without DISTINCT the LIMIT stops early
        return _capped(select(key_column).where(gram_table.gram.between(query[1], query[2])))
    return _capped(select(key_column).where(gram_table.gram == _rarest(session, gram_table, query[1])))


def _rarest(session, gram_table, codes):
    """The code with the fewest postings, each counted only up to PROBE_LIMIT (through the index)."""
    def postings(code):
        return session.scalar(select(func.count()).select_from(
            select(gram_table.gram).where(gram_table.gram == code).limit(PROBE_LIMIT).subquery()))
    return min(codes, key=postings)


def _capped(statement):
    # As a subquery of its own: SQLite takes no LIMIT on a member of a UNION.
    return select(statement.limit(CANDIDATE_CAP).subquery())


def _contains(word):
    return f"%{escape_like(word)}%"


def _title_candidates(session, tenant, word):
    return _candidates(session, TitleGram, TitleGram.work_id, word)


def _people_candidates(session, tenant, word):
    people = _candidates(session, PersonGram, PersonGram.person_id, word)
    return _capped(select(Contributor.work_id).where(Contributor.person_id.in_(people)))


def _publisher_candidates(session, tenant, word):
    publishers = select(Publisher.id).where(Publisher.tenant == tenant,
                                            Publisher.folded.like(_contains(word), escape="\\"))
    return _capped(select(Work.id).where(Work.publisher_id.in_(publishers)))


def _title_check(tenant, word):
    return Work.title_key.like(_contains(word), escape="\\")


def _people_check(tenant, word):
    return Work.people_key.like(_contains(word), escape="\\")


def _publisher_check(tenant, word):
    return Work.publisher_id.in_(select(Publisher.id).where(
        Publisher.tenant == tenant, Publisher.folded.like(_contains(word), escape="\\")))


FIELDS = {
    "title": (_title_candidates, _title_check),
    "author": (_people_candidates, _people_check),
    "publisher": (_publisher_candidates, _publisher_check),
}


def matching(session, tenant, word, fields):
    """Where ``word`` may be among ``fields``: the candidate ids from the indexes, fetched first (a list of
    keys the database then looks works up by, a plan no planner can turn into a scan of every work), whether
    a source was capped, and the condition that confirms a candidate against the folded text."""
    ids, capped = set(), False
    for field in fields:
        found = session.scalars(FIELDS[field][0](session, tenant, word)).all()
        ids.update(found)
        capped = capped or len(found) >= CANDIDATE_CAP
    return ids, capped, or_(*(FIELDS[field][1](tenant, word) for field in fields))


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
    """(total, works of the asked page, more) for validated search parameters (schemas.SearchQuerySchema).
    ``more`` says the query is broader than the caps: the total counts, and the ranking orders, only the
    first matches found (Japanese OPACs likewise ask to narrow such a query rather than scan for seconds)."""
    conditions, ranks, ids, more = [Work.tenant == tenant], [], None, False
    asked = [(word, ("title", "author", "publisher"), True) for word in words(params.get("q", ""))]
    asked += [(word, (field,), field == "title") for field in FIELDS for word in words(params.get(field, ""))]
    for word, fields, ranked in asked:
        word_ids, capped, confirmed = matching(session, tenant, word, fields)
        ids = word_ids if ids is None else ids & word_ids  # every word must match
        more = more or capped
        conditions.append(confirmed)
        if ranked:
            ranks.append(rank(word))
    if ids is not None:
        conditions.append(Work.id.in_(sorted(ids)))
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

    if ids is not None and not ids:
        return 0, [], more
    total = session.scalar(select(func.count()).select_from(
        select(Work.id).where(*conditions).limit(RESULT_CAP + 1).subquery()))
    more = more or total > RESULT_CAP
    if total > RESULT_CAP:
        conditions = [Work.id.in_(select(Work.id).where(*conditions).limit(RESULT_CAP))]
        total = RESULT_CAP
    page, per_page = params["page"], params["per_page"]
    works = session.scalars(
        select(Work).where(*conditions)
        .order_by(*([sum(ranks[1:], ranks[0])] if ranks else []), func.length(Work.title), Work.id)
        .limit(per_page).offset((page - 1) * per_page)
    ).all()
    return total, works, more
