"""Reading the Aozora Bunko index shipped in data/."""
import io
import tracemalloc

from services.catalog.aozora import open_aozora_index, read_aozora, read_aozora_works
from services.catalog.marc import Imported
from services.catalog.schemas import WorkSchema

HEADER = "人物ID,著者名,作品ID,作品名,仮名遣い種別,翻訳者名等,入力者名,校正者名,状態,状態の開始日,底本名,出版社名,入力に使用した版,校正に使用した版\n"
SAMPLE = HEADER + (
    '001,"ロラン ロマン",100,"ベートーヴェンの生涯",新字新仮名,"片山 敏彦","a","b",公開,2010-01-01,"本","岩波文庫、岩波書店","2010（平成22）年1月1日第1刷",""\n'
    '002,"片山 敏彦",100,"ベートーヴェンの生涯",新字新仮名,"片山 敏彦","a","b",公開,2010-01-01,"本","岩波文庫、岩波書店","2010（平成22）年1月1日第1刷",""\n'
    '003,"夏目 漱石",200,"坊っちゃん",新字新仮名,"","a","b",公開,2010-01-01,"本","筑摩書房","","1992（平成4）年1月1日"\n'
)


def test_one_record_per_work_with_every_person_once_in_their_role():
    works = read_aozora_works(io.StringIO(SAMPLE))
    assert works == [
        {"source_id": "aozora:100", "title": "ベートーヴェンの生涯", "publisher": "岩波文庫、岩波書店",
         "published_year": 2010,
         "authors": [{"name": "ロラン ロマン", "role": "author"}, {"name": "片山 敏彦", "role": "translator"}]},
        {"source_id": "aozora:200", "title": "坊っちゃん", "publisher": "筑摩書房", "published_year": 1992,
         "authors": [{"name": "夏目 漱石", "role": "author"}]},
    ]


def test_the_shipped_index_loads_whole_and_valid():
    works = read_aozora_works(open_aozora_index())
    assert len(works) == 14283  # distinct 作品ID in the index
    assert len({work["source_id"] for work in works}) == len(works)
    schema = WorkSchema()
    assert [work for work in works if schema.validate(work)] == []
    assert any(work["title"] == "坊っちゃん" and work["authors"][0]["name"] == "夏目 漱石" for work in works)


def row(person, name, work, title, translators=""):
    return f'{person},"{name}",{work},"{title}",新字新仮名,"{translators}","a","b",公開,2010-01-01,"本","社","",""\n'


def test_a_work_listed_again_after_other_works_keeps_its_place_and_gains_its_people():
    index = HEADER + row(1, "ロラン ロマン", 100, "ベートーヴェンの生涯") + row(2, "夏目 漱石", 200, "坊っちゃん") + row(
        3, "片山 敏彦", 100, "ベートーヴェンの生涯", "片山 敏彦")
    works = read_aozora_works(io.StringIO(index))
    assert [work["source_id"] for work in works] == ["aozora:100", "aozora:200"]
    assert works[0]["authors"] == [{"name": "ロラン ロマン", "role": "author"}, {"name": "片山 敏彦", "role": "translator"}]


def test_a_work_keeps_its_first_fifty_people_as_the_catalogue_does():
    index = HEADER + "".join(row(person, f"訳者{person}", 100, "百人訳") for person in range(60))
    [work] = read_aozora_works(io.StringIO(index))
    assert [author["name"] for author in work["authors"]] == [f"訳者{person}" for person in range(50)]


def test_memory_stays_bounded_over_a_large_index():
    """The works are gathered in a temporary database (whose cache SQLite holds to 2 MiB, outside Python's
    allocator), not in memory: 80,000 works in 8 MB."""
    stream = io.BytesIO((HEADER + "".join(row(n, f"著者{n}", n, f"作品{n}") for n in range(80_000))).encode())
    tracemalloc.start()
    try:
        works = sum(1 for imported in read_aozora(stream) if imported.work)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert works == 80_000
    assert peak < 1 << 20, peak


def test_a_row_longer_than_any_of_the_index_ends_the_file_with_one_reject():
    """A CSV reader holds a row whole: 8 MB of commas were 8 million fields, and an unclosed quote makes the rest
    of a file one field."""
    reason = "not the Aozora Bunko index: a row longer than 10,000 characters"
    endless = io.BytesIO(HEADER.encode() + b"," * 8_000_000)
    unclosed = io.BytesIO((HEADER + row(1, "夏目 漱石", 200, "坊っちゃん") + '2,"夏目\n' + "漱石\n" * 5_000).encode())
    tracemalloc.start()
    try:
        results = [list(read_aozora(endless)), list(read_aozora(unclosed))]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert results == [[Imported(0, None, reason)]] * 2
    assert peak < 1 << 20, peak
