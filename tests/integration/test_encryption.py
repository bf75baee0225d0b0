"""Personal data encrypted at rest (PRIVACY.md 10): a copy of the patrons database reveals no resident;
deleting a patron destroys their data key; master keys rotate while the service keeps serving."""
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.patrons.vault import KeyRing, new_master_key_spec
from support import register_patron, unique

REPO = Path(__file__).resolve().parents[2]


def resident(staff):
    marker = unique("")
    patron = register_patron(staff, name=f"暗号 花子{marker}", name_kana="アンゴウ ハナコ",
                             address=f"岐阜県海津市秘密町{marker}", alt_address=f"愛知県名古屋市実家町{marker}",
                             phone="0999-12-3456", email=f"h{marker.lower()}@example.jp", birth_date="1979-03-21")
    secrets = [patron[field] for field in ("name", "address", "alt_address", "email", "card_number")]
    return patron, secrets + ["0999-12-3456", "1979-03-21"]


def rows(url, query):
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(query))]
    finally:
        engine.dispose()


def every_value(url):
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tables = [row[0] for row in connection.execute(text(
                "SELECT name FROM sqlite_master WHERE type = 'table'" if url.startswith("sqlite") else
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))]
            return [value for table in tables for row in connection.execute(text(f'SELECT * FROM "{table}"'))
                    for value in row]
    finally:
        engine.dispose()


@pytest.mark.privacy(10)
def test_a_copy_of_the_databases_reveals_no_resident(system, staff):
    patron, secrets = resident(staff)
    assert staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10).json()["name"] == patron["name"]
    for name in ("patrons", "patron_keys"):
        url = system.database_urls[name]
        stored = " ".join(str(value) for value in every_value(url))
        assert not [secret for secret in secrets if secret in stored], name
        if make_url(url).get_backend_name() == "sqlite":
            path = Path(make_url(url).database)
            for file in path.parent.glob(path.name + "*"):
                raw = file.read_bytes()
                assert not [secret for secret in secrets if secret.encode() in raw], file


@pytest.mark.privacy(10)
def test_look_ups_by_card_and_phone_go_through_keyed_hashes(staff):
    patron, _secrets = resident(staff)
    by_card = staff.get(f"{staff.base_url}/api/v1/patrons", params={"card_number": patron["card_number"]}, timeout=10)
    by_phone = staff.get(f"{staff.base_url}/api/v1/patrons", params={"phone": "099912-3456"}, timeout=10)
    assert patron["id"] in [p["id"] for p in by_card.json()["items"]]
    assert patron["id"] in [p["id"] for p in by_phone.json()["items"]]
    neither = staff.get(f"{staff.base_url}/api/v1/patrons", timeout=10)
    assert neither.status_code == 400


@pytest.mark.privacy(6, 10)
def test_deleting_a_patron_destroys_their_data_key(system, staff):
    patron, _secrets = resident(staff)
    (key_ref, sealed_name), = rows(system.database_urls["patrons"],
                                   f"SELECT key_ref, name_sealed FROM patrons WHERE id = {patron['id']}")
    assert rows(system.database_urls["patron_keys"], f"SELECT count(*) FROM data_keys WHERE key_ref = '{key_ref}'") == [(1,)]
    assert staff.delete(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10).status_code == 204
    # An earlier copy of the row (a backup) is now ciphertext that no key in the system opens.
    assert rows(system.database_urls["patron_keys"], f"SELECT count(*) FROM data_keys WHERE key_ref = '{key_ref}'") == [(0,)]
    assert sealed_name and patron["name"].encode() not in bytes(sealed_name)


def test_master_keys_rotate_while_the_service_keeps_serving(system, staff):
    patrons = [resident(staff)[0] for _ in range(3)]
    old = system.keys["SHIORI_PATRONS_MASTER_KEYS"]
    new = new_master_key_spec(unique("k").lower()[:10])
    system.keys["SHIORI_PATRONS_MASTER_KEYS"] = f"{new},{old}"
    system.stop("patrons")
    system.start("patrons")
    for patron in patrons:  # readable under the old key, with the new one in front
        assert staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10).status_code == 200
    result = subprocess.run([sys.executable, "-m", "shiori", "rewrap-data-keys"], cwd=REPO, timeout=120,
                            env={**system.operator_environ, "SHIORI_TENANT": "testcity"},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "0 remaining" in result.stderr
    new_id = KeyRing(new).current_id
    assert rows(system.database_urls["patron_keys"],
                f"SELECT count(*) FROM data_keys WHERE master_key_id <> '{new_id}'") == [(0,)]
    system.keys["SHIORI_PATRONS_MASTER_KEYS"] = new  # the old key leaves the configuration
    system.stop("patrons")
    system.start("patrons")
    for patron in patrons:
        assert staff.get(f"{staff.base_url}/api/v1/patrons/{patron['id']}", timeout=10).json()["name"] == patron["name"]
