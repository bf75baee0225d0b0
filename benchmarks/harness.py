"""What every benchmark here shares: a system under test of its own — a data folder, a throwaway virtual host
that the launcher provisions as ``make run`` does, throwaway PostgreSQL databases, ``python -m shiori run``
from this checkout or another source tree — and its clean stop, the HTTP client side, the machine's CPU
readings, signals and reports. Only 127.0.0.1 is used."""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402
import eventlet.hubs  # noqa: E402

eventlet.monkey_patch()  # before kombu, requests or psycopg2 are imported (idempotent)

import json  # noqa: E402
import os  # noqa: E402
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
from shiori.commands.deployment import DEFAULT_BROKER_URL, operator_environment  # noqa: E402
from shiori.commands.provision import DEFAULT_ADMIN_URL, ProvisioningFailed, deprovision  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
LOCALHOST = "127.0.0.1"
TENANT = "kaizu"
READY_LINE = re.compile(r"^Shiori is running: (https?://127\.0\.0\.1:\d+)")
STARTUP_SECONDS = 150
STOP_SECONDS = 40
REQUEST_TIMEOUT = 30


class Stop(BaseException):
    """Ctrl-C or SIGTERM: stop what runs and clean up."""


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


class SystemUnderTest:
    """One system of a benchmark's: its data folder, its ``broker`` (a ``Broker``, or any object with
    ``environment()`` and ``delete()``), throwaway databases on ``postgres`` (PostgresDatabases' arguments) for
    ``database="postgresql"``, ``python -m shiori run`` from ``code`` with ``environ`` added. ``start()`` answers
    the gateway's URL; ``close()`` stops everything and removes what was made (but the data folder and the
    databases with ``keep_data``), whatever happened before. Also a context manager."""

    def __init__(self, database, broker, *, keep_data=False, postgres=None, code=REPO, environ=None,
                 prefix="shiori-bench-"):
        self.database, self.broker, self.keep_data = database, broker, keep_data
        self.postgres, self.code, self.environ = postgres or {}, code, environ or {}
        self.data_dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.databases = self.system = None

    def start(self):
        database_urls = {}
        if self.database == "postgresql":
            self.databases = PostgresDatabases(**self.postgres)
            self.databases.create()
            database_urls = self.databases.urls()
        self.system = System(self.data_dir, free_port(), self.broker, database_urls, code=self.code)
        self.system.env.update(self.environ)
        return self.system.start()

    @property
    def opac_url(self):
        """The OPAC's URL, for a system started with ``SHIORI_OPAC_PORT`` in its ``environ``."""
        return f"http://{LOCALHOST}:{self.environ['SHIORI_OPAC_PORT']}"

    def close(self):
        """Stops the system; answers the warnings and errors its logs hold, ({log: count}, first lines)."""
        problems = ({}, [])
        try:
            if self.system is not None:
                try:
                    self.system.stop()
                except Exception as error:  # noqa: BLE001 - whatever failed, the rest is still cleaned up
                    say(f"  could not stop the system cleanly: {error}")
                problems = self.system.log_problems()
        finally:
            release(self.databases, self.broker, self.data_dir, self.keep_data)
        return problems

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()
