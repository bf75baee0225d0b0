"""Bulk imports over HTTP and from the operators' command line."""
import gzip
import json
import subprocess
import sys
from pathlib import Path

import requests

from services.catalog.aozora import AOZORA_INDEX
from support import unique

REPO = Path(__file__).resolve().parents[2]


def aozora_sample(rows=300):
    """The head of the shipped Aozora index (with its header), as bytes."""
    lines = gzip.decompress(AOZORA_INDEX.read_bytes()).decode("utf-8-sig").splitlines(keepends=True)
    return "".join(lines[:rows + 1]).encode("utf-8")


def post_import(staff, body, file_format):
    return staff.post(f"{staff.base_url}/api/v1/works/import", params={"format": file_format}, data=body,
                      headers={"Content-Type": "application/octet-stream"}, timeout=120)


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
        cwd=REPO, env={"AMQP_URI": system.amqp_uri, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["added"] + summary["updated"] > 30 and summary["rejected"] == 0
    assert "records/s" in result.stderr
    hits = requests.get(f"{system.url}/api/v1/search", params={"q": tag}, timeout=10).json()["items"]
    assert [hit["title"] for hit in hits] == [f"駅伝馬車{tag}"]
