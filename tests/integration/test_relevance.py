"""Relevance people expect, over the demo catalogue (the whole Aozora Bunko index, in a tenant of its own): a
query that is a person's name or its reading ranks that person's own works first, before works about them; a
title asked for in full comes first; within a match class, the more often borrowed first. On SQLite and
PostgreSQL, through the catalogue's search."""
import pytest

from services.catalog.aozora import open_aozora_index, read_aozora_works

from support import in_database

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


@pytest.fixture
def borrowed(system):
    """Gives works of the demo tenant a count of loans, as check-outs would (test_search.py lends for real),
    and takes it back afterwards: the databases outlive the test."""
    counted = []

    def lend(work_id, times):
        in_database(system, "catalog", "INSERT INTO loan_counts (work_id, loans) VALUES (:work, :times)",
                    work=work_id, times=times)
        counted.append(work_id)
    yield lend
    for work_id in counted:
        in_database(system, "catalog", "DELETE FROM loan_counts WHERE work_id = :work", work=work_id)


def test_within_a_match_class_the_more_often_borrowed_comes_first(system, search, borrowed):
    def ranked(query, count, page=1):
        with system.rpc(tenant=TENANT) as rpc:
            return [(work["id"], work["title"], [author["name"] for author in work["authors"]])
                    for work in rpc.catalog.search({"q": query, "per_page": count, "page": page})["items"]]

    own = ranked("夏目漱石", 3)  # his own works: one match class, shorter titles first until one is borrowed
    borrowed(own[2][0], 3)
    borrowed(own[1][0], 1)
    assert [work_id for work_id, _title, _authors in ranked("夏目漱石", 3)] == [own[2][0], own[1][0], own[0][0]]
    # Borrowed most of all, a work about him still comes after every one of his own (another match class).
    about = next(work for work in ranked("夏目漱石論", 5) if work[1] == "夏目漱石論")
    borrowed(about[0], 50)
    found = ranked("夏目漱石", 100) + ranked("夏目漱石", 100, page=2)
    position = [work_id for work_id, _title, _authors in found].index(about[0])
    assert position > 0 and all("夏目 漱石" in authors for _id, _title, authors in found[:position])
