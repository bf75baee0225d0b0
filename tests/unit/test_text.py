"""Folding, readings and grams: the text rules that make search Japanese-aware."""
import pytest

from services.catalog.text import fold, grams, query_grams, reading, words


@pytest.mark.parametrize("raw, folded", [
    ("ＡＢＣ", "abc"), ("ｶﾞﾗｽ", "がらす"), ("ネコ", "ねこ"), ("夏目 漱石", "夏目漱石"), ("夏目　漱石", "夏目漱石"),
    ("ベートーヴェン", "べーとーゔぇん"), ("ｺﾝﾋﾟｭｰﾀ", "こんぴゅーた"), ("Ｃａｆé", "café"), ("グリム・兄弟", "ぐりむ兄弟"), ("夏目, 漱石", "夏目漱石"), ("夏目、漱石", "夏目漱石"),
    ("", ""), (None, ""),
])
def test_fold(raw, folded):
    assert fold(raw) == folded


def test_words_split_on_any_space_and_drop_empty_ones():
    assert words(" 夏目　こころ  ＡＢＣ ") == ["夏目", "こころ", "abc"]
    assert words("　 ") == []


@pytest.mark.parametrize("text, expected", [("夏目 漱石", "なつめそうせき"), ("吾輩は猫である", "わがはいはねこである"),
                                            ("坊っちゃん", "ぼっちゃん"), ("羅生門", "らしょうもん"), ("", "")])
def test_readings_come_from_a_dictionary(text, expected):
    assert reading(text) == expected


def test_a_text_is_found_by_every_piece_of_it():
    indexed = grams(fold("吾輩は猫である"))
    for piece in ("吾輩", "猫で", "ある", "輩は猫", *"吾輩は猫である"):
        assert set(query_grams(piece)) <= indexed
    for absent in ("犬", "猫だ"):
        assert not set(query_grams(absent)) <= indexed
