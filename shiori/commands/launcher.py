"""``make run``: every service as its own process, started again when it exits, the first-run setup, and a clean
stop on Ctrl-C/SIGTERM."""
import ctypes
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from shiori.broker import OPERATOR
from shiori.commands.deployment import Deployment, LocalSecrets, private_folder
from shiori.commands.provision import DEFAULT_ADMIN_URL, ProvisioningFailed, provision
from shiori.commands.serve import SERVICE_NAMES

STARTUP_SECONDS = 90
STOP_SECONDS = 15
TICK_SECONDS = 0.5
# A process that exits is started again after half a second, then a second, two… up to thirty at most; once it has
# run a minute its next exit is its first again. One that exits this often while the system starts will not
# come up (its configuration, its database, its port): the start fails then rather than at STARTUP_SECONDS.
FIRST_RESTART_SECONDS = 0.5
LONGEST_RESTART_SECONDS = 30.0
STEADY_SECONDS = 60.0
STARTUP_EXITS = 3
# Services that may run as several processes taking calls and events from the same queues: the catalogue,
# whose bulk imports are one core's work per process. The others run once: the gateways listen on a port,
# and timers (notices' retries, the daily pass) and the chained access record have not been shown safe twice.
REPLICABLE = ("catalog",)
_PR_SET_PDEATHSIG = 1


def die_with_parent():
    """Linux: have the kernel send SIGTERM to this process if its parent dies, so no process outlives the run."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def how_it_ended(returncode):
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


class Backoff:
    """How long a process that exited waits before it is started again."""

    def __init__(self, first=FIRST_RESTART_SECONDS, longest=LONGEST_RESTART_SECONDS, steady=STEADY_SECONDS):
        self.first, self.longest, self.steady = first, longest, steady
        self.next_wait = first

    def wait_after(self, uptime):
        """The wait before the next start of a process that has just exited after running ``uptime`` seconds."""
        if uptime >= self.steady:
            self.next_wait = self.first
        wait, self.next_wait = self.next_wait, min(self.longest, 2 * self.next_wait)
        return wait


class ServiceProcess:
    """One process of the run: the service it serves, its operating-system process, and its exits."""

    def __init__(self, service, replica):
        self.service = service
        self.name = service if replica == 1 else f"{service}-{replica}"
        self.backoff = Backoff()
        self.popen = None
        self.started_at = None
        self.restart_at = None  # while it is down: when it is to be started again
        self.exits = 0


def broker_reachable(broker_url):
    parts = urlsplit(broker_url)
    try:
        default_port = 5671 if parts.scheme == "amqps" else 5672
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=3):
            return True
    except OSError:
        return False


class System:
    def __init__(self, environ):
        self.env = dict(environ)
        self.data_dir = private_folder(Path(self.env.get("SHIORI_DATA_DIR", "var")).resolve())
        private_folder(self.data_dir / "logs")
        self.env["SHIORI_DATA_DIR"] = str(self.data_dir)
        self.deployment = Deployment(self.env, LocalSecrets(self.data_dir))
        host = self.env.get("SHIORI_GATEWAY_HOST", "127.0.0.1")
        scheme = "https" if self.env.get("SHIORI_TLS_CERT") else "http"
        self.url = f"{scheme}://{host}:{self.env.get('SHIORI_GATEWAY_PORT', '8000')}"
        opac_host = self.env.get("SHIORI_OPAC_HOST", "127.0.0.1")
        opac_scheme = "https" if self.env.get("SHIORI_OPAC_TLS_CERT", self.env.get("SHIORI_TLS_CERT")) else "http"
        self.opac_url = f"{opac_scheme}://{opac_host}:{self.env.get('SHIORI_OPAC_PORT', '8001')}"
        # The OPAC calls this gateway for signed-in residents, from this machine.
        self.env.setdefault("SHIORI_OPAC_API_URL", self.url)
        self.env.setdefault("SHIORI_TRUSTED_PROXIES", "127.0.0.1")
        self.processes = {}
        self.stopping = False

    def replicas(self):
        """How many processes each service runs: ``SHIORI_REPLICAS=catalog=2`` runs two catalogue processes.
        Not on SQLite: it has one writer, so the processes would only wait for each other."""
        counts = dict.fromkeys(SERVICE_NAMES, 1)
        for entry in filter(None, self.env.get("SHIORI_REPLICAS", "").replace(" ", "").split(",")):
            name, _, count = entry.partition("=")
            if name not in REPLICABLE or not count.isdigit() or not 1 <= int(count) <= 16:
                raise ValueError(f"SHIORI_REPLICAS: {entry!r} is not <service>=<1 to 16> for one of "
                                 f"{', '.join(REPLICABLE)}")
            if int(count) > 1 and not self.env.get(f"SHIORI_{name.upper()}_DATABASE_URL", "").startswith("postgresql"):
                raise ValueError(f"SHIORI_REPLICAS: {name} runs on SQLite, which has one writer; "
                                 "its replicas need PostgreSQL")
            counts[name] = int(count)
        return counts

    def start(self, name, replica=1):
        process = ServiceProcess(name, replica)
        self.processes[process.name] = process
        self.launch(process, time.monotonic())

    def command(self, service):
        return [sys.executable, "-m", "shiori", "serve", service]

    def launch(self, process, now):
        with open(self.data_dir / "logs" / f"{process.name}.log", "ab") as log:
            process.popen = subprocess.Popen(
                self.command(process.service), env=self.deployment.environment(process.service),
                stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent,
            )
        process.started_at, process.restart_at = now, None

    def supervise(self, now):
        """Note each process that has exited, and start it again once its back-off has passed. It runs in the
        main thread, where the signal handlers only set ``stopping``: a process it starts is in ``processes``
        before ``stop`` looks, and it starts none once a stop has been asked for."""
        for process in self.processes.values():
            if self.stopping:
                return
            if process.restart_at is not None:
                if now >= process.restart_at:
                    self.launch(process, now)
                continue
            returncode = process.popen.poll()
            if returncode is not None:
                process.exits += 1
                wait = process.backoff.wait_after(now - process.started_at)
                process.restart_at = now + wait
                self.report(f"{process.name} {how_it_ended(returncode)}; starting it again in {wait:g} s "
                            f"(exits so far: {process.exits}; its log: {self.data_dir / 'logs' / process.name}.log)")

    def report(self, message):
        """Tell the operator, on stderr and in logs/launcher.log, which outlive the terminal's scrollback."""
        print(message, file=sys.stderr, flush=True)
        with open(self.data_dir / "logs" / "launcher.log", "a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {message}\n")

    def healthy(self):
        # Whether the gateway this run started answers on the address it was told to bind. Its certificate
        # names the host clients use, which need not be that address; nothing but /health goes this way.
        probe = None
        if self.url.startswith("https:"):
            probe = ssl.create_default_context()
            probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=5, context=probe) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def exits(self):
        return {name: process.exits for name, process in self.processes.items() if process.exits}

    def wait_until_healthy(self):
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline and not self.stopping:
            self.supervise(time.monotonic())
            if any(exits >= STARTUP_EXITS for exits in self.exits().values()):
                return False
            if self.healthy():
                return True
            time.sleep(TICK_SECONDS)
        return False

    def stop(self):
        running = [process.popen for process in self.processes.values() if process.popen.poll() is None]
        for popen in running:
            popen.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for popen in running:
            try:
                popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()


def provision_broker(system):
    """The deployment's virtual host, users and permissions (idempotent); answers an error message or None."""
    deployment = system.deployment
    try:
        provision(system.env.get("SHIORI_BROKER_ADMIN_URL") or DEFAULT_ADMIN_URL, deployment.vhost,
                  deployment.broker_passwords([*SERVICE_NAMES, OPERATOR]))
    except ProvisioningFailed as error:
        return f"could not set up the broker's virtual host {deployment.vhost!r}: {error}"
    return None


def provision_from_environment(environ):
    """``python -m shiori provision-broker``: for the data folder's deployment, or one whose passwords are
    given (``SHIORI_BROKER_PASSWORD_<PRINCIPAL>``, as compose does)."""
    failure = provision_broker(System(environ))
    print(failure or "the broker is provisioned", file=sys.stderr if failure else sys.stdout)
    return 1 if failure else 0


def run(environ=None):
    die_with_parent()
    os.umask(0o077)  # every file the system writes under the data folder (databases, logs) is its own
    system = System(os.environ if environ is None else environ)
    try:
        replicas = system.replicas()
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    if replicas["catalog"] > 1:  # enough import batches in flight to keep every catalogue process busy
        system.env.setdefault("SHIORI_IMPORT_IN_FLIGHT", str(2 * replicas["catalog"]))
    broker = system.deployment.broker_url
    if not broker_reachable(broker):
        print(f"No RabbitMQ answers at {urlsplit(broker).netloc.split('@')[-1]}.\n"
              "Start one with `scripts/ensure-broker` (make run does), or `docker compose up -d rabbitmq`.",
              file=sys.stderr)
        return 1
    failure = provision_broker(system)
    if failure:
        print(failure, file=sys.stderr)
        return 1

    def request_stop(_signum, _frame):
        system.stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        for name, count in replicas.items():
            for replica in range(1, count + 1):
                system.start(name, replica)
        print(f"starting {', '.join(SERVICE_NAMES)} (logs in {system.data_dir / 'logs'}) ...", flush=True)
        if not system.wait_until_healthy():
            if not system.stopping:
                print(f"the system did not come up; exits: {system.exits()}; see the logs", file=sys.stderr)
            return 0 if system.stopping else 1
        setup = subprocess.run([sys.executable, "-m", "shiori", "bootstrap"],
                               env=system.deployment.environment(OPERATOR))
        if setup.returncode != 0:
            print("first-run setup failed; see above", file=sys.stderr)
            return 1
        print(f"\nShiori is running: {system.url}  (API {system.url}/api/v1, health {system.url}/health)\n"
              f"Public catalogue (OPAC): {system.opac_url}/api/v1/search?q=...\n"
              "Ctrl-C stops it.", flush=True)
        while not system.stopping:
            system.supervise(time.monotonic())
            time.sleep(TICK_SECONDS)
        return 0
    finally:
        print("stopping ...", flush=True)
        system.stop()
        print("stopped.", flush=True)
