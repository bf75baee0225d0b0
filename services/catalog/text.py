"""Japanese-aware text matching for the catalogue, the way Japanese OPACs behave.

Everything searchable is *folded* the same way at indexing and at query time: NFKC (ＡＢＣ = ABC, ｶﾞ = ガ),
lower-case Latin, katakana as hiragana (ネコ = ねこ), no spaces, middle dots or commas (夏目 漱石 = 夏目漱石).
Readings are generated with SudachiPy, a morphological analyser, and its core dictionary, so
「なつめそうせき」 finds 夏目漱石 even when a record carries no reading.

The index is a bigram inverted index: each folded text contributes its two-character grams and each of its
characters alone, encoded as integers. A query of two or more characters needs all its bigrams; a query of
one character needs that character's gram. Both are index look-ups on SQLite and PostgreSQL.
"""
import re
import unicodedata
from functools import lru_cache

_HIRAGANA = str.maketrans({chr(code): chr(code - 0x60) for code in range(0x30a1, 0x30f7)})  # ァ..ヶ -> ぁ..ゖ
# White space, 中黒 ・, the Latin middle dot and commas: "夏目, 漱石" (as MARC writes names) = 夏目漱石.
_DROPPED = re.compile(r"[\s\u30fb\u00b7,\u3001]+")
_CODE_BITS = 21  # every Unicode code point fits in 21 bits
_JAPANESE = re.compile(r"[\u3041-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")


def fold(text):
    """The form in which text is indexed and queried."""
    return _DROPPED.sub("", unicodedata.normalize("NFKC", text or "").lower().translate(_HIRAGANA))


def words(query):
    """A query's words (space or full-width space separates them), folded; empty words dropped."""
    return [word for word in (fold(part) for part in unicodedata.normalize("NFKC", query).split()) if word]


@lru_cache(maxsize=65536)
def reading(text):
    """The reading of ``text`` in hiragana, folded (names repeat across works, hence the cache)."""
    if not text:
        return ""
    # Latin letters, digits and symbols are read as written (not エービーシー for ABC).
    return fold("".join(
        morpheme.reading_form() if _JAPANESE.search(morpheme.surface()) else morpheme.surface()
        for morpheme in _analyser().tokenize(text)
    ))


@lru_cache(maxsize=1)
def _analyser():
    """SudachiPy's tokenizer, built on the first reading asked for: its dictionary takes tens of MB and a few
    tenths of a second, which only the catalogue's processes (indexing, searching) should pay, not every
    process that imports the catalogue's schemas."""
    from sudachipy import Dictionary, SplitMode

    # Mode C: the longest units (固有名詞 whole), whose dictionary readings are the most reliable.
    return Dictionary().tokenizer(mode=SplitMode.C)


def gram_code(first, second=None):
    """Two characters (or one alone) as one integer below 2**42."""
    return (ord(first) << _CODE_BITS) | (ord(second) if second else 0)


def grams(folded_text, tag=0):
    """The integer grams indexing ``folded_text``: each bigram and each character (as gram_code makes them,
    inlined: an import computes about a hundred per work), with ``tag`` (the field's, above the codes) set."""
    points = [tag | ord(char) << _CODE_BITS for char in folded_text]
    codes = set(points)
    codes.update(first | ord(second) for first, second in zip(points, folded_text[1:]))
    return codes


def query_grams(word):
    """The grams a text must hold to contain the folded query ``word`` (then checked against the text itself,
    since grams do not say that the pieces are adjacent)."""
    if len(word) == 1:
        return [gram_code(word)]
    return sorted({gram_code(a, b) for a, b in zip(word, word[1:])})
