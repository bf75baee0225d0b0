"""Hostile import files: the staff gateway keeps answering the desks while one is read, and each record
costs what an ISO 2709 record may cost."""
import socket
import time
from urllib.parse import urlsplit

import eventlet
import requests

from support import unique

COLLECTION = b'<?xml version="1.0" encoding="UTF-8"?><collection xmlns="http://www.loc.gov/MARC21/slim">'


def record(title, *extra):
    return (f'<record><datafield tag="245" ind1="1" ind2="0"><subfield code="a">{title}</subfield></datafield>'
            + "".join(extra) + "</record>").encode()


def hostile_marcxml(tag):
    """A title of 80,000 slashes (stripping them took 16 s of CPU), a record of 8 MB of empty fields and 8 MB of
    empty elements between records (they took 172 MiB), and one ordinary record."""
    return b"".join([
        COLLECTION,
        record(f"斜線{tag}" + "/" * 80_000 + "x"),
        record(f"空{tag}", '<datafield tag="500"/>' * 400_000),
        b"<x/>" * 2_000_000,
        record(f"普通の本{tag}"),
        b"</collection>",
    ])


def post_import(staff, body, file_format):
    return staff.post(f"{staff.base_url}/api/v1/works/import", params={"format": file_format}, data=body,
                      headers={"Content-Type": "application/octet-stream"}, timeout=120)


def test_health_answers_within_a_second_while_a_hostile_file_is_imported(staff, system):
    tag = unique("H")
    importing = eventlet.spawn(post_import, staff, hostile_marcxml(tag), "marcxml")
    waits = []
    try:
        while not importing.dead:
            started = time.monotonic()
            health = requests.get(f"{system.url}/health", timeout=1)  # a socket timeout: no wait is longer
            waits.append(time.monotonic() - started)
            assert health.status_code == 200, health.text
            eventlet.sleep(0.05)
    finally:
        response = importing.wait()
    assert len(waits) >= 3, waits  # the import was under way for all of them
    assert max(waits) < 1.0, waits
    assert response.status_code == 200, response.text
    summary = response.json()
    assert (summary["added"], summary["updated"], summary["rejected"]) == (2, 0, 1)
    assert summary["errors"] == [{"record": 2, "reason": "record too large: more than 10,000 fields and subfields"}]
    titles = [hit["title"] for hit in requests.get(f"{system.url}/api/v1/search", params={"q": tag},
                                                    timeout=10).json()["items"]]
    assert sorted(titles) == sorted([f"斜線{tag}", f"普通の本{tag}"])


def test_an_aozora_file_of_one_endless_row_is_one_reject(staff):
    header = "人物ID,著者名,作品ID,作品名,仮名遣い種別,翻訳者名等,入力者名,校正者名,状態,状態の開始日,底本名,出版社名,入力に使用した版,校正に使用した版\n"
    summary = post_import(staff, header.encode() + b"," * 8_000_000, "aozora-csv").json()
    assert (summary["added"], summary["rejected"]) == (0, 1)
    assert summary["errors"] == [
        {"record": 1, "reason": "not the Aozora Bunko index: a row longer than 10,000 characters"}]


def test_an_upload_declared_larger_than_the_limit_is_refused_before_it_is_read(staff, system):
    """SHIORI_MAX_IMPORT_BYTES (1 GiB): a Content-Length beyond it answers 413 at once, without a byte sent."""
    address = urlsplit(system.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(
            b"POST /api/v1/works/import?format=marcxml HTTP/1.1\r\nHost: shiori\r\nConnection: close\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\nAuthorization: %s\r\n\r\n"
            % ((1 << 30) + 1, staff.headers["Authorization"].encode()))
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"PAYLOAD_TOO_LARGE"' in answer
