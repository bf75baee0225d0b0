"""The system as a newcomer runs it: ``python -m shiori run`` (what ``make run`` calls) starts every service
as its own process with SQLite under the data folder, loads the demo data, serves HTTP; SIGTERM stops every
process it started; a second run on the same folder finds everything it committed."""
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import free_port
from support import check_in, check_out, patron_fields

REPO = Path(__file__).resolve().parents[2]
READY = re.compile(r"Shiori is running: (http://\S+)")


class RunCommand:
    def __init__(self, environ):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shiori", "run"], cwd=REPO, env=environ, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self):
        return "\n".join(self.lines)

    def wait_until_ready(self, timeout=240):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = READY.search(self.output)
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"the run command did not come up:\n{self.output}")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        returncode = self.process.wait(timeout=60)
        self.reader.join(timeout=5)
        return returncode


def processes_using(data_dir):
    """PIDs of live processes whose environment names this data folder."""
    needle = f"SHIORI_DATA_DIR={data_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.fixture
def run_environ(amqp_uri, tmp_path):
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith("SHIORI_") and key != "AMQP_URI"}
    environ.update(AMQP_URI=amqp_uri, SHIORI_DATA_DIR=str(tmp_path / "var"), SHIORI_GATEWAY_PORT=str(free_port()))
    return environ


def test_run_starts_the_whole_system_with_demo_data_and_stops_cleanly(run_environ):
    data_dir = Path(run_environ["SHIORI_DATA_DIR"])
    first = RunCommand(run_environ)
    try:
        url = first.wait_until_ready()
        password = re.search(r"created staff account 'admin' with password: (\S+)", first.output).group(1)
        services = processes_using(data_dir)
        assert len(services) >= 8  # the launcher and its seven services

        assert requests.get(f"{url}/health", timeout=10).json()["status"] == "ok"
        hits = requests.get(f"{url}/api/v1/search", params={"q": "坊っちゃん"}, timeout=10).json()
        assert any(hit["authors"][0]["name"] == "夏目 漱石" for hit in hits["items"])
        assert hits["items"][0]["availability"][0]["total"] == 1

        staff = requests.Session()
        token = staff.post(f"{url}/api/v1/auth/token", json={"username": "admin", "password": password}, timeout=10)
        staff.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        staff.base_url = url
        libraries = staff.get(f"{url}/api/v1/libraries", timeout=10).json()["items"]
        assert {library["kind"] for library in libraries} == {"main", "branch"} and len(libraries) >= 3
        patron = staff.post(f"{url}/api/v1/patrons", json=patron_fields(), timeout=10).json()
        assert check_out(staff, patron["card_number"], "K00000001").status_code == 201
        assert check_out(staff, patron["card_number"], "K00000002").status_code == 201
        assert check_in(staff, "K00000002").status_code == 200
        staff.close()
    finally:
        assert first.stop() == 0
    assert processes_using(data_dir) == []
    assert sorted(path.name for path in data_dir.glob("*.db")) == [
        "catalog.db", "loans.db", "notices.db", "patron-keys.db", "patrons.db", "statistics.db"]
    assert {path.name for path in data_dir.iterdir() if path.stat().st_mode & 0o077 == 0} >= {
        "token-secret", "master-keys", "lookup-key"}  # secrets readable by their owner only

    second = RunCommand(run_environ)
    try:
        url = second.wait_until_ready()
        assert "with password" not in second.output  # shown once, on the first run only
        assert "nothing loaded" in second.output  # the demo is not loaded twice
        staff = requests.Session()
        token = staff.post(f"{url}/api/v1/auth/token", json={"username": "admin", "password": password}, timeout=10)
        staff.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        loans = staff.get(f"{url}/api/v1/patrons/{patron['id']}/loans", timeout=10).json()["items"]
        assert [loan["item_barcode"] for loan in loans] == ["K00000001"]
        assert staff.get(f"{url}/api/v1/patrons/{patron['id']}", timeout=10).json()["total_uses"] == 2
        staff.close()
    finally:
        assert second.stop() == 0
    assert processes_using(data_dir) == []


def test_an_empty_system_on_request_and_a_chosen_admin_password(run_environ):
    run_environ.update(SHIORI_DEMO="0", SHIORI_ADMIN_USER="chief", SHIORI_ADMIN_PASSWORD="chosen-by-the-operator")
    run = RunCommand(run_environ)
    try:
        url = run.wait_until_ready()
        assert "chosen-by-the-operator" not in run.output
        token = requests.post(f"{url}/api/v1/auth/token", timeout=10,
                              json={"username": "chief", "password": "chosen-by-the-operator"})
        assert token.status_code == 200
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        assert requests.get(f"{url}/api/v1/libraries", headers=headers, timeout=10).json()["items"] == []
        assert requests.get(f"{url}/api/v1/search", params={"q": "坊"}, timeout=10).json()["total"] == 0
    finally:
        assert run.stop() == 0
