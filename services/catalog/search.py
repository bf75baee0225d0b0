"""The catalogue's search index and search query, on the catalogue's own tables (SQLite and PostgreSQL alike).

The index is a gram inverted index (services/catalog/text.py) over each work's title forms, its people's
names and readings, and its publisher, each field's grams told apart by a tag. On PostgreSQL the grams are an
array on the work under a GIN index, which intersects the grams of every word of a query itself; SQLite has
no such index, so there they are rows of ``work_grams`` and a word's rarest gram leads. Either way a
candidate is then checked against the folded text (grams only say that the pieces are there), so the index
decides speed, never the answer.

Writing: ``Cataloguer`` saves work records with their people and publisher and keeps the index in step, in
bulk, in the caller's transaction. Reading: ``search`` finds, ranks and pages the matches.
"""
from collections import Counter, OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from math import prod

from sqlalchemy import (
    BigInteger, String, and_, bindparam, case, cast, delete, distinct, exists, func, literal, null, or_, select,
    type_coerce, union, union_all, update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import joinedload

from shiori.db import insert_or_merge, insert_rows
from services.catalog.models import Contributor, Item, Library, LoanCount, Person, Publisher, Work, WorkGram
from services.catalog.rules import escape_like, normalize_isbn
from services.catalog.text import fold, grams, query_grams, reading, words

FIELD_SEPARATOR = "\x1f"  # never part of folded text, so no match spans two fields
FIELDS = ("title", "author", "publisher")
_TAG_SHIFT = 42  # gram codes fit below 2**42; the field's tag goes above
RESULT_CAP = 1_000  # matches ranked together; a broader query answers "more" and asks to be narrowed
EXACT_CAP = 100  # works whose whole title is a word, or by a person a word names, ranked first beyond RESULT_CAP
LEADING_CAP = 300  # works whose title starts with a word (15 pages), ranked next even beyond RESULT_CAP
COMBINED_SCANS = 27  # PostgreSQL: field choices spelled out for a query's words (3 fields, up to 3 words)
PROBE_LIMIT = 5_000  # postings counted to find a word's rarest gram (SQLite)
# Beyond this many postings of a word's rarest grams, collecting them costs more than checking works one by
# one as a scan meets them (SQLite; measured at 200,000 and 1,000,000 works).
COMMON_POSTINGS = 50_000
NDC_CLASSES = tuple("0123456789")  # the main classes (類); a record's NDC may start otherwise only if mistyped
WORK_FIELDS = ("title", "subtitle", "responsibility", "title_reading", "published_year", "ndc", "ddc", "subjects",
               "source_id")


def field_tag(field):
    return FIELDS.index(field) << _TAG_SHIFT


TITLE_TAG = field_tag("title")


def tagged(field, codes):
    tag = field_tag(field)
    return {tag | code for code in codes}


@lru_cache(maxsize=8192)  # ~2 KiB a name: the prolific authors and the publishers stay, ~16 MiB at most
def name_grams(field, *folded_forms):
    """The tagged grams of a person's or publisher's name: the same names come back work after work."""
    return frozenset().union(*(grams(form, field_tag(field)) for form in folded_forms))


class KnownNames:
    """People and publishers (their rows: id and folded forms) that earlier saves in this process met, by
    tenant and name, so that a batch asks the database only for the names it has not seen: a batch names
    about as many people as works, and the prolific ones come back batch after batch. Neither table ever
    changes a row or loses one, so a remembered row stays true. The least recently met go first."""

    def __init__(self, size=32_768):  # ~25 MiB of the process (measured at a full cache)
        self.size = size
        self.rows = OrderedDict()

    def find(self, kind, tenant, names, into):
        """Put the remembered rows of ``names`` into ``into`` (name -> row)."""
        for name in names:
            row = self.rows.get((kind, tenant, name))
            if row is not None:
                self.rows.move_to_end((kind, tenant, name))
                into[name] = row

    def remember(self, kind, tenant, rows):
        for name, row in rows.items():
            self.rows[(kind, tenant, name)] = row
            self.rows.move_to_end((kind, tenant, name))
        while len(self.rows) > self.size:
            self.rows.popitem(last=False)


class Cataloguer:
    """Saves works for one tenant in one session, creating people and publishers as it meets them. Works,
    credits and grams are written with bulk statements: an import of a million records is mostly this.
    With ``known_names`` (KnownNames), people and publishers met before are not looked up again, and those
    met now are remembered when the caller says that the session committed (``committed``): a batch rolled
    back leaves no id behind that the database does not hold."""

    def __init__(self, session, tenant, known_names=None):
        self.session = session
        self.tenant = tenant
        self.people = {}
        self.publishers = {}
        self.known_names = known_names

    def committed(self):
        """The session committed what ``save`` wrote: the people and publishers it met are remembered."""
        if self.known_names is not None:
            self.known_names.remember(Person, self.tenant, self.people)
            self.known_names.remember(Publisher, self.tenant, self.publishers)

    def save(self, records, existing=None):
        """Add or update works from validated records; ``existing`` maps a record's position to the id of
        the work it updates. Answers the works' ids in record order."""
        existing = existing or {}
        self._meet_people({author["name"] for record in records for author in record.get("authors", [])})
        self._meet_publishers({record["publisher"] for record in records if record.get("publisher")})
        credited = [[self.people[author["name"]] for author in record.get("authors", [])] for record in records]
        rows = [self._row(record, people) for record, people in zip(records, credited)]
        index = gram_index(self.session)
        gram_sets = [self._grams(row, record, people) for row, record, people in zip(rows, records, credited)]
        index.attach(rows, gram_sets)
        new = [position for position in range(len(records)) if position not in existing]
        ids = dict(existing)
        if new:
            # Not the ORM's bulk insert: that one splits the rows into a statement per set of non-null columns.
            ids.update(zip(new, insert_rows(self.session, Work.__table__, [rows[p] for p in new])))
        if existing:
            self.session.execute(update(Work), [dict(rows[p], id=work_id) for p, work_id in existing.items()])
            updated = list(existing.values())
            self.session.execute(delete(Contributor).where(Contributor.work_id.in_(updated)))
        credits = [
            {"work_id": ids[position], "person_id": self.people[author["name"]].id, "position": rank, "role": author["role"]}
            for position, record in enumerate(records) for rank, author in enumerate(record.get("authors", []))
        ]
        if credits:
            insert_rows(self.session, Contributor.__table__, credits)
        index.write(self.session, [ids[position] for position in range(len(records))], gram_sets,
                    list(existing.values()))
        return [ids[position] for position in range(len(records))]

    def _row(self, record, people):
        row = {field: record.get(field) for field in WORK_FIELDS}
        row.update(
            tenant=self.tenant,
            subjects=record.get("subjects") or [],
            isbn=record.get("isbn"),  # normalised to ISBN-13 by the schema
            publisher_id=self.publishers[record["publisher"]].id if record.get("publisher") else None,
            title_folded=fold(record["title"]),
            reading_folded=fold(record["title_reading"]) if record.get("title_reading") else reading(record["title"]),
        )
        row["title_key"] = FIELD_SEPARATOR.join((row["title_folded"], fold(row["subtitle"]), row["reading_folded"]))
        row["people_key"] = FIELD_SEPARATOR.join(part for person in people for part in (person.folded,
                                                                                         person.reading_folded))
        return row

    def _grams(self, row, record, people):
        indexed = grams(row["title_folded"], TITLE_TAG)
        indexed |= grams(fold(row["subtitle"]), TITLE_TAG)
        indexed |= grams(row["reading_folded"], TITLE_TAG)
        for person in people:
            indexed |= name_grams("author", person.folded, person.reading_folded)
        if record.get("publisher"):
            indexed |= name_grams("publisher", self.publishers[record["publisher"]].folded)
        return indexed

    def _meet_people(self, names):
        self._meet(Person, (Person.folded, Person.reading_folded), names, self.people,
                   lambda name: {"folded": fold(name), "reading_folded": reading(name)})

    def _meet_publishers(self, names):
        self._meet(Publisher, (Publisher.folded,), names, self.publishers, lambda name: {"folded": fold(name)})

    def _meet(self, model, columns, names, known, derived):
        """Put the tenant's ``model`` rows (people or publishers: their id and ``columns``) called ``names`` into
        ``known``, creating the missing ones. A name that another import creates at the same moment is taken,
        not duplicated. Plain rows, not ORM objects: a batch meets hundreds of names."""
        named = select(model.name, model.id, *columns).where(
            model.tenant == self.tenant, model.name.in_(bindparam("names", expanding=True)))

        def read(wanted):
            known.update((row.name, row) for row in self.session.execute(named, {"names": sorted(wanted)}))

        missing = names - known.keys()
        if missing and self.known_names is not None:
            self.known_names.find(model, self.tenant, missing, known)
            missing -= known.keys()
        if missing:
            read(missing)
        new = sorted(missing - known.keys())
        if new:
            insert_new = insert_or_merge(self.session, model.__table__)
            # Many rows to one statement compiled once (SQLAlchemy's "insertmanyvalues"), not a VALUES list
            # compiled anew for every batch.
            created = self.session.execute(
                insert_new.on_conflict_do_nothing(index_elements=["tenant", "name"])
                .returning(model.name, model.id, *columns),
                [{"tenant": self.tenant, "name": name, **derived(name)} for name in new])
            known.update((row.name, row) for row in created)
            if taken := names - known.keys():  # made by another import at the same moment
                read(taken)


class ArrayIndex:
    """PostgreSQL: the grams ride on the work's row, under a GIN index that intersects them itself."""

    def attach(self, rows, gram_sets):
        for row, gram_set in zip(rows, gram_sets):
            row["grams"] = list(gram_set)

    def write(self, session, work_ids, gram_sets, updated):
        pass  # written with the rows

    def prepare(self, session):
        """The first matches found stand for a broad query's pool on every page: the same scan must find them,
        so no parallel scan. Set once on each of the catalogue's connections (its other statements are served
        as well by one process), rather than by a statement of its own in every search."""
        connection = session.connection()
        if not connection.info.get("serial_scans"):
            connection.exec_driver_sql("SET max_parallel_workers_per_gather = 0")
            connection.info["serial_scans"] = True

    def starting_with(self, column, word):
        return column.like(f"{escape_like(word)}%", escape="\\")  # the text_pattern_ops index (models.py)

    def copies_of(self, works, columns, *conditions):
        """``columns`` of each copy of the ``works`` (a selectable with their ``id``s) that meets ``conditions``,
        found by one scan of the copies' index on their work for the array of the works' ids: given a few
        hundred works, the planner would rather read every copy of the tenant into a hash (measured: 35 ms at
        20,000 copies, growing), and a LATERAL look-up work by work took twice as long as the array (4.7 against
        2.5 ms for 1,300 works at a million)."""
        return select(*columns).where(Item.work_id == func.any(func.array(select(works.c.id).scalar_subquery())),
                                      *conditions)

    def holding(self, session, words):
        """Works holding, for every word, all the grams of one of its fields' gram sets (``words``: a list of
        gram sets per word). GIN answers a containment naming every word's grams in one scan led by the
        rarest of them, so the field choices are spelled out (夏目漱石 こころ: 9 scans, 4 ms at a million
        works, where an AND of one OR per word took 36 ms and 宮沢賢治 銀河 107 ms against 3); past
        COMBINED_SCANS choices (four words or more), one OR per word, ANDed."""
        grams_array = type_coerce(Work.grams, ARRAY(BigInteger))  # the column's PostgreSQL variant

        def containing(gram_set):
            return grams_array.contains(sorted(gram_set))

        if prod(map(len, words)) <= COMBINED_SCANS:
            return or_(*(containing(set().union(*choice)) for choice in product(*words)))
        return and_(*(or_(*map(containing, fields)) for fields in words))


class PostingIndex:
    """SQLite: a row per gram and work; a word's rarest gram leads, the text check does the rest."""

    def attach(self, rows, gram_sets):
        pass  # written once the works have ids

    def write(self, session, work_ids, gram_sets, updated):
        if updated:
            session.execute(delete(WorkGram).where(WorkGram.work_id.in_(updated)))
        postings = [(gram, work_id) for work_id, gram_set in zip(work_ids, gram_sets) for gram in gram_set]
        if postings:  # a hundred rows a work: straight to the driver, without a parameter dict per row
            session.connection().exec_driver_sql("INSERT INTO work_grams (gram, work_id) VALUES (?, ?)", postings)

    def prepare(self, session):
        pass  # a single scan on SQLite: its order is the same on every page

    def starting_with(self, column, word):
        # SQLite's LIKE ignores case, so it cannot use the column's (binary) index; a range of bytes can.
        # U+10FFFF sorts after every character that may follow the word, and never occurs in a title.
        return and_(column >= word, column < word + "\U0010ffff")

    def copies_of(self, works, columns, *conditions):
        """``columns`` of each copy of the ``works`` (a selectable with their ``id``s) that meets ``conditions``."""
        return select(*columns).select_from(works).join(Item, Item.work_id == works.c.id).where(*conditions)

    def holding(self, session, words):
        """Works holding, for every word, all the grams of one of its fields' gram sets."""
        return and_(*(self._holding_word(session, gram_sets) for gram_sets in words))

    def _holding_word(self, session, gram_sets):
        def postings(gram, limit=PROBE_LIMIT):  # counted only up to ``limit``, through the index
            return session.scalar(select(func.count()).select_from(
                select(WorkGram.gram).where(WorkGram.gram == gram).limit(limit).subquery()))
        rarest = [min(gram_set, key=postings) for gram_set in gram_sets]
        if sum(postings(gram, COMMON_POSTINGS) for gram in rarest) < COMMON_POSTINGS:
            return Work.id.in_(select(WorkGram.work_id).where(WorkGram.gram.in_(rarest)))
        # Very many (の): SQLite would first collect every posting of an IN (...), half a million at a million
        # works; checked work by work as the scan meets them instead, the first matches come at once.
        return exists().where(WorkGram.work_id == Work.id, WorkGram.gram.in_(rarest))


def gram_index(session):
    return ArrayIndex() if session.get_bind().dialect.name == "postgresql" else PostingIndex()


def _contains(word):
    return f"%{escape_like(word)}%"


CHECKS = {
    "title": lambda tenant, word: Work.title_key.like(_contains(word), escape="\\"),
    "author": lambda tenant, word: Work.people_key.like(_contains(word), escape="\\"),
    "publisher": lambda tenant, word: Work.publisher_id.in_(select(Publisher.id).where(
        Publisher.tenant == tenant, Publisher.folded.like(_contains(word), escape="\\"))),
}


WORST_RANK = 6


def rank(tenant, word, is_a_name):
    """0 the very name (or its reading) of a person credited, 1 the title as written, 2 its reading, 3 title
    prefix, 4 title substring, 5 part of a person's name, 6 anything else (publisher): 「なつめそうせき」
    finds 夏目漱石's own works before 『夏目漱石論』, which is about him, and 「こころ」 『こころ』 before 『心』.
    Only a word that ``is_a_name`` of someone asks the first."""
    prefix = f"{escape_like(word)}%"
    return case(
        *([(_names_exactly(tenant, word), 0)] if is_a_name else []),
        (Work.title_folded == word, 1),
        (Work.reading_folded == word, 2),
        (or_(Work.title_folded.like(prefix, escape="\\"), Work.reading_folded.like(prefix, escape="\\")), 3),
        (Work.title_key.like(_contains(word), escape="\\"), 4),
        (Work.people_key.like(_contains(word), escape="\\"), 5),
        else_=WORST_RANK,
    )


def _names_among(session, tenant, words):
    """Those of ``words`` that are someone's folded name or reading (one look-up through the people's indexes:
    a query naming nobody pays nothing more for names)."""
    if not words:
        return set()
    found = session.execute(select(Person.folded, Person.reading_folded).where(
        Person.tenant == tenant, or_(Person.folded.in_(words), Person.reading_folded.in_(words)))).all()
    return {form for row in found for form in row} & set(words)


def _names_exactly(tenant, word):
    """One of the people credited on the work is named ``word`` (folded name or reading), through the people's
    own indexes: a name nobody has costs one index look-up, whatever the query finds besides."""
    named = select(Contributor.work_id).join(Person, Person.id == Contributor.person_id).where(
        Person.tenant == tenant, or_(Person.folded == word, Person.reading_folded == word))
    return Work.id.in_(named)


def _exact(word):
    return or_(Work.title_folded == word, Work.reading_folded == word)


@dataclass
class Found:
    """A search's answer: ``total`` matches ranked, the asked page's ``works``, ``more`` when the query matched
    more than RESULT_CAP and the rest was left unread, and the ``facets`` of the ``total`` matches (None unless
    asked)."""

    total: int
    works: list
    more: bool
    facets: dict | None


def search(session, tenant, params):
    """A ``Found`` for validated search parameters (schemas.SearchQuerySchema).

    Up to RESULT_CAP matches are ranked together and ``total`` counts them exactly. A broader query (猫 over
    a large catalogue) answers ``more``: the works whose title (or its reading) is one of the words or starts
    with one, looked up through their own indexes, and the first RESULT_CAP other matches found are ranked
    and counted, the rest is left unread, and the OPAC asks to narrow the query (as Japanese OPACs do)
    instead of ranking fifty thousand works. So the best-ranked matches lead whatever the cap; the cap
    decides which of the titles merely holding a word are ranked, and each match read costs a page read
    (one kanji at a million works, through the gateway: p95 38 ms, where ranking the first 5,000 found took
    74 ms). Every sort order and the facets are of those ranked matches too. The facets are counted only when
    ``params["facets"]`` asks for them (the OPAC's page does): a third of a search's time at a million works."""
    index = gram_index(session)
    index.prepare(session)
    conditions, ranked = [Work.tenant == tenant], []
    asked = [(word, FIELDS, True) for word in words(params.get("q", ""))]
    asked += [(word, (field,), field == "title") for field in FIELDS for word in words(params.get(field, ""))]
    if asked:
        conditions.append(index.holding(session, [[tagged(field, query_grams(word)) for field in fields]
                                                  for word, fields, _ranks in asked]))
    for word, fields, ranks in asked:
        conditions.append(or_(*(CHECKS[field](tenant, word) for field in fields)))
        if ranks:
            ranked.append(word)
    if "isbn" in params:
        conditions.append(Work.isbn == (normalize_isbn(params["isbn"]) or ""))
    if "ndc" in params:
        conditions.append(Work.ndc.like(f"{escape_like(params['ndc'])}%", escape="\\"))
    if "ndc_class" in params:  # one digit
        conditions.append(Work.ndc.like(f"{params['ndc_class']}%"))
    if "year_from" in params:
        conditions.append(Work.published_year >= params["year_from"])
    if "year_to" in params:
        conditions.append(Work.published_year <= params["year_to"])
    if "library" in params or params.get("available"):
        conditions.append(Work.id.in_(select(Item.work_id).join(Library).where(*_copies_asked(tenant, params))))

    # One statement: the first matches found (numbered, to tell whether there were more) and the titles
    # that are or start with a word make the pool, which is ordered and cut to the page where it lies, and
    # counted whole and by facet. A match is ranked where it is read, so that the pool is a narrow list (id,
    # rank, title length, year, NDC class); the database keeps it for the counts (MATERIALIZED).
    together = "".join(ranked)
    names = _names_among(session, tenant, sorted({*ranked, together}) if ranked else [])
    ranks = [rank(tenant, word, word in names) for word in ranked]
    ranking = sum(ranks[1:], ranks[0]) if ranked else literal(0)
    if len(ranked) > 1 and together in names:  # 「夏目 漱石」: the words name a person, whose works go first
        ranking = ranking + case((_names_exactly(tenant, together), 0), else_=(WORST_RANK + 1) * len(ranked))
    ranked_columns = (Work.id, ranking.label("rank"), func.length(Work.title).label("title_length"),
                      Work.published_year.label("year"), func.substr(Work.ndc, 1, 1).label("ndc_class"))
    found = select(*ranked_columns, func.row_number().over().label("n")).where(*conditions) \
        .limit(RESULT_CAP + 1).cte("found")
    parts = [select(*(found.c[column.key] for column in ranked_columns)).where(found.c.n <= RESULT_CAP)]
    if ranked:  # as subqueries: SQLite takes no LIMIT on a member of a UNION
        leading = [(or_(*map(_exact, ranked)), EXACT_CAP),
                   (or_(*(index.starting_with(column, word) for word in ranked
                          for column in (Work.title_folded, Work.reading_folded))), LEADING_CAP)]
        if names:
            leading.append((or_(*(_names_exactly(tenant, name) for name in sorted(names))), EXACT_CAP))
        parts += [select(select(*ranked_columns).where(*conditions, lead).limit(cap).subquery())
                  for lead, cap in leading]
    pool = union(*parts).cte("pool").prefix_with("MATERIALIZED")
    page, per_page = params["page"], params["per_page"]
    order = _order(pool, params.get("sort", "relevance"))
    on_page = select(pool.c.id, func.row_number().over(order_by=order).label("position")) \
        .outerjoin(LoanCount, LoanCount.work_id == pool.c.id).order_by(*order) \
        .limit(per_page).offset((page - 1) * per_page).subquery()
    counts = _facet_counts(index, tenant, params, pool) if params.get("facets") else [
        select(*_answer("ranked", func.count())).select_from(pool)]
    rows = session.execute(union_all(
        select(*_answer("work", on_page.c.id, position=on_page.c.position)),
        select(*_answer("seen", func.count())).select_from(found), *counts)).all()
    return _found(session, rows)


def _found(session, rows):
    """The ``Found`` that the rows of the search's one statement tell (``_answer``): the page's works in their
    order, the counts of the pool by facet and whether there were more matches than were ranked."""
    by_kind = {}
    for kind, code, name, number, position in rows:
        by_kind.setdefault(kind, []).append((code, name, number, position))
    ids = [number for _code, _name, number, _position in sorted(by_kind.get("work", []), key=lambda row: row[3])]
    # One statement for the page's works with their people and copies, where selectin loading takes three.
    by_id = {work.id: work for work in session.scalars(select(Work).where(Work.id.in_(ids)).options(
        joinedload(Work.authors), joinedload(Work.items))).unique()}
    seen = by_kind["seen"][0][2]
    if "ranked" in by_kind:  # no facets asked
        return Found(by_kind["ranked"][0][2], [by_id[work_id] for work_id in ids], seen > RESULT_CAP, None)
    classes, decades = Counter(), Counter()
    for ndc_class, decade, number, _position in by_kind.get("class_and_decade", []):
        classes[ndc_class] += number
        decades[decade] += number
    facets = {
        "libraries": [{"library": code, "name": name, "works": number}
                      for code, name, number, _ in sorted(by_kind.get("library", []))],
        "ndc_classes": [{"ndc_class": ndc_class, "works": classes[ndc_class]} for ndc_class in NDC_CLASSES
                        if classes[ndc_class]],
        "decades": sorted(({"decade": int(decade), "works": number} for decade, number in decades.items() if decade),
                          key=lambda entry: entry["decade"]),
        "available": by_kind["available"][0][2],
    }
    return Found(sum(classes.values()), [by_id[work_id] for work_id in ids], seen > RESULT_CAP, facets)


def _order(pool, sort):
    """The order of schemas.SORTS over the pool (joined with the works' loan counts); ids last, so that a page's
    order is the same on every page."""
    loans = func.coalesce(LoanCount.loans, 0).desc()
    relevance = (pool.c.rank, loans, pool.c.title_length, pool.c.id)
    if sort == "newest":
        return (pool.c.year.desc().nulls_last(), *relevance)
    if sort == "popular":
        return (loans, pool.c.rank, pool.c.title_length, pool.c.id)
    return relevance


def _answer(kind, number, code=None, name=None, position=None):
    """The columns of a row of the search's one statement: its ``kind`` (a work of the page and its position,
    a count, a facet's count for a ``code`` and its ``name``) and what that kind says."""
    return (literal(kind).label("kind"), type_coerce(null() if code is None else code, String).label("code"),
            type_coerce(null() if name is None else name, String).label("name"), number.label("number"),
            (literal(0) if position is None else position).label("position"))


def _facet_counts(index, tenant, params, pool):
    """Statements counting the pool by library (works held there, with a copy on the shelf when only those are
    asked), NDC main class and decade, and how many works can be taken from the shelf now (at the library asked,
    if one is): each count is what following its link would find."""
    on_shelf = and_(Item.on_loan.is_(False), Item.shelf_status == "available").label("on_shelf")
    holdings = index.copies_of(pool, (Item.work_id, Item.library_id, on_shelf), Item.tenant == tenant) \
        .cte("holdings").prefix_with("MATERIALIZED")
    works_held = func.count(distinct(holdings.c.work_id))
    by_library = select(*_answer("library", works_held, Library.code, Library.name)).select_from(holdings) \
        .join(Library, Library.id == holdings.c.library_id).group_by(Library.code, Library.name)
    available = select(*_answer("available", works_held)).select_from(holdings).where(holdings.c.on_shelf)
    if params.get("available"):
        by_library = by_library.where(holdings.c.on_shelf)
    if "library" in params:
        available = available.join(Library, Library.id == holdings.c.library_id) \
            .where(Library.code == params["library"])
    decade = pool.c.year // 10 * 10
    return [
        by_library,
        # The whole pool by both at once (its total is their sum): one grouping, not three counts.
        select(*_answer("class_and_decade", func.count(), pool.c.ndc_class, cast(decade, String)))
        .group_by(pool.c.ndc_class, decade),
        available,
    ]


def _copies_asked(tenant, params):
    """Conditions on a copy (joined with its library) that the library and available-now filters ask."""
    conditions = [Item.tenant == tenant]
    if "library" in params:
        conditions.append(Library.code == params["library"])
    if params.get("available"):
        conditions += [Item.on_loan.is_(False), Item.shelf_status == "available"]
    return conditions
