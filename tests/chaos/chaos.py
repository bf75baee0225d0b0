"""The chaos run's machinery: the system as ``python -m shiori run`` starts it, faults done to it, clients that
keep lending through them, and the invariants that must hold once it has recovered.

- ``RunSystem``: the run command on a data folder, broker virtual host and databases of its own; finds each
  service's process, kills one (SIGKILL), or has one exit right after its next commit
  (``SHIORI_FAULT_EXIT_AFTER_COMMIT``, shiori/db.py), and waits until it has been started again and answers.
- ``Load``: clients in threads, each with its own patron and copies, looping check-out → (sometimes) renew →
  check-in over HTTP. Each operation has an Idempotency-Key of its own, sent again on a connection error, a
  timeout or a 5xx until a definitive answer (or the operation's time is up); every final outcome is kept.
- ``invariants``: what must be true of the databases, the catalogue, the patrons, the outboxes, the dead
  letters and the loans' erasing store, given what the clients were told; printed as a table.
"""
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import requests
from sqlalchemy import create_engine, inspect, text

from shiori.commands.launcher import die_with_parent
from shiori.commands.provision import ManagementApi, subscribing_services
from conftest import DATABASES
from support import add_copy, free_port, patron_fields, wait_until

REPO = Path(__file__).resolve().parents[2]
READY = re.compile(r"Shiori is running: (http://\S+)")
TENANT = "kaizu"
LIBRARY = "main"
ADMIN_PASSWORD = "chaos-admin-password-" + "x" * 12
RECOVERY_SECONDS = 120  # for a killed process to be started again and answer, events to catch up
OPERATION_SECONDS = 180  # for one logical operation, retried through a fault, to get a definitive answer


class RunSystem:
    """``python -m shiori run`` on this data folder, broker and databases, with no demo data."""

    def __init__(self, folder, broker_url, admin_url, database_urls):
        self.data_dir = folder / "var"
        self.faults = folder / "faults"
        self.faults.mkdir()
        self.admin_url = admin_url
        self.vhost = f"shiori-chaos-{uuid.uuid4().hex[:8]}"
        self.database_urls = database_urls
        port, opac_port = free_port(), free_port()
        self.opac_url = f"http://127.0.0.1:{opac_port}"
        self.environ = {key: value for key, value in os.environ.items()
                        if not key.startswith("SHIORI_") and key != "AMQP_URI"}
        self.environ.update({
            "SHIORI_DATA_DIR": str(self.data_dir), "SHIORI_GATEWAY_PORT": str(port), "SHIORI_OPAC_PORT": str(opac_port),
            "SHIORI_BROKER_URL": broker_url, "SHIORI_BROKER_ADMIN_URL": admin_url, "SHIORI_BROKER_VHOST": self.vhost,
            "SHIORI_DEMO": "0", "SHIORI_ADMIN_PASSWORD": ADMIN_PASSWORD, "SHIORI_TENANT": TENANT,
            "SHIORI_FAULT_EXIT_AFTER_COMMIT": str(self.faults),
            **{DATABASES[name]: url for name, url in database_urls.items()},
        })
        self.process = None
        self.lines = []
        self.url = None

    # --- the run command ---------------------------------------------------------------------------

    def start(self, timeout=240):
        with warnings.catch_warnings():
            # eventlet warns of any fork (a preexec_fn needs one); this child sets its death signal and execs.
            warnings.filterwarnings("ignore", message="Using fork", category=DeprecationWarning)
            self.process = subprocess.Popen([sys.executable, "-m", "shiori", "run"], cwd=REPO, env=self.environ,
                                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            preexec_fn=die_with_parent)
        threading.Thread(target=self._read, daemon=True).start()
        self.url = wait_until(lambda: self._ready() or self._exited(), timeout, message="the run command to come up")
        if self.process.poll() is not None:
            raise AssertionError(f"the run command exited ({self.process.returncode}):\n{self.output}")

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def _ready(self):
        match = READY.search(self.output)
        return match and match.group(1)

    def _exited(self):
        return self.process.poll() is not None

    @property
    def output(self):
        return "\n".join(self.lines)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in self.service_pids().values():  # none should be left; none may outlive the test
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def logs(self, services=("gateway", "loans"), lines=40):
        """The last lines of these services' logs, and the run command's, for a failure's report."""
        tails = [f"--- run command ---\n{self.output[-3000:]}"]
        for service in services:
            with suppress(OSError):
                text = (self.data_dir / "logs" / f"{service}.log").read_text(errors="replace")
                tails.append(f"--- {service}.log ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(tails)

    # --- its processes -----------------------------------------------------------------------------

    def service_pids(self):
        """Each service's live process (``-m shiori serve NAME`` with this data folder), by service."""
        needle = f"SHIORI_DATA_DIR={self.data_dir}".encode()
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if needle not in (entry / "environ").read_bytes().split(b"\0"):
                    continue
                command = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                continue
            if b"serve" in command and state != "Z":
                found[command[command.index(b"serve") + 1].decode()] = int(entry.name)
        return found

    def kill(self, service):
        """SIGKILL the service's process; answers once it has been started again and the system answers."""
        pid = self.service_pids()[service]
        os.kill(pid, signal.SIGKILL)
        self.wait_until_restarted(service, pid)

    def exit_after_next_commit(self, service, commit=None):
        """Have the service's process exit right after its next commit of its main database (the change
        durable, the reply never sent), which ``commit()`` makes, or the load; answers what ``commit()`` did
        once the process has exited and runs again."""
        pid = self.service_pids()[service]
        trigger = self.faults / service
        trigger.touch()
        done = commit() if commit else None
        wait_until(lambda: not trigger.exists(), RECOVERY_SECONDS, message=f"{service} to commit (and exit)")
        self.wait_until_restarted(service, pid)
        return done

    def wait_until_restarted(self, service, old_pid):
        wait_until(lambda: self.service_pids().get(service) not in (None, old_pid), RECOVERY_SECONDS, interval=0.25,
                   message=f"{service} to be started again\n{self.output[-3000:]}")
        self.wait_until_healthy()

    def healthy(self):
        with suppress(requests.RequestException, ValueError):
            staff = requests.get(f"{self.url}/health", timeout=5)
            opac = requests.get(f"{self.opac_url}/health", timeout=5)
            return staff.status_code == 200 and staff.json()["status"] == "ok" and opac.status_code == 200
        return False

    def wait_until_healthy(self):
        wait_until(self.healthy, RECOVERY_SECONDS, interval=0.5, message=f"/health to answer ok\n{self.output[-3000:]}")

    # --- what it holds -----------------------------------------------------------------------------

    def rows(self, service, statement):
        engine = create_engine(self.database_urls[service])
        try:
            with engine.connect() as connection:
                return connection.execute(text(statement)).fetchall()
        finally:
            engine.dispose()

    def tables(self, url):
        engine = create_engine(url)
        try:
            return set(inspect(engine).get_table_names())
        finally:
            engine.dispose()

    def borrower_store_url(self):
        return f"sqlite:///{self.data_dir}/loan-borrowers.db"

    def staff_session(self):
        session = requests.Session()
        response = session.post(f"{self.url}/api/v1/auth/token", timeout=10,
                                json={"username": "admin", "password": ADMIN_PASSWORD})
        response.raise_for_status()
        session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        session.base_url = self.url
        return session


# --- the clients -------------------------------------------------------------------------------------

@dataclass
class Copy:
    barcode: str
    on_loan: bool = False  # as the client's last definitive answer left it
    loan_id: int | None = None  # None when the check-out's answer was not kept (REQUEST_ALREADY_DONE)
    renewals: int = 0


@dataclass
class Outcome:
    client: int
    operation: str
    barcode: str
    key: str
    status: int | None  # None: no definitive answer in OPERATION_SECONDS
    code: str | None
    attempts: int
    started: float
    ended: float
    body: dict = field(default_factory=dict, repr=False)
    last_answer: str = ""  # when there was no definitive answer: the last one there was

    @property
    def done(self):
        """The operation was carried out: a 2xx, or REQUEST_ALREADY_DONE for a retried request."""
        return self.status is not None and (200 <= self.status < 300 or (
            self.status == 409 and self.code == "REQUEST_ALREADY_DONE" and self.attempts > 1))


@dataclass
class Client:
    """One desk with its own patron and copies, and what it has been told."""

    number: int
    base_url: str
    token: str
    patron_id: int
    card_number: str
    copies: list
    checkouts: int = 0  # carried out, as answered
    outcomes: list = field(default_factory=list)
    sending: str = ""  # the operation under way and its latest answer, for a report on a client that is stuck

    def __post_init__(self):
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.token}"
        self.random = random.Random(self.number)

    def step(self):
        """The next operation on one of its copies, whichever its state calls for."""
        copy = self.random.choice(self.copies)
        if not copy.on_loan:
            return self.perform("checkout", copy)
        if copy.loan_id is not None and copy.renewals == 0 and self.random.random() < 0.5:
            return self.perform("renew", copy)
        return self.perform("checkin", copy)

    def perform(self, operation, copy):
        if operation == "checkout":
            outcome = self.send(operation, copy, "/api/v1/checkouts",
                                {"card_number": self.card_number, "item_barcode": copy.barcode, "library": LIBRARY})
            if outcome.done:
                copy.on_loan, copy.renewals, self.checkouts = True, 0, self.checkouts + 1
                copy.loan_id = outcome.body.get("loan_id") if outcome.status == 201 else None
        elif operation == "renew":
            outcome = self.send(operation, copy, f"/api/v1/loans/{copy.loan_id}/renew", None)
            if outcome.done:
                copy.renewals += 1
        else:
            outcome = self.send(operation, copy, "/api/v1/checkins", {"item_barcode": copy.barcode, "library": LIBRARY})
            if outcome.done:
                copy.on_loan, copy.loan_id, copy.renewals = False, None, 0
        self.outcomes.append(outcome)
        return outcome

    def ready_for(self, operation):
        """A copy on which ``operation`` can be done next, after doing first what it needs (a check-out before
        a check-in, a fresh one before a renewal)."""
        copy = self.copies[0]
        needs_loan = operation in ("checkin", "renew")
        if copy.on_loan and (not needs_loan or (operation == "renew" and (copy.loan_id is None or copy.renewals))):
            assert self.perform("checkin", copy).done
        if needs_loan and not copy.on_loan:
            assert self.perform("checkout", copy).done
        return copy

    def send(self, operation, copy, path, body):
        """POST until a definitive answer, with the same Idempotency-Key every time."""
        key, started, attempts, pause = str(uuid.uuid4()), time.time(), 0, 0.2
        deadline = time.monotonic() + OPERATION_SECONDS
        while True:
            attempts += 1
            try:
                response = self.http.post(self.base_url + path, json=body, timeout=(5, 20),
                                          headers={"Idempotency-Key": key})
                status = response.status_code
                self.sending = f"{operation} {copy.barcode}: attempt {attempts} answered {status} {response.text[:200]}"
                if status < 500:
                    answer = response.json() if response.content else {}
                    return Outcome(self.number, operation, copy.barcode, key, status,
                                   (answer.get("error") or {}).get("code"), attempts, started, time.time(), answer)
            except (requests.ConnectionError, requests.Timeout, ValueError) as error:
                self.sending = f"{operation} {copy.barcode}: attempt {attempts} failed: {type(error).__name__}"
            if time.monotonic() > deadline:
                return Outcome(self.number, operation, copy.barcode, key, None, None, attempts, started, time.time(),
                               last_answer=self.sending)
            time.sleep(pause)
            pause = min(2.0, pause * 1.5)

    def close(self):
        self.http.close()


class Load:
    """The clients, each in a thread of its own, stepping until ``stop``; what they were told survives a
    stop and a start again."""

    def __init__(self, clients, pause=0.05):
        self.clients, self.pause = clients, pause
        self.running = threading.Event()
        self.threads = []

    def start(self):
        self.running.set()
        self.threads = [threading.Thread(target=self._loop, args=(client,), daemon=True) for client in self.clients]
        for thread in self.threads:
            thread.start()

    def _loop(self, client):
        """Steps until stopped, or until an operation is not carried out: what the client was told no longer
        says where its copy is, so it stops, and the test reports it."""
        while self.running.is_set() and client.step().done:
            time.sleep(self.pause)

    def stop(self):
        """Let each client finish the operation it is in (bounded by OPERATION_SECONDS) and stop."""
        self.running.clear()
        for thread in self.threads:
            thread.join(OPERATION_SECONDS + 30)
        assert not any(thread.is_alive() for thread in self.threads), "a client is stuck"

    def outcomes(self):
        return sorted(itertools.chain.from_iterable(client.outcomes for client in self.clients),
                      key=lambda outcome: outcome.started)

    def wait_for_operations_since(self, moment, count=2):
        """Every client has had ``count`` operations carried out that began after ``moment``."""
        def each_client_went_on():
            if unexpected_answers(self):
                return True
            return all(sum(1 for outcome in client.outcomes if outcome.started > moment and outcome.done) >= count
                       for client in self.clients)
        try:
            wait_until(each_client_went_on, OPERATION_SECONDS, interval=0.25,
                       message=f"every client to have {count} operations carried out")
        except AssertionError as error:
            raise AssertionError(f"{error}:\n" + "\n".join(
                f"client {client.number}: {client.sending}" for client in self.clients)) from None


def make_clients(system, staff, count=6, copies_each=2):
    """``count`` clients, each with a patron of its own and ``copies_each`` copies of works of its own."""
    token = staff.headers["Authorization"].removeprefix("Bearer ")
    clients = []
    for number in range(count):
        patron = registered(staff, name=f"試験 {number}号", email=f"chaos{number}@example.jp")
        copies = [Copy(add_copy(staff, library=LIBRARY)[1]["barcode"]) for _ in range(copies_each)]
        clients.append(Client(number, system.url, token, patron["id"], patron["card_number"], copies))
    return clients


def registered(staff, **fields):
    """A new patron, once the patrons service has heard of the library (it keeps its own projection)."""
    def register():
        response = staff.post(f"{staff.base_url}/api/v1/patrons", json=patron_fields(**fields), timeout=10)
        return response.json() if response.status_code == 201 else None
    return wait_until(register, 60, interval=0.5, message="the patrons service to register a patron at the new library")


def add_library(staff):
    response = staff.post(f"{staff.base_url}/api/v1/libraries", timeout=10,
                          json={"code": LIBRARY, "name": "混沌市立図書館", "kind": "main"})
    assert response.status_code == 201, response.text


# --- the invariants ----------------------------------------------------------------------------------

@dataclass
class Check:
    name: str
    holds: bool
    detail: str


def invariants(system, staff, clients):
    """Each invariant, checked now, against what the clients were told."""
    copies = {copy.barcode: (client, copy) for client in clients for copy in client.copies}
    loans = system.rows("loans", "SELECT item_barcode, borrower_ref, renewals FROM loans")
    holds = system.rows("loans", "SELECT borrower_ref FROM holds")
    on_loan = {}
    for barcode, _ref, renewals in loans:
        on_loan.setdefault(barcode, []).append(renewals)
    checks = []

    wrong = [f"{barcode}: told {'on loan' if copy.on_loan else 'returned'}, database "
             f"{'on loan' if barcode in on_loan else 'returned'}"
             for barcode, (_client, copy) in copies.items() if copy.on_loan != (barcode in on_loan)]
    wrong += [f"{barcode}: told {copy.renewals} renewals, database {on_loan[barcode]}"
              for barcode, (_client, copy) in copies.items()
              if copy.on_loan and barcode in on_loan and copy.loan_id is not None and [copy.renewals] != on_loan[barcode]]
    checks.append(Check("every 2xx is durable (loans, renewals)", not wrong,
                        "; ".join(wrong) or f"{len(on_loan)} on loan as told, {len(copies) - len(on_loan)} returned"))

    twice = {barcode: len(rows) for barcode, rows in on_loan.items() if len(rows) > 1}
    checks.append(Check("no copy on loan twice", not twice, str(twice) if twice else f"{len(loans)} loans"))

    uses = {client.patron_id: staff.get(f"{system.url}/api/v1/patrons/{client.patron_id}", timeout=10)
            .json().get("total_uses") for client in clients}
    wrong = [f"patron {client.patron_id}: total_uses {uses[client.patron_id]}, check-outs {client.checkouts}"
             for client in clients if uses[client.patron_id] != client.checkouts]
    checks.append(Check("total_uses = successful check-outs", not wrong,
                        "; ".join(wrong) or f"{sum(client.checkouts for client in clients)} check-outs counted"))

    statuses = {barcode: staff.get(f"{system.url}/api/v1/items/{barcode}", timeout=10).json().get("status")
                for barcode in copies}
    wrong = [f"{barcode}: catalogue {status}, loans {'on loan' if barcode in on_loan else 'none'}"
             for barcode, status in statuses.items() if (status == "on_loan") != (barcode in on_loan)]
    checks.append(Check("catalogue availability = loans", not wrong, "; ".join(wrong) or "all match"))

    checks.append(outboxes_drained(system))
    checks.append(dead_letters_explained(system))

    borrowers = {ref for (ref,) in sqlite_rows(system.borrower_store_url(), "SELECT ref FROM borrowers")}
    live = {ref for _barcode, ref, _renewals in loans} | {ref for (ref,) in holds}
    orphans, missing = borrowers - live, live - borrowers
    checks.append(Check("no returned loan linked to a patron", not orphans and not missing,
                        f"borrowers {len(borrowers)} = loans {len(loans)} + holds {len(holds)}"
                        + (f"; {len(orphans)} borrowers that no loan or hold names" if orphans else "")
                        + (f"; {len(missing)} loans or holds with no borrower" if missing else "")))
    return checks


def sqlite_rows(url, statement):
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(statement)).fetchall()
    finally:
        engine.dispose()


OUTBOX_TABLES = ("outbox",)  # shiori/outbox.py; an erasing store keeps the loans' envelopes (outbox_envelopes)
KEPT_ENVELOPES = "outbox_envelopes"


def outboxes_drained(system):
    """Every service's outbox empty, and every envelope kept in an erasing store published and erased."""
    waiting, found = {}, False
    for service, url in system.database_urls.items():
        for table in system.tables(url) & set(OUTBOX_TABLES):
            found = True
            waiting[f"{service}.{table}"] = system.rows(service, f"SELECT count(*) FROM {table}")[0][0]
    for store in system.data_dir.glob("*.db"):
        url = f"sqlite:///{store}"
        if KEPT_ENVELOPES in system.tables(url):
            found = True
            waiting[f"{store.stem}.{KEPT_ENVELOPES}"] = sqlite_rows(url, f"SELECT count(*) FROM {KEPT_ENVELOPES}")[0][0]
    if not found:
        return Check("outboxes drain", True, "no outbox in this system (events published after commit)")
    backlog = {name: count for name, count in waiting.items() if count}
    return Check("outboxes drain", not backlog, str(backlog) if backlog else f"{len(waiting)} outboxes empty")


def dead_letters_explained(system):
    """No message in any dead-letter queue; each one found is shown with the error that parked it."""
    api = ManagementApi(system.admin_url)
    parked = {}
    for service in subscribing_services():
        queue = api.call("GET", f"/api/queues/{quote(system.vhost, safe='')}/{quote(f'dead-letters.{service}', safe='')}",
                         missing_ok=True)
        if queue and queue.get("messages", 0):
            parked[service] = queue["messages"]
    if not parked:
        return Check("no dead letter left unexplained", True, "every dead-letter queue empty")
    listed = subprocess.run([sys.executable, "-m", "shiori", "dead-letters", "list"], cwd=REPO, text=True,
                            capture_output=True, env={**system.environ, "PATH": "/usr/bin:/bin"}, timeout=60)
    return Check("no dead letter left unexplained", False, f"{parked}: {(listed.stdout + listed.stderr)[-1500:]}")


def resynchronise(system, staff, clients):
    """Have the clients believe what the system holds, where an earlier fault left them wrong (and its test
    said so): each fault is then judged on its own. Answers what was changed."""
    loans = {barcode: (loan_id, renewals) for loan_id, barcode, renewals in
             system.rows("loans", "SELECT id, item_barcode, renewals FROM loans")}
    changed = []
    for client in clients:
        for copy in client.copies:
            loan_id, renewals = loans.get(copy.barcode, (None, 0))
            if copy.on_loan != (copy.barcode in loans) or (copy.on_loan and copy.loan_id not in (None, loan_id)):
                changed.append(f"{copy.barcode} {'on loan' if loan_id else 'returned'}")
            copy.on_loan, copy.loan_id, copy.renewals = copy.barcode in loans, loan_id, renewals
        uses = staff.get(f"{system.url}/api/v1/patrons/{client.patron_id}", timeout=10).json()["total_uses"]
        if uses != client.checkouts:
            changed.append(f"patron {client.patron_id} {uses} uses")
            client.checkouts = uses
    return changed


def wait_for_invariants(system, staff, clients, timeout=RECOVERY_SECONDS):
    """The invariants once events have caught up (they hold, or the time is up): answers the last checks."""
    deadline = time.monotonic() + timeout
    while True:
        checks = invariants(system, staff, clients)
        if all(check.holds for check in checks) or time.monotonic() > deadline:
            return checks
        time.sleep(1)


def report(title, checks, load, since):
    """The invariants as a table, after what the clients were answered since ``since``; for stdout."""
    outcomes = [outcome for outcome in load.outcomes() if outcome.started >= since]
    answers, retried = {}, sum(outcome.attempts - 1 for outcome in outcomes)
    for outcome in outcomes:
        answer = f"{outcome.status} {outcome.code}" if outcome.code else str(outcome.status)
        answers[answer] = answers.get(answer, 0) + 1
    width = max(len(check.name) for check in checks)
    lines = [f"== after {title}: {len(outcomes)} operations, {sum(outcome.done for outcome in outcomes)} carried out, "
             f"{retried} resent; final answers {json.dumps(answers)}"]
    lines += [f"  {'ok  ' if check.holds else 'FAIL'}  {check.name.ljust(width)}  {check.detail}" for check in checks]
    return "\n".join(lines)


def unexpected_answers(load, since=0.0):
    """Final answers that are not carried out: no answer at all, or a refusal."""
    return [outcome for outcome in load.outcomes() if outcome.started >= since and not outcome.done]


def history(load, outcomes):
    """Every operation on the copies of these outcomes, in order: how a client came to be refused."""
    barcodes = {outcome.barcode for outcome in outcomes}
    return "\n".join(f"  {time.strftime('%H:%M:%S', time.localtime(outcome.started))}"
                     f"{outcome.started % 1:.3f}"[1:] + f" client {outcome.client} {outcome.operation} {outcome.barcode}"
                     f" key {outcome.key[:8]}: {outcome.status} {outcome.code or ''} after {outcome.attempts} attempts"
                     f"{' (last: ' + outcome.last_answer + ')' if outcome.last_answer else ''}"
                     for outcome in load.outcomes() if outcome.barcode in barcodes)
