"""Reading the Aozora Bunko index shipped in data/."""
import io

from services.catalog.aozora import open_aozora_index, read_aozora_works
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
