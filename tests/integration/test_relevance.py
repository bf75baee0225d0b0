"""Relevance people expect, over the demo catalogue (the whole Aozora Bunko index, in a tenant of its own): a
query that is a person's name or its reading ranks that person's own works first, before works about them; a
title asked for in full comes first. On SQLite and PostgreSQL, through the catalogue's search."""
import pytest

from services.catalog.aozora import open_aozora_index, read_aozora_works

TENANT = "relevancetown"
BATCH = 1000


@pytest.fixture(scope="module")
def search(system):
    with system.rpc(tenant=TENANT) as rpc:
        rpc.catalog.ensure_tenant({"code": TENANT, "name": "関連町"})
        if not rpc.catalog.search({"q": "夏目"})["total"]:  # the databases outlive the module's services
            works = read_aozora_works(open_aozora_index())
            for start in range(0, len(works), BATCH):
                rpc.catalog.import_works(works[start:start + BATCH])

    def first(query, count=5, page=1):
        """(title, [authors]) of the results on ``page`` of ``count``."""
        with system.rpc(tenant=TENANT) as rpc:
            found = rpc.catalog.search({"q": query, "per_page": count, "page": page})["items"]
        return [(work["title"], [author["name"] for author in work["authors"]]) for work in found]
    return first


@pytest.mark.parametrize("query", ["なつめそうせき", "夏目漱石", "夏目 漱石", "もりおうがい", "森鴎外"])
def test_a_persons_name_or_reading_ranks_their_own_works_first(search, query):
    named = {"なつめそうせき": "夏目 漱石", "夏目漱石": "夏目 漱石", "夏目 漱石": "夏目 漱石",
             "もりおうがい": "森 鴎外", "森鴎外": "森 鴎外"}[query]
    first = search(query, count=10)
    assert len(first) == 10 and all(named in authors for _title, authors in first), first


def test_a_work_about_a_person_comes_after_all_of_their_own(search):
    # 『夏目漱石論』 is 森鴎外's: its title starting with the name used to put it first for 「夏目漱石」.
    found = search("夏目漱石", count=100) + search("夏目漱石", count=100, page=2)
    about = [title for title, _authors in found].index("夏目漱石論")
    assert about > 0 and all("夏目 漱石" in authors for _title, authors in found[:about])
    assert "夏目 漱石" not in found[about][1]


@pytest.mark.parametrize(("query", "title"), [("こころ", "こころ"), ("吾輩は猫である", "吾輩は猫である"),
                                             ("はしれめろす", "走れメロス"), ("羅生門", "羅生門")])
def test_a_title_asked_for_in_full_comes_first(search, query, title):
    assert search(query)[0][0] == title
