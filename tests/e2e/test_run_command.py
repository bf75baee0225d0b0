"""The system as a newcomer runs it: ``python -m shiori run`` (what ``make run`` calls) starts every service
as its own process with SQLite under the data folder, loads the demo data, serves HTTP; a service process that
dies is started again while the others serve; SIGTERM stops every process it started; a second run on the same
folder finds everything it committed."""
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
from shiori.commands.provision import deprovision
from shiori.commands.serve import SERVICE_NAMES
from support import RPC_TIMEOUT, add_copy, check_in, check_out, patron_fields, wait_until

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


def service_of(pid):
    """The service a process serves (``-m shiori serve NAME``), or None."""
    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return command[command.index(b"serve") + 1].decode() if b"serve" in command else None


def environments_of(pids):
    """Each service process's environment, by the service it serves."""
    environments = {}
    for pid in pids:
        name = service_of(pid)
        if name:
            environments[name] = dict(entry.split("=", 1) for entry in
                                      Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in entry)
    return environments


def service_pids(data_dir):
    """{service: pid} of this run's service processes that are running."""
    pids = {}
    for pid in processes_using(data_dir):
        try:
            name = service_of(pid)
        except OSError:  # it has just ended
            continue
        if name:
            pids[name] = pid
    return pids


def signed_in(url, username, password):
    staff = requests.Session()
    token = staff.post(f"{url}/api/v1/auth/token", json={"username": username, "password": password}, timeout=10)
    staff.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    staff.base_url = url
    return staff


SECRETS_OF = {  # each secret the run command makes, and the one process that holds it (PRIVACY.md 10)
    "SHIORI_TOKEN_SECRET": "gateway", "SHIORI_PATRONS_MASTER_KEYS": "patrons", "SHIORI_PATRONS_LOOKUP_KEY": "patrons",
    "SHIORI_ACCESS_RECORD_KEY": "patrons", "SHIORI_GATEWAY_SESSION_KEY": "gateway", "SHIORI_OPAC_SESSION_KEY": "opac",
    "SHIORI_LOANS_DATABASE_URL": "loans",  # given to the run command: passed on to its owner only
}


def assert_each_process_holds_only_its_own_secrets(environments):
    assert set(environments) == {"patrons", "loans", "catalog", "statistics", "notices", "gateway", "opac"}
    for name, environ in environments.items():
        for secret, owner in SECRETS_OF.items():
            assert (secret in environ) == (name == owner), (name, secret)
        assert "SHIORI_BROKER_ADMIN_URL" not in environ and "SHIORI_ADMIN_PASSWORD" not in environ
        assert not [key for key in environ if key.startswith("SHIORI_BROKER_PASSWORD")]
        assert f".{name}:" in environ["AMQP_URI"]  # its own broker user
    # The OPAC's one secret signs its residents' sessions.
    assert {key for key in environments["opac"] if "SECRET" in key or "KEY" in key or "PASSWORD" in key} == {
        "SHIORI_OPAC_SESSION_KEY"}
    signing_keys = [environ["SHIORI_CONTEXT_SIGNING_KEY"] for environ in environments.values()
                    if "SHIORI_CONTEXT_SIGNING_KEY" in environ]
    assert len(signing_keys) == len(set(signing_keys)) == 6  # every process but the OPAC, each its own


@pytest.fixture
def run_environ(broker, tmp_path):
    """A fresh data folder and a virtual host of its own for this run command (it provisions it itself)."""
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith("SHIORI_") and key != "AMQP_URI"}
    vhost = f"{broker.vhost}-run-{free_port()}"
    environ.update(SHIORI_DATA_DIR=str(tmp_path / "var"), SHIORI_GATEWAY_PORT=str(free_port()),
                   SHIORI_LOANS_DATABASE_URL=f"sqlite:///{tmp_path}/var/loans.db",
                   SHIORI_OPAC_PORT=str(free_port()), SHIORI_BROKER_URL=broker.broker_url,
                   SHIORI_BROKER_ADMIN_URL=broker.admin_url, SHIORI_BROKER_VHOST=vhost)
    yield environ
    deprovision(broker.admin_url, vhost)


def test_run_starts_the_whole_system_with_demo_data_and_stops_cleanly(run_environ):
    data_dir = Path(run_environ["SHIORI_DATA_DIR"])
    first = RunCommand(run_environ)
    try:
        url = first.wait_until_ready()
        password = re.search(r"created staff account 'admin' with password: (\S+)", first.output).group(1)
        services = processes_using(data_dir)
        assert len(services) >= 8  # the launcher and its seven services
        assert_each_process_holds_only_its_own_secrets(environments_of(services))

        assert requests.get(f"{url}/health", timeout=10).json()["status"] == "ok"
        hits = requests.get(f"{url}/api/v1/search", params={"q": "坊っちゃん"}, timeout=10).json()
        assert any(hit["authors"][0]["name"] == "夏目 漱石" for hit in hits["items"])
        assert hits["items"][0]["availability"][0]["total"] == 1

        staff = signed_in(url, "admin", password)
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
        "catalog.db", "loan-borrowers.db", "loans.db", "notices.db", "patron-keys.db", "patrons.db", "statistics.db"]
    # Everything under the data folder is its owner's alone: files 0600, folders 0700.
    for path in [data_dir, *data_dir.rglob("*")]:
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path

    second = RunCommand(run_environ)
    try:
        url = second.wait_until_ready()
        assert "with password" not in second.output  # shown once, on the first run only
        assert "nothing loaded" in second.output  # the demo is not loaded twice
        staff = signed_in(url, "admin", password)
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


def registered(staff):
    """A patron registered at the main library, once the patrons service has heard of it (an event)."""
    response = staff.post(f"{staff.base_url}/api/v1/patrons", json=patron_fields(), timeout=10)
    return response.json() if response.status_code == 201 else None


def loans_started_again(data_dir, killed):
    """The pid of this run's loans process if it is running and not one of those ``killed``."""
    pid = service_pids(data_dir).get("loans")
    return None if pid in killed else pid


def test_a_service_that_dies_is_started_again_while_the_others_keep_serving(run_environ):
    """kill -9 the loans process, and again each time it is back: the run says so and waits 0.5, 1, 2 then 4 s
    before starting it again. Meanwhile the other processes serve on, the same ones, and /health names loans
    as not answering; once loans is back, /health answers 200 and a check-out goes through."""
    run_environ.update(SHIORI_DEMO="0", SHIORI_ADMIN_PASSWORD="chosen-by-the-operator",
                       SHIORI_RPC_TIMEOUT=str(RPC_TIMEOUT))  # /health gives up on loans after 3 s, not 5
    data_dir = Path(run_environ["SHIORI_DATA_DIR"])
    opac_url = f"http://127.0.0.1:{run_environ['SHIORI_OPAC_PORT']}"
    run = RunCommand(run_environ)
    try:
        url = run.wait_until_ready()
        staff = signed_in(url, "admin", "chosen-by-the-operator")
        library = {"code": "main", "name": "試験図書館", "kind": "main"}
        assert staff.post(f"{url}/api/v1/libraries", json=library, timeout=10).status_code == 201
        patron = wait_until(lambda: registered(staff), message="the patrons service to hear of the library")
        _work, copy = add_copy(staff)
        others = {name: pid for name, pid in service_pids(data_dir).items() if name != "loans"}
        assert set(others) == set(SERVICE_NAMES) - {"loans"}

        killed = set()
        for wait in ("0.5", "1", "2", "4"):
            pid = wait_until(lambda: loans_started_again(data_dir, killed), timeout=30,
                             message="loans to be started again")
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
            wait_until(lambda: f"loans was killed by SIGKILL; starting it again in {wait} s" in run.output,
                       message=f"the run to tell of the kill and its {wait} s wait")

        health = requests.get(f"{url}/health", timeout=10)
        assert health.status_code == 503
        states = health.json()["error"]["details"]["services"]
        assert states == {"patrons": "ok", "loans": "unavailable", "catalog": "ok", "statistics": "ok",
                          "notices": "ok"}
        assert "loans" in health.json()["error"]["message"]
        card = staff.get(f"{url}/api/v1/patrons", params={"card_number": patron["card_number"]}, timeout=10)
        assert card.status_code == 200
        assert staff.get(f"{url}/api/v1/items/{copy['barcode']}", timeout=10).status_code == 200
        assert requests.get(f"{opac_url}/api/v1/search", params={"q": "試験"}, timeout=10).status_code == 200

        wait_until(lambda: requests.get(f"{url}/health", timeout=10).status_code == 200, timeout=30,
                   interval=0.5, message="/health to answer 200 once loans is back")
        assert check_out(staff, patron["card_number"], copy["barcode"]).status_code == 201
        assert loans_started_again(data_dir, killed)
        assert {name: pid for name, pid in service_pids(data_dir).items() if name != "loans"} == others
        staff.close()
    finally:
        assert run.stop() == 0
    assert run.output.count("loans was killed by SIGKILL") == 4
    assert processes_using(data_dir) == []
