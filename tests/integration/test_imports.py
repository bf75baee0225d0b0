"""Bulk imports over HTTP and from the operators' command line."""
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from services.catalog.aozora import AOZORA_INDEX
from support import unique

REPO = Path(__file__).resolve().parents[2]


def aozora_sample(rows=300):
    """The head of the shipped Aozora index (with its header), as bytes."""
    lines = gzip.decompress(AOZORA_INDEX.read_bytes()).decode("utf-8-sig").splitlines(keepends=True)
    return "".join(lines[:rows + 1]).encode("utf-8")


def post_import(staff, body, file_format, idempotency_key=None):
    key = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return staff.post(f"{staff.base_url}/api/v1/works/import", params={"format": file_format}, data=body,
                      headers={"Content-Type": "application/octet-stream", **key}, timeout=120)


def test_aozora_import_adds_then_updates_keeping_every_person(staff, system):
    sample = aozora_sample()
    first = post_import(staff, sample, "aozora-csv")
    assert first.status_code == 200, first.text
    summary = first.json()
    assert summary["rejected"] == 0 and summary["added"] + summary["updated"] > 250
    again = post_import(staff, sample, "aozora-csv").json()
    assert (again["added"], again["updated"], again["rejected"]) == (0, summary["added"] + summary["updated"], 0)

    hit = requests.get(f"{system.url}/api/v1/search", params={"q": "駅伝馬車"}, timeout=10).json()["items"][0]
    assert {(author["name"], author["role"]) for author in hit["authors"]} == {
        ("アーヴィング ワシントン", "author"), ("高垣 松雄", "translator")}


def test_import_needs_a_known_format_and_reports_a_broken_file(staff):
    response = post_import(staff, b"x", "excel")
    assert response.status_code == 400 and "format" in response.json()["error"]["details"]
    assert post_import(staff, b"x", "").status_code == 400
    broken = post_import(staff, "人物ID,著者名\n".encode("shift_jis"), "aozora-csv").json()
    assert broken["added"] == 0 and broken["rejected"] == 1
    assert "encoding" in broken["errors"][0]["reason"]


def test_import_requires_a_staff_token(system):
    response = requests.post(f"{system.url}/api/v1/works/import?format=aozora-csv", data=aozora_sample(5), timeout=10)
    assert response.status_code == 401


def test_the_command_line_import_shows_progress_and_a_summary(system, tmp_path):
    tag = unique("cli")
    sample = aozora_sample(40).decode("utf-8").replace("駅伝馬車", f"駅伝馬車{tag}")
    path = tmp_path / "index.csv"
    path.write_text(sample, encoding="utf-8-sig")
    result = subprocess.run(
        [sys.executable, "-m", "shiori", "import", "--format", "aozora-csv", "--tenant", "testcity", str(path)],
        cwd=REPO, env=system.operator_environ, capture_output=True, text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["added"] + summary["updated"] > 30 and summary["rejected"] == 0
    assert "records/s" in result.stderr
    hits = requests.get(f"{system.url}/api/v1/search", params={"q": tag}, timeout=10).json()["items"]
    assert [hit["title"] for hit in hits] == [f"駅伝馬車{tag}"]


def marc_records(tag):
    """Three records as a library system would export them: two good, one without a title."""
    from pymarc import Field, Indicators, Record, Subfield

    def field(code, *subfields, ind="  "):
        return Field(code, Indicators(*ind), [Subfield(c, v) for c, v in subfields])

    def record(*fields):
        built = Record(leader="00000nam a2200000 i 4500", to_unicode=True)
        built.add_field(*fields)
        return built

    return [
        record(Field("001", data=f"{tag}-1"), Field("003", data="JTNDL"),
               field("020", ("a", "4-00-310112-X")), field("084", ("a", "913.6"), ("2", "njb/09")),
               field("100", ("a", "夏目, 漱石,"), ("d", "1867-1916"), ind="1 "),
               field("245", ("6", "880-01"), ("a", f"心{tag} /"), ("c", "夏目漱石 著"), ind="10"),
               field("264", ("b", "岩波書店,"), ("c", "1989."), ind=" 1"),
               field("880", ("6", "245-01/$1"), ("a", "ココロ /"), ind="10")),
        record(Field("001", data=f"{tag}-2"), field("245", ("a", "")), field("100", ("a", "名無し"))),
        record(Field("001", data=f"{tag}-3"), field("245", ("a", f"銀河鉄道の夜{tag}"), ind="10"),
               field("100", ("a", "宮沢, 賢治"), ind="1 "), field("260", ("b", "新潮社"), ("c", "c1989"))),
    ]


def test_marc21_and_marcxml_imports_load_good_records_and_explain_rejects(staff, system):
    from pymarc import record_to_xml

    tag = unique("M")
    records = marc_records(tag)
    iso = b"".join(record.as_marc() for record in records)
    summary = post_import(staff, iso, "marc21").json()
    assert (summary["added"], summary["updated"], summary["rejected"]) == (2, 0, 1)
    assert summary["errors"] == [{"record": 2, "reason": "no title (245 $a)"}]

    xml = (b'<?xml version="1.0" encoding="UTF-8"?><collection xmlns="http://www.loc.gov/MARC21/slim">'
           + b"".join(record_to_xml(record, namespace=False) for record in records) + b"</collection>")
    again = post_import(staff, xml, "marcxml").json()
    assert (again["added"], again["updated"], again["rejected"]) == (0, 2, 1)

    def hits(**params):
        return requests.get(f"{system.url}/api/v1/search", params=params, timeout=10).json()["items"]

    kokoro = hits(q=f"こころ {tag}")  # by the record's own reading, and the tag in the title
    assert [hit["title"] for hit in kokoro] == [f"心{tag}"]
    assert kokoro[0]["isbn"] == "9784003101124" and kokoro[0]["ndc"] == "913.6"
    assert kokoro[0]["publisher"] == "岩波書店" and kokoro[0]["published_year"] == 1989
    assert [hit["title"] for hit in hits(q=f"みやざわけんじ {tag}")] == [f"銀河鉄道の夜{tag}"]
    assert [hit["title"] for hit in hits(author="夏目漱石", q=tag)] == [f"心{tag}"]


def test_an_import_sent_again_with_its_key_answers_its_first_counts(staff):
    """A client that lost the answer of an upload sends it again under its key: the same summary, from the
    batches' kept answers; sent without the key, the same file updates what the first added."""
    iso = b"".join(record.as_marc() for record in marc_records(unique("K")))
    key = unique("import-")
    first = post_import(staff, iso, "marc21", key).json()
    assert (first["added"], first["updated"], first["rejected"]) == (2, 0, 1)
    assert post_import(staff, iso, "marc21", key).json() == first
    assert post_import(staff, iso, "marc21").json()["updated"] == 2


def test_imports_running_at_once_share_the_people_they_both_create(system):
    """Two batches naming the same new authors at the same moment: both load, and each author exists once."""
    import eventlet

    authors = [unique("同時 作者") for _ in range(40)]

    def batch(part):
        with system.rpc() as rpc:
            return rpc.catalog.import_works([
                {"title": unique(f"同時の本{part} "), "authors": [{"name": authors[n % 40]}], "publisher": authors[0]}
                for n in range(120)])

    results = list(eventlet.GreenPool().imap(batch, range(3)))
    assert [(result["added"], result["rejected"]) for result in results] == [(120, 0)] * 3
    with system.rpc() as rpc:
        found = rpc.catalog.search({"author": authors[7], "per_page": "100"})
    assert found["total"] == 9 and {hit["authors"][0]["name"] for hit in found["items"]} == {authors[7]}


def test_a_second_catalogue_process_takes_its_share_of_an_import(system):
    """Catalogue processes (SHIORI_REPLICAS, PostgreSQL only) take calls from the same queue: the batches an
    import keeps in flight are saved by both at once, and every record lands once, with its people once."""
    if system.database_urls["catalog"].startswith("sqlite"):
        pytest.skip("catalogue replicas need PostgreSQL (SQLite has one writer)")
    from nameko.testing.services import entrypoint_waiter

    second = system.another("catalog")
    authors = [unique("分担 作者") for _ in range(7)]
    batches = [[{"title": unique(f"分担の本{part} "), "authors": [{"name": authors[n % 7]}]} for n in range(60)]
               for part in range(4)]
    try:
        containers = [*system.runners["catalog"].containers, *second.containers]
        with system.rpc() as rpc:
            with entrypoint_waiter(containers[0], "import_works"), entrypoint_waiter(containers[1], "import_works"):
                replies = [rpc.catalog.import_works.call_async(batch) for batch in batches]
                results = [reply.result() for reply in replies]
            found = rpc.catalog.search({"author": authors[3], "per_page": "100"})
    finally:
        second.stop()
    assert [(result["added"], result["rejected"]) for result in results] == [(60, 0)] * 4
    assert len({work_id for result in results for work_id in result["work_ids"]}) == 240
    assert found["total"] == 4 * 9 and {hit["authors"][0]["name"] for hit in found["items"]} == {authors[3]}
