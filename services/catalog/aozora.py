"""Reading the Aozora Bunko index (作家別作品一覧) into work records, one per 作品ID.

The index lists a work once per contributing person, in person order, so a work is whole only once the
file has been read to its end. The rows are gathered, as they are read, in a private temporary SQLite
database whose cache holds 2 MiB and which spills to disk beyond it: a file of any size is read in
bounded memory, and in time proportional to it. A row longer than 10,000 characters (the index's longest
is under 300) ends the reading: a CSV parser would otherwise hold all of it, and an unclosed quote makes
the rest of a file one row.
"""
import csv
import gzip
import io
import re
import sqlite3
from contextlib import closing
from pathlib import Path

AOZORA_INDEX = Path(__file__).resolve().parent / "data" / "aozora_list_person_all_utf8.csv.gz"
_YEAR = re.compile(r"(\d{4})（")
_NAME_SEPARATOR = "、"
_MAX_ROW = 10_000
_MAX_PEOPLE = 50  # credited on one work, as many as the catalogue keeps (and a MARC record brings)


class RowTooLong(Exception):
    """A row of the file is longer than any row of the index."""


def read_aozora_works(text):
    """Work records (the catalogue's WorkSchema) from the index as a text stream, in the order each work first
    appears. A work's rows are merged, in file order, into one record with every person."""
    return list(_works(text))


def open_aozora_index(path=AOZORA_INDEX):
    """The index as a text stream, whether gzip-compressed or not, BOM removed."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    return io.TextIOWrapper(gzip.open(path) if compressed else open(path, "rb"), encoding="utf-8-sig", newline="")


def read_aozora(stream):
    """Imported records from the index as a binary stream. A file that is not the index (not UTF-8, columns
    missing, a row too long) is one reject saying why, and nothing of it is imported."""
    from services.catalog.marc import Imported

    works = _works(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""))
    try:
        first = next(works, None)  # every row is read before the first work comes
    except UnicodeDecodeError as error:
        yield Imported(0, None, f"broken encoding: the file is not UTF-8 ({error.reason} at byte {error.start})")
        return
    except (KeyError, csv.Error, RowTooLong) as error:
        yield Imported(0, None, f"not the Aozora Bunko index: {error}")
        return
    if first is not None:
        yield Imported(0, first, None)
        for position, work in enumerate(works, 1):
            yield Imported(position, work, None)


def _works(text):
    with closing(_Gathering()) as gathering:
        gathering.add(text)
        yield from gathering.works()


class _Gathering:
    """The works met so far, in a temporary database: its rows are numbered in the order they are added, so
    works come back in the order they first appeared, each with its people in file order."""

    def __init__(self):
        self._db = sqlite3.connect("")  # "" is a private database on disk, deleted when closed
        self._db.executescript("""
            PRAGMA cache_size = -2048;
            CREATE TABLE works (id TEXT PRIMARY KEY, title TEXT, publisher TEXT, published_year INTEGER);
            CREATE TABLE credits (work TEXT, name TEXT, role TEXT, UNIQUE (work, name, role));
            CREATE INDEX credits_of_work ON credits (work);
        """)

    def add(self, text):
        rows = _Rows(text)
        with self._db:
            for row in csv.DictReader(rows, restval=""):
                rows.next_row()
                work_id = row["作品ID"].strip()
                self._db.execute("INSERT OR IGNORE INTO works VALUES (?, ?, ?, ?)", (
                    work_id, row["作品名"].strip(), row["出版社名"].strip() or None,
                    _year(row["入力に使用した版"]) or _year(row["校正に使用した版"])))
                translators = [name.strip() for name in row["翻訳者名等"].split(_NAME_SEPARATOR) if name.strip()]
                # The index lists translators as persons of the work too; credit them once, as translators.
                author = row["著者名"].strip()
                credits = ([(author, "author")] if author and author not in translators else []) + [
                    (translator, "translator") for translator in translators]
                self._db.executemany("INSERT OR IGNORE INTO credits VALUES (?, ?, ?)",
                                     [(work_id, name, role) for name, role in credits])

    def works(self):
        work = None
        for work_id, title, publisher, year, name, role in self._db.execute(
                "SELECT works.id, title, publisher, published_year, name, role FROM works"
                " LEFT JOIN credits ON credits.work = works.id ORDER BY works.rowid, credits.rowid"):
            if work is None or work["source_id"] != f"aozora:{work_id}":
                if work is not None:
                    yield work
                work = {"source_id": f"aozora:{work_id}", "title": title, "authors": [], "publisher": publisher,
                        "published_year": year}
            if name is not None and len(work["authors"]) < _MAX_PEOPLE:
                work["authors"].append({"name": name, "role": role})
        if work is not None:
            yield work

    def close(self):
        self._db.close()


class _Rows:
    """The lines of a text stream for a CSV reader, no row longer than ``_MAX_ROW`` characters (a quoted
    field can span lines: the reader says when a row is done)."""

    def __init__(self, text):
        self._text = text
        self._row_length = 0

    def __iter__(self):
        for line in iter(lambda: self._text.readline(_MAX_ROW + 1), ""):
            self._row_length += len(line)
            if self._row_length > _MAX_ROW:
                raise RowTooLong(f"a row longer than {_MAX_ROW:,} characters")
            yield line

    def next_row(self):
        self._row_length = 0


def _year(edition):
    match = _YEAR.search(edition or "")
    return int(match.group(1)) if match else None
