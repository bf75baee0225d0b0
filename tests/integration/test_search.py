"""Japanese-aware catalogue search, the way residents use an OPAC, on SQLite and PostgreSQL.

The catalogue here is a tenant of its own, so that exact expectations do not meet other tests' works; one
test goes through the gateway, the rest ask the catalogue service as the gateway does."""
import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from services.catalog.models import Tenant
from services.catalog.search import Cataloguer, search as search_catalogue

from support import add_copy, check_in, check_out, register_patron, unique, wait_until

CATALOGUE = [
    {"title": "吾輩は猫である", "authors": [{"name": "夏目 漱石"}], "publisher": "岩波書店", "isbn": "4-00-310101-4",
     "ndc": "913.6", "published_year": 1905},
    {"title": "こころ", "authors": [{"name": "夏目 漱石"}], "publisher": "岩波書店", "isbn": "978-4-00-310112-4",
     "ndc": "913.6", "published_year": 1914},
    {"title": "こころの旅", "authors": [{"name": "試験 花子"}], "publisher": "試験書房", "ndc": "914.6",
     "published_year": 2001},
    {"title": "わたしのこころ", "authors": [{"name": "試験 次郎"}], "publisher": "試験書房", "ndc": "914.6",
     "published_year": 1998},
    {"title": "別の本", "authors": [{"name": "小林 こころ"}], "publisher": "試験書房", "ndc": "289.1",
     "published_year": 1989},
    {"title": "ABC殺人事件", "authors": [{"name": "クリスティ アガサ"}, {"name": "堀 大学", "role": "translator"}],
     "publisher": "早川書房", "ndc": "933.7"},
    {"title": "ガラスの靴", "authors": [{"name": "安岡 章太郎"}], "publisher": "講談社", "ndc": "913.6"},
    {"title": "ネコの話", "title_reading": "ネコノハナシ", "authors": [{"name": "試験 三郎"}], "publisher": "試験書房"},
    {"title": "100%の恋_そして\\", "authors": [{"name": "試験 四郎"}], "publisher": "試験書房"},
]


TENANT = "searchcity"


@pytest.fixture(scope="module")
def catalogue(system):
    tag = unique("s")
    with system.rpc(tenant=TENANT) as rpc:
        rpc.catalog.ensure_tenant({"code": TENANT, "name": "検索市"})
        if not rpc.catalog.list_libraries():
            for code, name in (("main", "検索市立図書館"), ("east", "検索市立図書館 東分館")):
                rpc.catalog.add_library({"code": code, "name": name, "kind": "main" if code == "main" else "branch"})
        result = rpc.catalog.import_works([dict(work, source_id=f"{tag}:{n}") for n, work in enumerate(CATALOGUE)])
        assert result["rejected"] == 0, result
        ids = dict(zip((work["title"] for work in CATALOGUE), result["work_ids"]))
        rpc.catalog.add_items([{"barcode": f"{tag}-{n}", "work_id": work_id, "library": "main" if n % 2 else "east"}
                               for n, work_id in enumerate(ids.values())])
    return ids


def search(system, **params):
    with system.rpc(tenant=TENANT) as rpc:
        return rpc.catalog.search({key: str(value) for key, value in params.items()})


def titles(system, **params):
    return [hit["title"] for hit in search(system, per_page=100, **params)["items"]]


@pytest.mark.parametrize("query, expected", [
    ("ＡＢＣ", "ABC殺人事件"),          # full-width Latin = ASCII
    ("abc", "ABC殺人事件"),             # case-insensitive
    ("ｶﾞﾗｽ", "ガラスの靴"),             # half-width katakana = full-width
    ("がらす", "ガラスの靴"),            # hiragana = katakana
    ("ねこ", "ネコの話"),
    ("猫", "吾輩は猫である"),            # one character
    ("わがはい", "吾輩は猫である"),       # a generated reading of the title
    ("ねこのはなし", "ネコの話"),         # the record's own reading
    ("なつめそうせき", "こころ"),         # an author's generated reading
    ("ナツメ", "吾輩は猫である"),
    ("夏目漱石", "こころ"),              # a name written without its space
    ("夏目", "こころ"),                 # two characters
    ("夏目 こころ", "こころ"),           # several words: all must match
    ("夏目　こころ", "こころ"),           # ... with a full-width space
    ("堀 大学", "ABC殺人事件"),          # translators are found too
    ("100%", "100%の恋_そして\\"),
    ("早川", "ABC殺人事件"),             # the publisher
])
def test_japanese_aware_matching(system, catalogue, query, expected):
    assert expected in titles(system, q=query)


def test_words_must_all_match(system, catalogue):
    assert titles(system, q="夏目 こころ") == ["こころ"]
    assert titles(system, q="夏目 ガラス") == []
    # Each word may match in any field: three words (every choice of fields spelled out on PostgreSQL), and
    # four (beyond that, one condition per word).
    assert titles(system, q="夏目 こころ 岩波") == ["こころ"]
    assert titles(system, q="岩波 漱石 こころ 夏目") == ["こころ"]
    assert titles(system, q="岩波 漱石 こころ 早川") == []


def test_ranking_exact_then_prefix_then_substring_then_people(system, catalogue):
    assert titles(system, q="こころ") == ["こころ", "こころの旅", "わたしのこころ", "別の本"]


def test_field_search(system, catalogue):
    assert set(titles(system, author="夏目")) == {"吾輩は猫である", "こころ"}
    assert titles(system, author="こころ") == ["別の本"]
    assert titles(system, title="こころ") == ["こころ", "こころの旅", "わたしのこころ"]
    assert titles(system, publisher="早川") == ["ABC殺人事件"]
    assert titles(system, isbn="9784003101124") == ["こころ"]
    assert titles(system, isbn="4-00-310112-X") == ["こころ"]
    assert titles(system, isbn="4003101014") == ["吾輩は猫である"]
    assert set(titles(system, ndc="913")) == {"吾輩は猫である", "こころ", "ガラスの靴"}
    assert titles(system, ndc="913", q="ガラス") == ["ガラスの靴"]


def test_filters_by_library_and_availability(system, catalogue):
    everywhere = set(titles(system, q="試験"))
    at_main = set(titles(system, q="試験", library="main"))
    at_east = set(titles(system, q="試験", library="east"))
    assert at_main and at_east and at_main | at_east == everywhere and not at_main & at_east
    hit = search(system, q="こころの旅")["items"][0]
    assert hit["availability"] == [{"library": "east", "name": "検索市立図書館 東分館", "total": 1, "available": 1}]


def test_filters_by_ndc_main_class_and_years_of_publication(system, catalogue):
    assert titles(system, q="こころ", ndc_class=9) == ["こころ", "こころの旅", "わたしのこころ"]
    assert titles(system, q="こころ", ndc_class=2) == ["別の本"]
    assert titles(system, q="こころ", ndc_class=0) == []
    assert titles(system, q="こころ", year_from=1990) == ["こころの旅", "わたしのこころ"]
    assert titles(system, q="こころ", year_to=1914) == ["こころ"]
    assert titles(system, q="こころ", year_from=1989, year_to=1998) == ["わたしのこころ", "別の本"]
    assert titles(system, q="こころ", year_from=1998, year_to=1998, ndc_class=9) == ["わたしのこころ"]


def test_newest_puts_the_latest_year_first_and_works_without_a_year_last(system, catalogue):
    assert titles(system, q="こころ", sort="newest") == ["こころの旅", "わたしのこころ", "別の本", "こころ"]
    assert titles(system, q="試験", sort="newest")[-2:] == ["ネコの話", "100%の恋_そして\\"]  # no year: by relevance


def test_facets_count_the_matches_and_each_count_is_what_its_filter_finds(system, catalogue):
    found = search(system, q="こころ", facets="true")
    assert found["facets"] == {
        "libraries": [{"library": "east", "name": "検索市立図書館 東分館", "works": 2},
                      {"library": "main", "name": "検索市立図書館", "works": 2}],
        "ndc_classes": [{"ndc_class": "2", "works": 1}, {"ndc_class": "9", "works": 3}],
        "decades": [{"decade": 1910, "works": 1}, {"decade": 1980, "works": 1}, {"decade": 1990, "works": 1},
                    {"decade": 2000, "works": 1}],
        "available": 4,
    }
    for asked in ({"q": "こころ"}, {"q": "試験"}, {"q": "試験", "library": "main"}, {"q": "夏目", "ndc_class": "9"}):
        facets = search(system, **asked, facets="true")["facets"]
        narrowed = [({"library": entry["library"]}, entry["works"]) for entry in facets["libraries"]]
        narrowed += [({"ndc_class": entry["ndc_class"]}, entry["works"]) for entry in facets["ndc_classes"]]
        narrowed += [({"year_from": entry["decade"], "year_to": entry["decade"] + 9}, entry["works"])
                     for entry in facets["decades"]]
        narrowed.append(({"available": "true"}, facets["available"]))
        for extra, count in narrowed:
            assert search(system, **{**asked, **extra})["total"] == count, (asked, extra)


def test_facets_are_counted_only_when_asked(system, catalogue):
    plain, counted = search(system, q="こころ"), search(system, q="こころ", facets="true")
    assert "facets" not in plain and counted["facets"]["available"] == 4
    assert {key: value for key, value in counted.items() if key != "facets"} == plain


def test_the_facets_of_a_broad_query_count_what_was_ranked(small_cap):
    save, find = small_cap
    save([{"title": f"白い猫の本{n}", "ndc": "645.7", "published_year": 2000 + n} for n in range(6)])
    found = find("猫", facets=True)
    assert found.more and found.total == 3
    assert found.facets["ndc_classes"] == [{"ndc_class": "6", "works": 3}]
    assert sum(entry["works"] for entry in found.facets["decades"]) == 3


def test_the_more_often_borrowed_comes_first_by_popularity_and_within_a_match_class(system, staff):
    word = unique("人気")
    copies = [add_copy(staff, title=f"{word} 第{number}巻") for number in (1, 2, 3)]  # one match class
    patron = register_patron(staff)
    for (_work, copy), loans in zip(copies, (0, 1, 2)):
        for _loan in range(loans):
            assert check_out(staff, patron["card_number"], copy["barcode"]).status_code == 201
            assert check_in(staff, copy["barcode"]).status_code == 200

    def public_titles(**params):
        response = requests.get(f"{system.url}/api/v1/search", params={"q": word, **params}, timeout=10)
        assert response.status_code == 200, response.text
        return [hit["title"] for hit in response.json()["items"]]

    most_borrowed_first = [f"{word} 第{number}巻" for number in (3, 2, 1)]
    wait_until(lambda: public_titles(sort="popular") == most_borrowed_first, message="popularity counted")
    assert public_titles() == most_borrowed_first
    assert titles(system, q="こころ", sort="popular") == titles(system, q="こころ")  # nothing borrowed there


def test_a_copy_on_loan_leaves_the_available_now_filter(system, staff):
    patron = register_patron(staff)
    work, copy = add_copy(staff, title=unique("予備"))

    def public_titles(**params):
        response = requests.get(f"{system.url}/api/v1/search", params={"q": work["title"], **params}, timeout=10)
        assert response.status_code == 200, response.text
        return [hit["title"] for hit in response.json()["items"]]

    assert public_titles(available="true") == [work["title"]]
    assert check_out(staff, patron["card_number"], copy["barcode"]).status_code == 201
    wait_until(lambda: public_titles(available="true") == [], message="availability")
    assert public_titles() == [work["title"]]


def test_pages_are_stable_and_complete(system):
    tag = unique("頁")
    with system.rpc(tenant=TENANT) as rpc:
        rpc.catalog.import_works([{"title": f"{tag} 第{n}巻"} for n in range(7)])
    pages = [search(system, q=tag, per_page=3, page=page) for page in (1, 2, 3)]
    assert [page["total"] for page in pages] == [7, 7, 7]
    ids = [hit["id"] for page in pages for hit in page["items"]]
    assert len(ids) == len(set(ids)) == 7
    assert [hit["id"] for hit in search(system, q=tag, per_page=3, page=2)["items"]] == ids[3:6]


@pytest.fixture
def small_cap(system, monkeypatch):
    """A catalogue tenant of its own, searched in this process with RESULT_CAP 3, on the suite's database
    (on SQLite every gram counts as common, so the scan checks the postings work by work)."""
    monkeypatch.setattr("services.catalog.search.RESULT_CAP", 3)
    monkeypatch.setattr("services.catalog.search.COMMON_POSTINGS", 1)
    engine = create_engine(system.database_urls["catalog"])
    with Session(engine) as session:
        tenant = unique("cap")
        session.add(Tenant(code=tenant, name="上限市"))
        session.flush()
        yield lambda works: Cataloguer(session, tenant).save(works), \
            lambda q, **asked: search_catalogue(session, tenant, {"q": q, "page": 1, "per_page": 20, **asked})
        session.rollback()
    engine.dispose()


def test_words_are_intersected_whole_before_any_cap(small_cap):
    save, find = small_cap
    save([{"title": f"古代{n}"} for n in range(8)] + [{"title": f"古代の信仰{n}"} for n in range(3)])
    found = find("古代 信仰")
    assert (found.total, len(found.works), found.more) == (3, 3, False)


def test_a_broad_query_says_more_and_still_ranks_titles_that_are_or_start_with_the_word_first(small_cap):
    save, find = small_cap
    # Saved first, so that a scan meets them first (SQLite's does): more than the cap of 3 merely hold the word.
    save([{"title": f"本の{n}"} for n in range(6)] + [{"title": f"白いねこ{n}"} for n in range(6)]
         + [{"title": "の本"}, {"title": "の"}, {"title": "猫町", "title_reading": "ネコマチ"}])
    found = find("の")
    assert found.more and [work.title for work in found.works[:2]] == ["の", "の本"]
    assert found.total == len(found.works) < 8  # the cap left some of the others unread
    found = find("ねこ")
    assert found.more and found.works[0].title == "猫町" and found.total == len(found.works)  # its reading


def test_another_tenants_catalogue_is_invisible(system, catalogue):
    with system.rpc(tenant="othercity") as rpc:
        rpc.catalog.ensure_tenant({"code": "othercity", "name": "他市"})
        rpc.catalog.add_work({"title": "他市だけの本こころ"})
        assert rpc.catalog.search({"q": "こころ"})["total"] == 1
    assert "他市だけの本こころ" not in titles(system, q="こころ")
    public = requests.get(f"{system.url}/api/v1/search", params={"q": "他市だけ"}, timeout=10).json()
    assert public["total"] == 0


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "   "}, {"q": "　"}, {"q": "x" * 201}, {"ndc": "abc"},
                                    {"q": "x", "per_page": "1000"}, {"q": "x", "page": "0"},
                                    {"q": "x", "ndc_class": "91"}, {"q": "x", "ndc_class": "a"},
                                    {"q": "x", "year_from": "2000", "year_to": "1999"}, {"q": "x", "year_to": "昭和"},
                                    {"q": "x", "sort": "oldest"}, {"ndc_class": "9"}])
def test_searches_that_ask_nothing_or_too_much_are_400(system, params):
    response = requests.get(f"{system.url}/api/v1/search", params=params, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
