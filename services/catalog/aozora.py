"""Reading the Aozora Bunko index (作家別作品一覧) into work records, one per 作品ID."""
import csv
import gzip
import io
import re
from pathlib import Path

AOZORA_INDEX = Path(__file__).resolve().parent / "data" / "aozora_list_person_all_utf8.csv.gz"
_YEAR = re.compile(r"(\d{4})（")
_NAME_SEPARATOR = "、"


def read_aozora_works(lines):
    """Work records (the catalogue's WorkSchema) from the index's CSV text lines. A work appears once per
    contributing person; those rows are merged, in file order, into one record with every person."""
    works = {}
    for row in csv.DictReader(lines):
        work_id = row["作品ID"].strip()
        work = works.get(work_id)
        if work is None:
            work = works[work_id] = {
                "source_id": f"aozora:{work_id}",
                "title": row["作品名"].strip(),
                "authors": [],
                "publisher": row["出版社名"].strip() or None,
                "published_year": _year(row["入力に使用した版"]) or _year(row["校正に使用した版"]),
            }
        translators = [name.strip() for name in row["翻訳者名等"].split(_NAME_SEPARATOR) if name.strip()]
        # The index lists translators as persons of the work too; credit them once, as translators.
        if row["著者名"].strip() not in translators:
            _credit(work, row["著者名"], "author")
        for translator in translators:
            _credit(work, translator, "translator")
    return list(works.values())


def open_aozora_index(path=AOZORA_INDEX):
    """The index as text lines, whether gzip-compressed or not, BOM removed."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return io.StringIO(raw.decode("utf-8-sig"), newline="")


def _credit(work, name, role):
    name = name.strip()
    if name and not any(a["name"] == name and a["role"] == role for a in work["authors"]):
        work["authors"].append({"name": name, "role": role})


def _year(edition):
    match = _YEAR.search(edition or "")
    return int(match.group(1)) if match else None


def read_aozora(stream):
    """Imported records from the index as a binary stream. The index lists a work once per person, in
    person order, so the works are gathered whole before the first is yielded (a few tens of thousands)."""
    from services.catalog.marc import Imported

    try:
        works = read_aozora_works(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""))
    except UnicodeDecodeError as error:
        yield Imported(0, None, f"broken encoding: the file is not UTF-8 ({error.reason} at byte {error.start})")
        return
    except (KeyError, csv.Error) as error:
        yield Imported(0, None, f"not the Aozora Bunko index: {error}")
        return
    for position, work in enumerate(works):
        yield Imported(position, work, None)
