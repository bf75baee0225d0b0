"""Reading MARC21 bibliographic records (ISO 2709 or MARCXML) into the catalogue's work records, for bulk import.

Both readers stream: they hold one record at a time, whatever the size of the file, and take time in proportion
to it. Each record becomes an ``Imported(position, work, reason)``: a work dict, or the reason it was rejected
(bad leader, unreadable directory, broken character encoding, no title, too large), and reading goes on with
the next record.

A MARCXML record is held to what an ISO 2709 record can carry, so that neither format costs more memory than
the other: the text of a subfield or control field is kept up to 9,999 characters and the rest dropped (an
ISO 2709 field holds 9,999 bytes, and nothing the catalogue keeps is longer than 1,000 characters); a record
with more than 99,999 characters kept or more than 10,000 fields and subfields is rejected. Markup that no
MARCXML file needs ends the file with a reject: a DTD, elements nested more than 64 deep, a tag, comment or
declaration of more than 64 KiB.
"""
import re
import sys
import unicodedata
from collections import namedtuple
from xml.parsers import expat

from pymarc import Field, Indicators, Record, Subfield, marc8_to_unicode

from services.catalog.rules import normalize_isbn
from shiori.imports import Imported


_LEADER_LENGTH = 24
_ENTRY_LENGTH = 12
_MAX_RECORD = 99999  # the leader's five-digit record length
_BLOCK = 8192
_END_OF_RECORD = b"\x1d"
_END_OF_FIELD = 0x1E
_SUBFIELD = b"\x1f"
_MARCXML = "http://www.loc.gov/MARC21/slim "  # expat names an element "namespace local-name"
_MAX_FIELD_TEXT = 9999
_MAX_RECORD_TEXT = 99999
_MAX_RECORD_PARTS = 10000
_MAX_XML_DEPTH = 64
_MAX_XML_TOKEN = 1 << 16

# Bytes that no MARC-8 character set uses (C1 controls other than NSB, NSE, ZWJ and ZWNJ; 0xA0; 0xFF). pymarc
# drops or blanks them without a word, so a record in another encoding (most often UTF-8 with leader/09 left
# blank) would import as mojibake instead of being rejected.
_NOT_MARC8 = re.compile(rb"[\x80-\x87\x8a-\x8c\x8f-\xa0\xff]")

# Matched at the start of the reversed text: searched for at the end ("[...]+$"), a long run of them that does
# not reach the end is tried from each of its characters, which costs the square of its length.
_SEPARATORS = re.compile(r"[\s/:;=,]*")
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
# A MARCXML field as it is read, each text as the list of its pieces.
_ControlField = namedtuple("_ControlField", "tag pieces")
_DataField = namedtuple("_DataField", "tag ind1 ind2 subfields")  # subfields: [(code, pieces), ...]


class _Rejected(Exception):
    """A record that cannot be imported; the message says why."""


def read_marc21(stream):
    """``Imported`` for each record of a binary ISO 2709 stream, MARC-8 or UTF-8 (leader/09 'a')."""
    for position, chunk in enumerate(_record_chunks(_Source(stream))):
        yield _import(position, _parse_iso2709, chunk)


def read_marcxml(stream):
    """``Imported`` for each record of a binary MARCXML stream (a collection or a single record). An XML syntax
    error, or markup that no MARCXML file needs, ends the file: the records before it are yielded, then one
    reject saying why."""
    parser = _MarcXmlParser()
    try:
        while block := stream.read(_BLOCK):
            parser.feed(block)
            yield from parser.take()
        parser.close()
    except expat.ExpatError as error:
        parser.stop(f"XML syntax error: {error}")
    except _Unreadable as unreadable:
        parser.stop(str(unreadable))
    yield from parser.take()


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


class _Unreadable(Exception):
    """Markup that ends the reading of a MARCXML file; the message says why."""


class _MarcXmlParser:
    """expat, fed block by block, keeping only the record being read (as plain tuples) and the records finished
    since they were last taken. Elements outside MARC records, and those inside that are not MARC fields, are
    counted in the depth and otherwise ignored, so a file of empty elements costs no memory."""

    def __init__(self):
        self._expat = expat.ParserCreate(namespace_separator=" ")
        self._expat.buffer_text = True  # one call for a text, not one for each line and entity of it
        self._expat.StartElementHandler = self._start
        self._expat.EndElementHandler = self._end
        self._expat.CharacterDataHandler = self._text
        self._expat.StartDoctypeDeclHandler = self._doctype
        self._fed = 0
        self._depth = 0
        self._record = None
        self._finished = []
        self._position = 0

    def feed(self, block):
        self._expat.Parse(block, False)
        self._fed += len(block)
        # Past its last event expat holds the unfinished token, whole: a tag of a million attributes would be
        # held, then handed over as a dict of a million entries.
        if self._fed - self._expat.CurrentByteIndex > _MAX_XML_TOKEN:
            raise _Unreadable(f"XML markup of more than {_MAX_XML_TOKEN // 1024} KiB in one piece")

    def close(self):
        self._expat.Parse(b"", True)

    def take(self):
        finished, self._finished = self._finished, []
        return finished

    def stop(self, reason):
        """Reading ends here: the record being read is lost, and the reject says why."""
        self._finished.append(Imported(self._position, None, reason))

    def _doctype(self, *_declaration):
        raise _Unreadable("a DTD is not allowed in MARCXML")  # its entities could expand beyond any limit

    def _start(self, name, attributes):
        self._depth += 1
        if self._depth > _MAX_XML_DEPTH:
            raise _Unreadable(f"XML nested more than {_MAX_XML_DEPTH} elements deep")
        if self._record is None:
            if _is(name, "record"):
                self._record = _XmlRecord(self._depth)
        else:
            self._record.start(self._depth, name, attributes)

    def _text(self, text):
        if self._record is not None:
            self._record.text(self._depth, text)

    def _end(self, _name):
        record = self._record
        if record is not None and self._depth == record.depth:
            self._record = None
            if record.reason:
                self._finished.append(Imported(self._position, None, record.reason))
            else:
                self._finished.append(_import(self._position, _xml_record, record.fields))
            self._position += 1
        elif record is not None:
            record.end(self._depth)
        self._depth -= 1


def _is(name, local_name):
    """Whether the element ``name`` is the MARCXML element ``local_name`` (namespaced, or without a namespace as
    some exporters write it; a ``record`` of another namespace, such as OAI-PMH's envelope, is not)."""
    return name in (_MARCXML + local_name, local_name)


class _XmlRecord:
    """The fields of a MARCXML record being read, ``_ControlField`` and ``_DataField`` tuples. Once the record is
    over a limit, ``reason`` says so and nothing more of it is kept."""

    def __init__(self, depth):
        self.depth = depth
        self.fields = []
        self.reason = None
        self._parts = 0
        self._characters = 0
        self._data_field = None  # the data field being read
        self._pieces = None  # where the text being read goes
        self._text_depth = None  # the depth of its element
        self._kept = 0  # characters kept of that text

    def start(self, depth, name, attributes):
        if self.reason:
            return
        if depth == self.depth + 1 and _is(name, "controlfield"):
            kept = [_attribute(attributes, "tag", "")]
            self.fields.append(_ControlField(kept[0], self._read_text(depth)))
        elif depth == self.depth + 1 and _is(name, "datafield"):
            kept = [_attribute(attributes, "tag", ""), _attribute(attributes, "ind1", " "),
                    _attribute(attributes, "ind2", " ")]
            self._data_field = _DataField(*kept, [])
            self.fields.append(self._data_field)
        elif depth == self.depth + 2 and self._data_field and _is(name, "subfield"):
            kept = [_attribute(attributes, "code", "")]
            self._data_field.subfields.append((kept[0], self._read_text(depth)))
        else:
            return
        self._count(1, sum(map(len, kept)))

    def text(self, depth, text):
        if depth == self._text_depth and self._pieces is not None:
            text = text[:_MAX_FIELD_TEXT - self._kept]
            self._kept += len(text)
            self._pieces.append(text)
            self._count(0, len(text))

    def end(self, depth):
        if depth == self._text_depth:
            self._pieces = self._text_depth = None
        if depth == self.depth + 1:
            self._data_field = None

    def _read_text(self, depth):
        self._pieces, self._text_depth, self._kept = [], depth, 0
        return self._pieces

    def _count(self, parts, characters):
        self._parts += parts
        self._characters += characters
        if self._parts > _MAX_RECORD_PARTS:
            self._reject(f"record too large: more than {_MAX_RECORD_PARTS:,} fields and subfields")
        elif self._characters > _MAX_RECORD_TEXT:
            self._reject(f"record too large: more than {_MAX_RECORD_TEXT:,} characters of text")

    def _reject(self, reason):
        self.reason = reason
        self.fields, self._data_field, self._pieces = [], None, None


def _attribute(attributes, name, default):
    # Tags, indicators and codes repeat: one string for each value, not one for each field.
    return sys.intern(attributes.get(name, default))


def _xml_record(fields):
    record = Record()
    for field in fields:
        if isinstance(field, _ControlField):
            record.add_field(Field(field.tag, data="".join(field.pieces)))
        else:
            record.add_field(Field(field.tag, Indicators(field.ind1, field.ind2),
                                   [Subfield(code, "".join(pieces)) for code, pieces in field.subfields]))
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
    return _Statement(*(clean_subfield(" ".join(field.get_subfields(*codes)))
                        for codes in (("a", "n", "p"), ("b",), ("c",))))


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
    authors = {}  # by name and role: a list searched for each would cost the square of their number
    for default_role, tags in (("author", ("100", "110", "111")), ("contributor", ("700", "710", "711"))):
        for field in record.get_fields(*tags):
            # A corporate body's subordinate units ($b) are part of its name; a person's $b is a numeration.
            codes = ("a", "b") if field.tag in ("110", "710") else ("a",)
            name = clean_subfield(_DATES_AT_END.sub("", clean_subfield(" ".join(field.get_subfields(*codes)))))
            name = _cut(name, "name")
            if not name:
                continue
            relators = [clean_subfield(value).rsplit("/", 1)[-1].lower() for value in field.get_subfields("4", "e")]
            roles = [_ROLES[relator] for relator in relators if relator in _ROLES]
            if not roles:
                # Relators outside the catalogue's roles (composer, photographer, ...) credit a contributor.
                roles = ["contributor"] if relators else [default_role]
            for role in roles:
                authors.setdefault((name, role), {"name": name, "role": role})
    return list(authors.values())


def _publication_fields(record):
    """264 with second indicator 1 (publication), else the older 260."""
    return [field for field in record.get_fields("264") if field.indicator2 == "1"] + record.get_fields("260")


def _publisher(record):
    return next((name for field in _publication_fields(record)
                 for name in map(clean_subfield, field.get_subfields("b")) if name), None)


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
    subjects = {}  # a dict keeps the first of each in order, found in constant time
    for field in record.get_fields(*_SUBJECT_TAGS):
        if not field.get("a"):
            continue
        parts = [clean_subfield(value) for value in field.get_subfields("a", "v", "x", "y", "z")]
        heading = "--".join(part for part in parts if part)
        if heading:
            subjects.setdefault(heading)
    return list(subjects)


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


def clean_subfield(text):
    """``text`` without the ISBD punctuation that ends a MARC subfield (" /", " :", " ;", " =", ",", "."), in
    time proportional to its length."""
    text = _without_separators_at_end(text.strip())
    if text.endswith(".") and not _MEANINGFUL_PERIOD.search(text):
        text = _without_separators_at_end(text[:-1])
    return text


def _without_separators_at_end(text):
    return text[:len(text) - _SEPARATORS.match(text[::-1]).end()]


def _cut(text, kind):
    return text[:_LIMITS[kind]] if text else None
