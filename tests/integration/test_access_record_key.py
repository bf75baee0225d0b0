"""The access record's chain is keyed (HMAC-SHA256 under SHIORI_ACCESS_RECORD_KEY, which only the patrons
service holds): whoever can write the database but lacks the key cannot rewrite an entry and seal the chain
again so that verify-access-record passes."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from services.patrons.access_record import AccessEntry, ChainHead, sealed_content
from shiori.commands.calls import wait_for_libraries
from support import patron_fields

REPO = Path(__file__).resolve().parents[2]
TENANT = "keytown"


def verify(system):
    result = subprocess.run([sys.executable, "-m", "shiori", "verify-access-record", "--tenant", TENANT],
                            cwd=REPO, env=system.operator_environ, capture_output=True, text=True, timeout=120)
    return result.returncode, json.loads(result.stdout)


def reseal_without_the_key(system, changed_seq, actor):
    """What an attacker with the database (and the source code) but not the key can do: change an entry,
    then recompute every seal from it to the chain's head with plain SHA-256."""
    engine = create_engine(system.database_urls["patrons"])
    try:
        with Session(engine) as session:
            entries = session.scalars(select(AccessEntry).where(AccessEntry.tenant == TENANT)
                                      .order_by(AccessEntry.seq)).all()
            previous = entries[changed_seq - 2].hash
            for entry in entries[changed_seq - 1:]:
                if entry.seq == changed_seq:
                    entry.actor = actor
                entry.previous_hash = previous
                entry.hash = previous = hashlib.sha256(sealed_content(entry)).hexdigest()
            session.get(ChainHead, TENANT).hash = previous
            session.commit()
    finally:
        engine.dispose()


@pytest.mark.privacy(8)
def test_an_entry_rewritten_and_resealed_without_the_key_is_detected(system):
    with system.rpc(tenant=TENANT) as rpc:
        rpc.catalog.ensure_tenant({"code": TENANT, "name": "鍵町"})
        rpc.catalog.add_library({"code": "main", "name": "鍵町図書館", "kind": "main"})
        wait_for_libraries(rpc, ["main"])
        patron = rpc.patrons.register(patron_fields())
        for _ in range(2):
            rpc.patrons.get_patron(patron["id"])
    assert verify(system) == (0, {"entries": 3, "intact": True, "first_broken": None})

    reseal_without_the_key(system, changed_seq=2, actor="staff:999")
    assert verify(system) == (1, {"entries": 1, "intact": False, "first_broken": 2})
