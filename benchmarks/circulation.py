"""Circulation benchmark: check-out + check-in throughput and latency through the HTTP gateway.

    .venv/bin/python benchmarks/circulation.py [--clients 1,5,20] [--seconds 10] [--database sqlite|postgresql]

Starts the whole system (``python -m shiori run``) in a temporary data directory on a free port, on a
RabbitMQ virtual host of its own that the launcher provisions (through the management API, as ``make run``
does), and, with ``--database postgresql``, on throwaway databases. Sets up a library, patrons and items through the HTTP API, then for each concurrency level runs
N clients that loop check-out/check-in on their own items for a bounded time. Also measures the floor of an
empty RPC with a signed caller context (a ``bench_echo`` service started in this process) and ``GET /health`` through the gateway.
Everything it starts is stopped and removed at the end, also on Ctrl-C and on errors. Only 127.0.0.1 is used.
See benchmarks/README.md.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402
import eventlet.hubs  # noqa: E402

eventlet.monkey_patch()  # before nameko, kombu, requests or psycopg2 are imported

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import requests  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402
from figures import latency_summary  # noqa: E402
from shiori.broker import OPERATOR  # noqa: E402
from shiori.commands import operator_rpc  # noqa: E402
from shiori.deployment import DEFAULT_BROKER_URL, operator_environment  # noqa: E402
from shiori.provision import DEFAULT_ADMIN_URL, ProvisioningFailed, deprovision  # noqa: E402
from shiori.rpc import rpc  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
LOCALHOST = "127.0.0.1"
TENANT = "kaizu"
LIBRARY = "bench"
READY_LINE = re.compile(r"^Shiori is running: (https?://127\.0\.0\.1:\d+)")
STARTUP_SECONDS = 150
STOP_SECONDS = 40
REQUEST_TIMEOUT = 30
SETTLE_SECONDS = 30
EVENT_QUEUES = (
    "evt-loans-loan_created--catalog.on_loan_created",
    "evt-loans-loan_returned--catalog.on_loan_returned",
    "evt-loans-patron_card_used--patrons.on_card_used",
)
# Where a consumer parks an event it failed on for good (shiori/events.py); checked if declared.
DEAD_LETTER_QUEUES = ("dead-letters.catalog", "dead-letters.patrons")
MAX_ERRORS_SHOWN = 5


class BenchEcho:
    """The floor: an RPC that does nothing."""

    name = "bench_echo"

    @rpc
    def ping(self):
        return None


class Stop(BaseException):
    """Ctrl-C or SIGTERM: stop what runs and clean up."""


# --- small helpers ------------------------------------------------------------------------------------


def say(message=""):
    print(message, flush=True)




def fmt(value, width=8):
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.1f}"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def local_only(url, what):
    host = urlsplit(url).hostname
    if host not in (LOCALHOST, "localhost"):
        raise SystemExit(f"{what} must point at {LOCALHOST} (got {host!r}): this benchmark only targets localhost")


def http_session(token=None):
    session = requests.Session()
    session.trust_env = False  # never through a proxy from the environment: 127.0.0.1 only
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE", True)  # a gateway on HTTPS with a CA of the run's
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


# --- the broker's virtual host, the databases and the system under test ----------------------------------------


class Broker:
    """The system's own deployment on the broker: a throwaway virtual host, which the launcher provisions as
    ``make run`` does (a broker user per process, permissions read off the code), removed at the end with its
    users, so the system's queues meet no other run's."""

    def __init__(self, broker_url, admin_url):
        self.broker_url, self.admin_url = broker_url, admin_url
        self.vhost = f"shiori-bench-{os.getpid()}-{secrets.token_hex(3)}"

    def environment(self):
        return {"SHIORI_BROKER_URL": self.broker_url, "SHIORI_BROKER_VHOST": self.vhost,
                "SHIORI_BROKER_ADMIN_URL": self.admin_url}

    def delete(self):
        try:
            deprovision(self.admin_url, self.vhost)
        except ProvisioningFailed as error:
            say(f"  could not remove the virtual host {self.vhost}: {error}")


class PostgresDatabases:
    """Throwaway databases on 127.0.0.1:5432 (or another local server), one per service; ``query`` is added to
    each URL (``sslmode=verify-full&sslrootcert=...`` for a server that takes TLS only)."""

    SERVICES = ("patrons", "loans", "catalog", "statistics", "notices")

    def __init__(self, host=LOCALHOST, port=5432, user="postgres", query=""):
        self.host, self.port, self.user, self.query = host, port, user, query
        stem = f"shiori_bench_{os.getpid()}_{secrets.token_hex(3)}"
        self.names = {service: f"{stem}_{service}" for service in self.SERVICES}
        self.created = []

    def _connect(self):
        return postgres_admin(self.host, self.port, self.user)

    def create(self):
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                for name in self.names.values():
                    cursor.execute(f'CREATE DATABASE "{name}"')
                    self.created.append(name)
        finally:
            connection.close()

    def urls(self):
        return {
            f"SHIORI_{service.upper()}_DATABASE_URL":
                f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{name}"
                + (f"?{self.query}" if self.query else "")
            for service, name in self.names.items()
        }

    def drop(self):
        if not self.created:
            return
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                for name in list(self.created):
                    cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    self.created.remove(name)
        finally:
            connection.close()


def children_of(pid):
    """Direct children of a process (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def cpu_seconds(pid):
    """User + system CPU time of a process so far (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def machine_cpu():
    """(busy, total) jiffies of all CPUs together, from /proc/stat."""
    try:
        values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def process_alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


class System:
    """``python -m shiori run`` in a temporary data directory, and its clean stop."""

    def __init__(self, data_dir, port, broker, database_urls, code=REPO):
        self.data_dir = data_dir
        self.code = code  # the source tree it runs from: this checkout, or an earlier version's
        self.port = port
        self.password = secrets.token_urlsafe(18)
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith("SHIORI_") and key != "AMQP_URI" and "proxy" not in key.lower()}
        self.env.update({
            "SHIORI_DATA_DIR": str(data_dir), "SHIORI_GATEWAY_HOST": LOCALHOST, "SHIORI_GATEWAY_PORT": str(port),
            "SHIORI_ADMIN_USER": "admin", "SHIORI_ADMIN_PASSWORD": self.password, "SHIORI_DEMO": "0",
            **broker.environment(), "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1", **database_urls,
        })
        self.output_path = data_dir / "launcher.out"
        self.process = None
        self.service_pids = []
        self.url = None

    def start(self):
        output = open(self.output_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shiori", "run"], cwd=self.code, env=self.env, stdout=output,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # our Ctrl-C is handled here, then the launcher is stopped in order
        )
        output.close()
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            self._note_service_pids()
            for line in self.output_path.read_text(errors="replace").splitlines():
                match = READY_LINE.match(line.strip())
                if match:
                    self.url = match.group(1)
                    self._note_service_pids()
                    return self.url
            if self.process.poll() is not None:
                raise RuntimeError(f"the system exited with {self.process.returncode} before it was ready\n"
                                   + self.output_path.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        raise RuntimeError(f"the system was not ready within {STARTUP_SECONDS} s\n"
                           + self.output_path.read_text(errors="replace")[-3000:])

    def operator_environment(self):
        """What an operators' command of this system runs with (its broker user and signing key), from the
        data folder's secrets that the launcher made."""
        return operator_environment({**self.env, "SHIORI_DATA_DIR": str(self.data_dir)})

    def _note_service_pids(self):
        if self.process is not None and self.process.poll() is None:
            for pid in children_of(self.process.pid):
                if pid not in self.service_pids:
                    self.service_pids.append(pid)

    def processes(self):
        """{name: pid} of the launcher's services ("patrons", ..., a second catalogue "catalog-2") and of this
        benchmark ("bench-client")."""
        found = {"bench-client": os.getpid()}
        for pid in self.service_pids:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in argv:  # a service's second process is "<name>-2", as the launcher names its log
                name = argv[argv.index(b"serve") + 1].decode()
                replica = sum(1 for known in found if known.split("-")[0] == name) + 1
                found[name if replica == 1 else f"{name}-{replica}"] = pid
        return found

    def stop(self):
        if self.process is None:
            return
        self._note_service_pids()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                say("  the launcher did not stop in time: killing it")
                self.process.kill()
                self.process.wait()
        # The launcher stops its services; anything of ours still alive after that is ended by its id.
        deadline = time.monotonic() + 10
        while any(process_alive(pid) for pid in self.service_pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self.service_pids:
            if process_alive(pid):
                say(f"  service process {pid} outlived the launcher: killing it")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.process = None

    def log_problems(self, limit=8):
        """ERROR/WARNING lines and tracebacks in the services' logs: (count per log, first few lines)."""
        counts, samples = {}, []
        for log in sorted((self.data_dir / "logs").glob("*.log")):
            count = 0
            for line in log.read_text(errors="replace").splitlines():
                if " ERROR " in line or " WARNING " in line or " CRITICAL " in line or line.startswith("Traceback"):
                    count += 1
                    if len(samples) < limit:
                        samples.append(f"{log.stem}: {line[:300]}")
            counts[log.stem] = count
        return counts, samples


# --- the HTTP client side ------------------------------------------------------------------------------


class Api:
    def __init__(self, base_url, token=None):
        self.base = base_url
        self.session = http_session(token)

    def post(self, path, body):
        return self.session.post(self.base + path, json=body, timeout=REQUEST_TIMEOUT)

    def get(self, path):
        return self.session.get(self.base + path, timeout=REQUEST_TIMEOUT)

    def expect(self, response, *statuses):
        if response.status_code not in statuses:
            raise RuntimeError(f"{response.request.method} {response.request.path_url} answered "
                               f"{response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None


def login(base_url, password):
    api = Api(base_url)
    body = api.expect(api.post("/api/v1/auth/token", {"username": "admin", "password": password}), 200)
    return body["access_token"]


class Client:
    """One simulated desk: its own patron, its own items, its own HTTP session."""

    def __init__(self, level, index, card_number, patron_id, barcodes):
        self.level, self.index = level, index
        self.card_number, self.patron_id, self.barcodes = card_number, patron_id, barcodes
        self.checkout_latency, self.checkin_latency = [], []
        self.pairs = 0
        self.checkouts_done = 0  # every successful check-out, warm-up included (the patron's total_uses)
        self.errors = []  # (operation, status, text)

    def _timed(self, session, base, path, body, operation, latencies):
        started = time.perf_counter()
        try:
            response = session.post(base + path, json=body, timeout=REQUEST_TIMEOUT)
        except requests.RequestException as error:
            self.errors.append((operation, "exception", repr(error)[:300]))
            return False
        elapsed = time.perf_counter() - started
        if not 200 <= response.status_code < 300:  # any non-2xx is an error
            self.errors.append((operation, response.status_code, response.text[:300]))
            return False
        if latencies is not None:
            latencies.append(elapsed)
        return True

    def pair(self, session, base, barcode, record):
        checkout = {"card_number": self.card_number, "item_barcode": barcode, "library": LIBRARY}
        checkin = {"item_barcode": barcode, "library": LIBRARY}
        lent = self._timed(session, base, "/api/v1/checkouts", checkout, "checkout",
                           self.checkout_latency if record else None)
        if lent:
            self.checkouts_done += 1
        returned = self._timed(session, base, "/api/v1/checkins", checkin, "checkin",
                               self.checkin_latency if record else None)
        if not lent and not returned and self.errors and self.errors[-1][1] == 409:
            self.errors.pop()  # the repair check-in found nothing on loan: only the check-out failed
        return lent and returned


def run_level(base_url, token, clients, seconds, max_pairs, stopping):
    """All clients at once for ``seconds`` (or ``max_pairs`` pairs each); per-request latencies recorded."""
    ready = threading.Semaphore(0)
    go = threading.Event()
    window = {}

    def work(client):
        session = http_session(token)
        try:
            try:
                client.pair(session, base_url, client.barcodes[0], record=False)  # warm-up: connection, caches
            finally:
                ready.release()
            go.wait()
            deadline = window["deadline"]
            turn = 0
            while client.pairs < max_pairs and time.monotonic() < deadline and not stopping.is_set():
                barcode = client.barcodes[turn % len(client.barcodes)]
                turn += 1
                if client.pair(session, base_url, barcode, record=True):
                    client.pairs += 1
        finally:
            session.close()

    threads = [threading.Thread(target=work, args=(client,), daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    for _ in clients:
        ready.acquire()
    window["started"] = time.monotonic()
    window["deadline"] = window["started"] + seconds
    go.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - window["started"]

    checkouts = [value for client in clients for value in client.checkout_latency]
    checkins = [value for client in clients for value in client.checkin_latency]
    errors = [error for client in clients for error in client.errors]
    pairs = sum(client.pairs for client in clients)
    operations = len(checkouts) + len(checkins)
    return {
        "clients": len(clients), "seconds": round(elapsed, 3), "pairs": pairs,
        "operations": operations, "ops_per_s": round(operations / elapsed, 1) if elapsed else None,
        "pairs_per_s": round(pairs / elapsed, 1) if elapsed else None,
        "checkout": latency_summary(checkouts), "checkin": latency_summary(checkins),
        "errors": len(errors),
        "first_errors": [{"operation": op, "status": status, "body": text} for op, status, text in
                         errors[:MAX_ERRORS_SHOWN]],
    }


# --- set-up, events settling, floors -------------------------------------------------------------------


def set_up(api, levels, items_per_client):
    """A library, and per (level, client) a patron, a work and its own copies."""
    api.expect(api.post("/api/v1/libraries", {"code": LIBRARY, "name": "ベンチマーク図書館", "kind": "main"}), 201)
    clients = {}
    for level in levels:
        clients[level] = []
        for index in range(level):
            patron = api.expect(api.post("/api/v1/patrons", {
                "name": f"ベンチ 利用者{level}-{index}", "name_kana": "ベンチ リヨウシャ",
                "birth_date": "1990-01-01", "address": "岐阜県海津市海津町高須515", "phone": "0584-11-2222",
                "home_library": LIBRARY, "category": "adult",
            }), 201)
            work = api.expect(api.post("/api/v1/works", {
                "title": f"ベンチマークの本 {level}-{index}", "authors": [{"name": "試験 著者", "role": "author"}],
                "publisher": "ベンチ出版",
            }), 201)
            barcodes = []
            for copy in range(items_per_client):
                barcode = f"BENCH-{level}-{index}-{copy}"
                api.expect(api.post("/api/v1/items", {"barcode": barcode, "work_id": work["id"], "library": LIBRARY}),
                           201)
                barcodes.append(barcode)
            clients[level].append(Client(level, index, patron["card_number"], patron["id"], barcodes))
    return clients


def queue_depths(amqp_uri, queues):
    """Ready messages in each queue (None if not declared; unacknowledged ones in flight are not counted)."""
    from kombu import Connection

    depths = {}
    with Connection(amqp_uri, connect_timeout=5) as connection:
        for queue in queues:
            channel = connection.channel()
            try:
                _name, count, _consumers = channel.queue_declare(queue=queue, passive=True)
                depths[queue] = count
            except Exception:  # noqa: BLE001  (not declared yet)
                depths[queue] = None
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001
                    pass
    return depths


def settle(api, amqp_uri, clients, stopping):
    """After a level: how long until the event consumers caught up (catalog shows every copy available,
    each patron's total_uses counts every check-out), and what is still wrong after SETTLE_SECONDS."""
    started = time.monotonic()
    backlog = None
    try:
        depths = queue_depths(amqp_uri, EVENT_QUEUES)
        if any(count is not None for count in depths.values()):
            backlog = sum(count or 0 for count in depths.values())
    except Exception as error:  # noqa: BLE001
        say(f"  (could not read queue depths: {error})")

    def check():
        wrong = []
        for client in clients:
            for barcode in client.barcodes:
                item = api.expect(api.get(f"/api/v1/items/{barcode}"), 200)
                if item["status"] != "available":
                    wrong.append(f"item {barcode} shows {item['status']}")
            patron = api.expect(api.get(f"/api/v1/patrons/{client.patron_id}"), 200)
            if patron["total_uses"] != client.checkouts_done:
                wrong.append(f"patron {client.patron_id} total_uses={patron['total_uses']} "
                             f"after {client.checkouts_done} check-outs")
        return wrong

    wrong = check()
    while wrong and time.monotonic() - started < SETTLE_SECONDS and not stopping.is_set():
        time.sleep(0.5)
        wrong = check()
    dead_letters = None
    try:
        dead_letters = sum(count or 0 for count in queue_depths(amqp_uri, DEAD_LETTER_QUEUES).values())
    except Exception as error:  # noqa: BLE001
        say(f"  (could not read dead-letter queues: {error})")
    return {
        "event_backlog_at_end": backlog, "dead_lettered_events": dead_letters,
        "settled": not wrong, "settle_seconds": round(time.monotonic() - started, 2) if not wrong else None,
        "inconsistencies": len(wrong), "first_inconsistencies": wrong[:MAX_ERRORS_SHOWN],
    }


def rpc_floor(operator_environ, calls):
    """Sequential empty RPCs to ``bench_echo`` (started here) through one standalone proxy, with a signed
    caller context checked as every service checks it, over the operator's broker user."""
    runner = ServiceRunner({"AMQP_URI": operator_environ["AMQP_URI"], "BROKER_PRINCIPAL": OPERATOR,
                            "CONTEXT_VERIFY_KEYS": operator_environ["SHIORI_CONTEXT_VERIFY_KEYS"],
                            "max_workers": 10})
    runner.add_service(BenchEcho)
    runner.start()
    try:
        latencies = []
        with operator_rpc(TENANT, 30, operator_environ) as proxy:
            for _ in range(50):  # warm-up: reply queue, connections
                proxy.bench_echo.ping()
            for _ in range(calls):
                started = time.perf_counter()
                proxy.bench_echo.ping()
                latencies.append(time.perf_counter() - started)
        return latency_summary(latencies)
    finally:
        runner.stop()


def health_floor(base_url, calls):
    session = http_session()
    latencies, errors = [], 0
    try:
        for _ in range(10):
            session.get(base_url + "/health", timeout=REQUEST_TIMEOUT)
        for _ in range(calls):
            started = time.perf_counter()
            response = session.get(base_url + "/health", timeout=REQUEST_TIMEOUT)
            elapsed = time.perf_counter() - started
            if response.status_code == 200:
                latencies.append(elapsed)
            else:
                errors += 1
    finally:
        session.close()
    return dict(latency_summary(latencies), errors=errors)


# --- reporting --------------------------------------------------------------------------------------


def print_level(result):
    co, ci = result["checkout"], result["checkin"]
    say(f"  {result['pairs']} check-out+check-in pairs in {result['seconds']:.1f} s: "
        f"{result['ops_per_s']} ops/s ({result['pairs_per_s']} pairs/s)")
    say(f"  checkout ms p50/p95/p99 {co['p50_ms']}/{co['p95_ms']}/{co['p99_ms']} (max {co['max_ms']})")
    say(f"  checkin  ms p50/p95/p99 {ci['p50_ms']}/{ci['p95_ms']}/{ci['p99_ms']} (max {ci['max_ms']})")
    say(f"  errors: {result['errors']}")
    if result.get("cpu_percent"):
        cpu = ", ".join(f"{name} {value}" for name, value in result["cpu_percent"].items())
        say(f"  CPU, % of one core (machine: every process, out of {100 * (os.cpu_count() or 1)}): {cpu}")
    for error in result["first_errors"]:
        say(f"    {error['operation']} -> {error['status']}: {error['body']}")
    events = result.get("events")
    if events:
        if events["settled"]:
            say(f"  events: backlog {events['event_backlog_at_end']} at the end; "
                f"catalogue and patrons caught up {events['settle_seconds']} s after the level")
        else:
            say(f"  events: NOT consistent {SETTLE_SECONDS} s after the level "
                f"({events['inconsistencies']} problems), e.g.:")
            for line in events["first_inconsistencies"]:
                say(f"    {line}")
        if events.get("dead_lettered_events"):
            say(f"  events: {events['dead_lettered_events']} event(s) parked in dead-letter queues (failed handlers)")


def print_table(report):
    database = report["database"]
    say("")
    say(f"== circulation benchmark, {database}, {report['cpus']} CPUs, {report['seconds_per_level']} s per level ==")
    say(f"{'clients':>7} {'pairs':>7} {'ops/s':>8} | {'checkout p50':>12} {'p95':>7} {'p99':>7} | "
        f"{'checkin p50':>11} {'p95':>7} {'p99':>7} | {'errors':>6} {'CPU%':>6}")
    for level in report["levels"]:
        co, ci = level["checkout"], level["checkin"]
        say(f"{level['clients']:>7} {level['pairs']:>7} {fmt(level['ops_per_s'])} | "
            f"{fmt(co['p50_ms'], 12)} {fmt(co['p95_ms'], 7)} {fmt(co['p99_ms'], 7)} | "
            f"{fmt(ci['p50_ms'], 11)} {fmt(ci['p95_ms'], 7)} {fmt(ci['p99_ms'], 7)} | {level['errors']:>6} "
            f"{fmt(level.get('cpu_percent', {}).get('machine'), 6)}")
    floor, health = report.get("rpc_floor"), report.get("health")
    if floor:
        say(f"empty nameko RPC ({floor['count']} sequential): p50 {floor['p50_ms']} ms, p95 {floor['p95_ms']} ms, "
            f"p99 {floor['p99_ms']} ms")
    if health:
        say(f"GET /health via gateway ({health['count']} sequential, 3 parallel RPCs each): p50 {health['p50_ms']} ms, "
            f"p95 {health['p95_ms']} ms, p99 {health['p99_ms']} ms, errors {health['errors']}")
    say(f"(latencies in ms; ops/s counts check-outs and check-ins; CPU% = whole machine during the level, out of "
        f"{100 * (report['cpus'] or 1)}; all clients run in this one process)")


# --- main -------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,5,20",
                        help="comma-separated concurrency levels (default 1,5,20)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per level (default 10)")
    parser.add_argument("--max-pairs", type=int, default=2000,
                        help="at most this many check-out+check-in pairs per client per level (default 2000)")
    parser.add_argument("--items-per-client", type=int, default=2, help="copies each client cycles through")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rpc-calls", type=int, default=1000, help="sequential empty RPCs (default 1000)")
    parser.add_argument("--health-calls", type=int, default=200, help="sequential GET /health (default 200)")
    add_broker_arguments(parser)
    parser.add_argument("--pg-host", default=LOCALHOST)
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--output", help="JSON results file (default benchmarks/results/circulation-<database>.json)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data directory (logs) and databases")
    args = parser.parse_args(argv)
    try:
        args.levels = [int(part) for part in args.clients.split(",") if part.strip()]
    except ValueError:
        parser.error("--clients takes numbers such as 1,5,20")
    if not args.levels or min(args.levels) < 1 or max(args.levels) > 200:
        parser.error("--clients: each level between 1 and 200")
    if args.seconds <= 0 or args.seconds > 120:
        parser.error("--seconds: between 0 and 120")
    if args.items_per_client < 1 or args.max_pairs < 1:
        parser.error("--items-per-client and --max-pairs must be at least 1")
    check_broker_arguments(args)
    if args.pg_host not in (LOCALHOST, "localhost"):
        parser.error(f"--pg-host must be {LOCALHOST}")
    return args


def add_broker_arguments(parser):
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL,
                        help=f"RabbitMQ (127.0.0.1 only; default {DEFAULT_BROKER_URL}): the system runs on a "
                             "throwaway virtual host there")
    parser.add_argument("--broker-admin-url", default=DEFAULT_ADMIN_URL,
                        help="its management API, which provisions the virtual host (default the local one, guest)")


def check_broker_arguments(args):
    local_only(args.broker_url, "--broker-url")
    local_only(args.broker_admin_url, "--broker-admin-url")


def stop_main_on_signals():
    """SIGINT and SIGTERM make the calling (main) green thread raise Stop, so its cleanup runs; a second
    signal only says that cleanup is under way. Answers the event that is set once a signal came."""
    stopping = threading.Event()
    main_greenlet = eventlet.getcurrent()

    def on_signal(signum, _frame):
        if stopping.is_set():
            say(f"(signal {signum} again: still cleaning up, please wait)")
            return
        stopping.set()
        # The handler may run inside any green thread: the main one is told to stop, from the hub.
        eventlet.hubs.get_hub().schedule_call_global(0, main_greenlet.throw, Stop(f"signal {signum}"))

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stopping


def ended_early(error):
    """Says why a benchmark ended before its end and answers its exit status: 130 when it was stopped (Ctrl-C,
    SIGTERM), 1 when something failed (with the traceback)."""
    if isinstance(error, Stop):
        say(f"\ninterrupted ({error}): cleaning up")
        return 130
    traceback.print_exception(error)
    say(f"\nbenchmark failed: {type(error).__name__}: {error}")
    return 1


def release(databases, broker, data_dir, keep_data):
    """Remove the throwaway virtual host, and the databases and data directory unless asked to keep them (to inspect
    a large catalogue without building it again)."""
    if keep_data and databases is not None and databases.created:
        say(f"kept databases {databases.created}")
    elif databases is not None:
        try:
            databases.drop()
        except Exception as error:  # noqa: BLE001 - whatever failed, the rest must still be cleaned up
            say(f"could not drop databases {databases.created}: {error}")
    broker.delete()
    if keep_data:
        say(f"kept {data_dir}")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)


def write_report(report, output, complete):
    output.parent.mkdir(parents=True, exist_ok=True)
    report["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report["complete"] = complete
    output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    say(f"results written to {output}")


def postgres_admin(host, port, user):
    """An autocommit connection to the server's postgres database, for creating and dropping databases."""
    import psycopg2

    connection = psycopg2.connect(host=host, port=port, user=user, dbname="postgres", connect_timeout=10)
    connection.autocommit = True
    return connection


def main(argv=None):
    args = parse_args(argv)
    stopping = stop_main_on_signals()

    data_dir = Path(tempfile.mkdtemp(prefix="shiori-bench-"))
    broker, databases, system = Broker(args.broker_url, args.broker_admin_url), None, None
    report = {
        "benchmark": "circulation", "database": args.database,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "seconds_per_level": args.seconds, "max_pairs_per_client": args.max_pairs,
        "items_per_client": args.items_per_client, "levels": [],
    }
    exit_code = 0
    try:
        say(f"data dir {data_dir}")
        say(f"broker virtual host {broker.vhost}")
        report["vhost"] = broker.vhost
        database_urls = {}
        if args.database == "postgresql":
            databases = PostgresDatabases(args.pg_host, args.pg_port)
            databases.create()
            database_urls = databases.urls()
            say(f"databases {', '.join(databases.names.values())}")

        system = System(data_dir, free_port(), broker, database_urls)
        started = time.monotonic()
        base_url = system.start()
        report["startup_seconds"] = round(time.monotonic() - started, 1)
        say(f"system up at {base_url} in {report['startup_seconds']} s")

        token = login(base_url, system.password)
        admin = Api(base_url, token)
        started = time.monotonic()
        clients = set_up(admin, args.levels, args.items_per_client)
        count = sum(args.levels)
        report["setup"] = {"patrons": count, "works": count, "items": count * args.items_per_client,
                           "seconds": round(time.monotonic() - started, 1)}
        say(f"set up 1 library, {count} patrons, {count} works, {count * args.items_per_client} items "
            f"in {report['setup']['seconds']} s")

        say(f"empty RPC floor: {args.rpc_calls} sequential bench_echo.ping() ...")
        report["rpc_floor"] = rpc_floor(system.operator_environment(), args.rpc_calls)
        floor = report["rpc_floor"]
        say(f"  p50/p95/p99 {floor['p50_ms']}/{floor['p95_ms']}/{floor['p99_ms']} ms")
        say(f"GET /health: {args.health_calls} sequential ...")
        report["health"] = health_floor(base_url, args.health_calls)
        health = report["health"]
        say(f"  p50/p95/p99 {health['p50_ms']}/{health['p95_ms']}/{health['p99_ms']} ms, errors {health['errors']}")

        before = machine_cpu()
        time.sleep(1.0)
        after = machine_cpu()
        if before and after and after[1] > before[1]:
            idle_load = round(100 * (os.cpu_count() or 1) * (after[0] - before[0]) / (after[1] - before[1]), 1)
            report["machine_cpu_percent_idle"] = idle_load
            say(f"machine CPU with the system idle: {idle_load}% of one core"
                + ("  (WARNING: something else is busy on this machine; figures will be noisy)"
                   if idle_load > 25 else ""))

        for level in args.levels:
            if stopping.is_set():
                break
            say(f"{level} client(s) for {args.seconds:g} s ...")
            processes = system.processes()
            cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
            machine_before = machine_cpu()
            result = run_level(base_url, token, clients[level], args.seconds, args.max_pairs, stopping)
            result["cpu_percent"] = {
                name: round(100 * (cpu_seconds(pid) - cpu_before[name]) / result["seconds"], 1)
                for name, pid in processes.items()
                if cpu_before[name] is not None and cpu_seconds(pid) is not None
            }
            machine_after = machine_cpu()
            if machine_before and machine_after and machine_after[1] > machine_before[1]:
                busy = (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1])
                # whole machine, in % of one core like the rest: broker, PostgreSQL and anything else included
                result["cpu_percent"]["machine"] = round(busy * 100 * (os.cpu_count() or 1), 1)
            result["events"] = settle(admin, system.operator_environment()["AMQP_URI"], clients[level], stopping)
            report["levels"].append(result)
            print_level(result)
    except (Stop, Exception) as error:  # noqa: BLE001
        exit_code = ended_early(error)
    finally:
        stopping.set()
        if system is not None:
            counts, samples = system.log_problems()
            report["log_problems"] = {"counts": counts, "first": samples}
            say("stopping the system ...")
            system.stop()
            counts, samples = system.log_problems()  # again: the stop itself may log
            report["log_problems"] = {"counts": counts, "first": samples}
            if any(counts.values()):
                say(f"warnings/errors in the service logs: {counts}")
                for line in samples:
                    say(f"  {line}")
        release(databases, broker, data_dir, args.keep_data)

    if report["levels"]:
        print_table(report)
        output = Path(args.output) if args.output else RESULTS_DIR / f"circulation-{args.database}.json"
        write_report(report, output, complete=exit_code == 0)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
