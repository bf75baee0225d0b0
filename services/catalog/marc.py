"""Reading MARC21 bibliographic records (ISO 2709 or MARCXML) into the catalogue's work records, for bulk import.

Both readers stream: they hold one record at a time, whatever the size of the file. Each record becomes an
``Imported(position, work, reason)``: a work dict, or the reason it was rejected (bad leader, unreadable
directory, broken character encoding, no title), and reading goes on with the next record.
"""
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections import namedtuple

from pymarc import Field, Indicators, Record, Subfield, marc8_to_unicode

from services.catalog.rules import normalize_isbn

Imported = namedtuple("Imported", "position work reason")
Imported.__doc__ = """One record of an import file: ``position`` is its 0-based number in the file; exactly one of
``work`` (the work dict) and ``reason`` (why it was rejected, in English) is set."""

_LEADER_LENGTH = 24
_ENTRY_LENGTH = 12
_MAX_RECORD = 99999  # the leader's five-digit record length
_BLOCK = 8192
_END_OF_RECORD = b"\x1d"
_END_OF_FIELD = 0x1E
_SUBFIELD = b"\x1f"
_MARCXML = "{http://www.loc.gov/MARC21/slim}"

# Bytes that no MARC-8 character set uses (C1 controls other than NSB, NSE, ZWJ and ZWNJ; 0xA0; 0xFF). pymarc
# drops or blanks them without a word, so a record in another encoding (most often UTF-8 with leader/09 left
# blank) would import as mojibake instead of being rejected.
_NOT_MARC8 = re.compile(rb"[\x80-\x87\x8a-\x8c\x8f-\xa0\xff]")

_SEPARATORS_AT_END = re.compile(r"[\s/:;=,]+$")
# A final period that belongs to the text: an initial ("Keene, D.") or an ellipsis.
_MEANINGFUL_PERIOD = re.compile(r"(?:^|[\s.])[A-Za-z]\.$|\.\.\.$")
_DATES_AT_END = re.compile(r",\s*\d{3,4}\??-(?:\d{3,4}\??)?$")  # "夏目, 漱石, 1867-1916" when $a carries the dates
_YEAR = re.compile(r"(?<![0-9])[0-9]{4}(?![0-9])")
_ISBN_TOKEN = re.compile(r"[0-9Xx-]+")
_NDC = re.compile(r"\d{1,3}(?:\.\d{1,6})?")
_DDC = re.compile(r"\d{1,3}(?:\.\d+)?(?![\d.])")

_ROLES = {
    "aut": "author", "author": "author", "著": "author", "著者": "author",
    "trl": "translator", "translator": "translator", "訳": "translator", "訳者": "translator", "翻訳": "translator",
    "edt": "editor", "editor": "editor", "編": "editor", "編者": "editor", "編集": "editor",
    "ill": "illustrator", "illustrator": "illustrator", "絵": "illustrator", "画": "illustrator",
}
_SUBJECT_TAGS = ("600", "610", "611", "630", "650", "651")
_LIMITS = {"title": 1000, "subtitle": 1000, "responsibility": 1000, "title_reading": 1000,
           "name": 300, "publisher": 500, "subject": 500, "authors": 50, "subjects": 50, "source_id": 100}

_Statement = namedtuple("_Statement", "title subtitle responsibility")


class _Rejected(Exception):
    """A record that cannot be imported; the message says why."""


def read_marc21(stream):
    """``Imported`` for each record of a binary ISO 2709 stream, MARC-8 or UTF-8 (leader/09 'a')."""
    for position, chunk in enumerate(_record_chunks(_Source(stream))):
        yield _import(position, _parse_iso2709, chunk)


def read_marcxml(stream):
    """``Imported`` for each record of a binary MARCXML stream (a collection or a single record). An XML syntax
    error ends the file: the records before it are yielded, then one reject with the parser's message."""
    position = 0
    open_elements = []
    try:
        for event, element in ET.iterparse(stream, events=("start", "end")):
            if event == "start":
                open_elements.append(element)
                continue
            open_elements.pop()
            if _is(element, "record"):
                yield _import(position, _xml_record, element)
                position += 1
                # Detached from its parent, the record's elements can be freed: memory holds one record.
                if open_elements:
                    open_elements[-1].remove(element)
    except ET.ParseError as error:
        yield Imported(position, None, f"XML syntax error: {error}")


def _import(position, parse, raw):
    try:
        return Imported(position, _work(parse(raw)), None)
    except _Rejected as rejected:
        return Imported(position, None, str(rejected))


# ISO 2709 ------------------------------------------------------------------------------------------------


class _Source:
    """The binary stream, with room to push back bytes read past the end of a record."""

    def __init__(self, stream):
        self._stream = stream
        self._pushed_back = b""

    def read(self, size):
        data, self._pushed_back = self._pushed_back[:size], self._pushed_back[size:]
        while len(data) < size and (more := self._stream.read(size - len(data))):
            data += more
        return data

    def push_back(self, data):
        self._pushed_back = data + self._pushed_back


def _record_chunks(source):
    """Each record's bytes. The leader's length says where a record ends, read exactly so that nothing past the
    current record is read; when that length is unreadable or wrong, the record ends at the next record
    terminator instead (a byte that cannot occur inside a record in MARC-8 or UTF-8), so one damaged record
    costs only itself. (pymarc's MARCReader stops at the first unreadable length and cannot resynchronise.)"""
    while head := source.read(5):
        stripped = head.lstrip()
        if stripped != head:  # some exporters put a line break between records; it belongs to none
            source.push_back(stripped)
            continue
        chunk = head
        if head.isdigit() and int(head) > _LEADER_LENGTH:
            chunk += source.read(int(head) - len(head))
        if chunk.find(_END_OF_RECORD) == len(chunk) - 1:
            yield chunk
        else:
            yield _through_terminator(source, chunk)


def _through_terminator(source, chunk):
    """``chunk`` up to and including the next record terminator, the bytes after it pushed back."""
    end = chunk.find(_END_OF_RECORD)
    if end >= 0:
        source.push_back(chunk[end + 1:])
        return chunk[:end + 1]
    while block := source.read(_BLOCK):
        end = block.find(_END_OF_RECORD)
        if end >= 0:
            source.push_back(block[end + 1:])
            return chunk[:_MAX_RECORD] + block[:end + 1]
        # Only the start matters (for the reject), so a stream without terminators is skipped in bounded memory.
        chunk = chunk[:_MAX_RECORD] + block
    return chunk


def _parse_iso2709(chunk):
    """A pymarc Record with Unicode text from one record's bytes, or _Rejected saying what is broken."""
    leader = chunk[:_LEADER_LENGTH]
    if not leader[:5].isdigit():
        raise _Rejected("bad leader: record length is not numeric")
    if not chunk.endswith(_END_OF_RECORD):
        raise _Rejected("truncated record: no record terminator")
    if int(leader[:5]) != len(chunk):
        raise _Rejected(f"bad leader: record length {int(leader[:5])} does not match the record ({len(chunk)} bytes)")
    if len(chunk) <= _LEADER_LENGTH + 1 or not leader.isascii():
        raise _Rejected("bad leader: not a MARC21 leader")
    coding = leader[9:10]
    if coding not in (b"a", b" "):
        raise _Rejected(f"bad leader: unknown character coding {coding.decode()!r} at leader/09")
    if not leader[12:17].isdigit():
        raise _Rejected("bad leader: base address of data is not numeric")
    base = int(leader[12:17])
    if not _LEADER_LENGTH < base < len(chunk) or chunk[base - 1] != _END_OF_FIELD:
        raise _Rejected("bad leader: base address of data does not follow the directory")

    directory = chunk[_LEADER_LENGTH:base - 1]
    if not directory or len(directory) % _ENTRY_LENGTH:
        raise _Rejected("unreadable directory: its length is not a multiple of 12")
    fields = []
    for number, start in enumerate(range(0, len(directory), _ENTRY_LENGTH), 1):
        entry = directory[start:start + _ENTRY_LENGTH]
        if not (entry[:3].isalnum() and entry[3:].isdigit()):
            raise _Rejected(f"unreadable directory: entry {number} is malformed")
        tag, length, offset = entry[:3].decode(), int(entry[3:7]), int(entry[7:])
        end = base + offset + length
        if length < 1 or end >= len(chunk) or chunk[end - 1] != _END_OF_FIELD:
            raise _Rejected(f"unreadable directory: field {tag} is not where the directory says")
        fields.append((tag, chunk[base + offset:end - 1]))

    decode, encoding = (_utf8, "UTF-8") if coding == b"a" else (_marc8, "MARC-8")
    record = Record(leader=leader.decode())
    for tag, data in fields:
        try:
            record.add_field(_field(tag, data, decode))
        except UnicodeDecodeError:
            raise _Rejected(f"broken encoding: invalid {encoding} in field {tag}") from None
    return record


def _field(tag, data, decode):
    if tag < "010" and tag.isdigit():
        return Field(tag, data=decode(data))
    indicators, *subfields = data.split(_SUBFIELD)
    first, second = decode(indicators).ljust(2)[:2]
    texts = [decode(subfield) for subfield in subfields]
    return Field(tag, Indicators(first, second), [Subfield(text[0], text[1:]) for text in texts if text])


def _utf8(data):
    return data.decode("utf-8")  # strict: broken bytes reject the record rather than import as U+FFFD


def _marc8(data):
    if _NOT_MARC8.search(data):
        raise UnicodeDecodeError("marc-8", data, 0, len(data), "byte not used by MARC-8")
    return marc8_to_unicode(data, hide_utf8_warnings=True)


# MARCXML -------------------------------------------------------------------------------------------------


def _is(element, name):
    """Whether ``element`` is the MARCXML element ``name`` (namespaced, or without a namespace as some
    exporters write it; a ``record`` of another namespace, such as OAI-PMH's envelope, is not)."""
    return element.tag in (_MARCXML + name, name)


def _xml_record(element):
    record = Record()
    for child in element:
        if _is(child, "controlfield"):
            record.add_field(Field(child.get("tag", ""), data=child.text or ""))
        elif _is(child, "datafield"):
            indicators = Indicators(child.get("ind1", " "), child.get("ind2", " "))
            subfields = [Subfield(sub.get("code", ""), sub.text or "") for sub in child if _is(sub, "subfield")]
            record.add_field(Field(child.get("tag", ""), indicators, subfields))
    return record


# The work ------------------------------------------------------------------------------------------------


def _work(record):
    title, subtitle, responsibility, reading = _title(record)
    isbn = _isbn(record)
    return {
        "title": _cut(title, "title"),
        "subtitle": _cut(subtitle, "subtitle"),
        "responsibility": _cut(responsibility, "responsibility"),
        "title_reading": _cut(reading, "title_reading"),
        "authors": _authors(record)[:_LIMITS["authors"]],
        "publisher": _cut(_publisher(record), "publisher"),
        "published_year": _published_year(record),
        "isbn": isbn,
        "ndc": _ndc(record),
        "ddc": _ddc(record),
        "subjects": [_cut(subject, "subject") for subject in _subjects(record)][:_LIMITS["subjects"]],
        "source_id": _source_id(record, isbn),
    }


def _title(record):
    """Title, subtitle, responsibility and reading, from 245 and the 880 fields linked to it.

    Japanese records carry the title twice, as written and as read (in kana), one in 245 and the other in a
    linked 880; which way round depends on the cataloguing agency, and Library of Congress style records put
    a romanisation in 245 and the vernacular in 880. The title is the form written with kanji if there is
    one, else a kana form, else the romanised one, 245 first among equals; the reading is another form that
    is kana-only. A title written in kana alone, with no other form, has no separate reading.
    """
    field = record.get("245")
    main = _statement(field) if field else None
    if not (main and main.title):
        raise _Rejected("no title (245 $a)")
    linked = [_statement(field) for field in record.get_fields("880") if (field.get("6") or "").startswith("245-")]
    forms = [main] + [statement for statement in linked if statement.title]
    chosen = min(forms, key=_script_preference)  # min keeps the first of equals: 245
    reading = next((s.title for s in forms if s is not chosen and _is_kana_only(s.title)), None)
    return (chosen.title, chosen.subtitle or main.subtitle, chosen.responsibility or main.responsibility,
            reading and unicodedata.normalize("NFKC", reading))


def _script_preference(statement):
    """0 for a title written with kanji, 1 for kana only, 2 for one with no Japanese script (romanised)."""
    if _is_kana_only(statement.title):
        return 1
    has_japanese = any("\u3041" <= char <= "\u30ff" or "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf"
                       for char in unicodedata.normalize("NFKC", statement.title))
    return 0 if has_japanese else 2


def _statement(field):
    """A title statement: $a with its part number and name ($n, $p), $b, $c."""
    return _Statement(*(_clean(" ".join(field.get_subfields(*codes))) for codes in (("a", "n", "p"), ("b",), ("c",))))


def _is_kana_only(text):
    """Whether ``text`` reads as a transcription: kana (ー and ・ among them, half-width too), perhaps with Latin
    letters, digits, punctuation and spaces, but no kanji."""
    has_kana = False
    for char in unicodedata.normalize("NFKC", text):  # half-width katakana become full-width
        if "\u3041" <= char <= "\u30ff" or "\u31f0" <= char <= "\u31ff":
            has_kana = True
        elif not (char.isascii() or unicodedata.category(char)[0] in "NPSZ"):
            return False
    return has_kana


def _authors(record):
    """Main entry then added entries, each with its roles from $4 (codes or relator URIs) and $e (terms)."""
    authors = []
    for default_role, tags in (("author", ("100", "110", "111")), ("contributor", ("700", "710", "711"))):
        for field in record.get_fields(*tags):
            # A corporate body's subordinate units ($b) are part of its name; a person's $b is a numeration.
            codes = ("a", "b") if field.tag in ("110", "710") else ("a",)
            name = _cut(_clean(_DATES_AT_END.sub("", _clean(" ".join(field.get_subfields(*codes))))), "name")
            if not name:
                continue
            relators = [_clean(value).rsplit("/", 1)[-1].lower() for value in field.get_subfields("4", "e")]
            roles = [_ROLES[relator] for relator in relators if relator in _ROLES]
            if not roles:
                # Relators outside the catalogue's roles (composer, photographer, ...) credit a contributor.
                roles = ["contributor"] if relators else [default_role]
            for role in roles:
                if {"name": name, "role": role} not in authors:
                    authors.append({"name": name, "role": role})
    return authors


def _publication_fields(record):
    """264 with second indicator 1 (publication), else the older 260."""
    return [field for field in record.get_fields("264") if field.indicator2 == "1"] + record.get_fields("260")


def _publisher(record):
    return next((name for field in _publication_fields(record) for name in map(_clean, field.get_subfields("b"))
                 if name), None)


def _published_year(record):
    """The first plausible year of the publication date ($c), else the fixed-length data's Date 1 (008/07-10)."""
    dates = [date for field in _publication_fields(record) for date in field.get_subfields("c")]
    fixed = record.get("008")
    if fixed and fixed.data:
        dates.append(fixed.data[7:11])
    years = (int(match) for date in dates for match in _YEAR.findall(date))
    return next((year for year in years if 1000 <= year <= 2200), None)


def _isbn(record):
    """The first valid ISBN of 020 $a, as ISBN-13; "4003101014 (pbk.)" carries a qualifier after the number."""
    for value in (value for field in record.get_fields("020") for value in field.get_subfields("a")):
        token = _ISBN_TOKEN.match(value.strip())
        isbn = normalize_isbn(token.group()) if token else None
        if isbn:
            return isbn
    return None


def _ndc(record):
    """The NDC class: 084 with $2 njb (njb/09, njb/10: NDC and its edition), else an 084 naming no scheme. An 084
    naming another scheme (UDC, ...) may look like a number class too, and is not NDC."""
    fields = record.get_fields("084")
    ndc_fields = [field for field in fields if (field.get("2") or "").startswith("njb")]
    unnamed = [field for field in fields if field.get("2") is None]
    classes = (value.strip() for field in ndc_fields + unnamed for value in field.get_subfields("a"))
    return next((value for value in classes if _NDC.fullmatch(value)), None)


def _ddc(record):
    """The first class number of 082 $a, without the segmentation marks (/ and ') and trailing letters
    ("895.6/35" is 895.635, "813.54 B" is 813.54)."""
    for value in (value for field in record.get_fields("082") for value in field.get_subfields("a")):
        match = _DDC.match(value.replace("/", "").replace("'", "").strip())
        if match:
            return match.group()
    return None


def _subjects(record):
    """Subject headings as "$a--$x--$y--$z" strings; $v (form subdivision) is kept too, in field order, as
    headings are read."""
    subjects = []
    for field in record.get_fields(*_SUBJECT_TAGS):
        if not field.get("a"):
            continue
        parts = [_clean(value) for value in field.get_subfields("a", "v", "x", "y", "z")]
        heading = "--".join(part for part in parts if part)
        if heading and heading not in subjects:
            subjects.append(heading)
    return subjects


def _source_id(record, isbn):
    """Where the record came from, so that importing it again updates the work: control number (001) with its
    agency (003), else the ISBN. An identifier too long to store is not cut (two records could then collide)."""
    number = record.get("001")
    agency = record.get("003")
    if number and (number.data or "").strip():
        prefix = f"marc:{agency.data.strip()}:" if agency and (agency.data or "").strip() else "marc:"
        source_id = prefix + number.data.strip()
        if len(source_id) <= _LIMITS["source_id"]:
            return source_id
    return f"isbn:{isbn}" if isbn else None


def _clean(text):
    """``text`` without the ISBD punctuation that ends a MARC subfield (" /", " :", " ;", " =", ",", ".")."""
    text = _SEPARATORS_AT_END.sub("", text.strip())
    if text.endswith(".") and not _MEANINGFUL_PERIOD.search(text):
        text = _SEPARATORS_AT_END.sub("", text[:-1])
    return text


def _cut(text, kind):
    return text[:_LIMITS[kind]] if text else None
