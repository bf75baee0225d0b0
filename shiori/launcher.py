"""``make run``: every service as its own process, the first-run setup, and a clean stop on Ctrl-C/SIGTERM."""
import base64
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from shiori.serve import SERVICE_NAMES

STARTUP_SECONDS = 90
STOP_SECONDS = 15
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


def local_secret(data_dir: Path, name, make):
    """A secret made once per data directory and kept there (mode 0600), for a system run on one machine.
    A real deployment passes its secrets in the environment instead, from wherever it keeps them."""
    path = data_dir / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(make())
    return path.read_text().strip()


def random_key():
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


LOCAL_SECRETS = {  # environment variable: (file in the data directory, how to make one)
    "SHIORI_TOKEN_SECRET": ("token-secret", lambda: secrets.token_urlsafe(48)),
    "SHIORI_PATRONS_MASTER_KEYS": ("master-keys", lambda: f"k1:{random_key()}"),
    "SHIORI_PATRONS_LOOKUP_KEY": ("lookup-key", random_key),
}


def broker_reachable(amqp_uri):
    parts = urlsplit(amqp_uri)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=3):
            return True
    except OSError:
        return False


class System:
    def __init__(self, environ):
        self.env = dict(environ)
        self.data_dir = Path(self.env.get("SHIORI_DATA_DIR", "var")).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        self.env["SHIORI_DATA_DIR"] = str(self.data_dir)
        self.env.setdefault("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
        for variable, (name, make) in LOCAL_SECRETS.items():
            if not self.env.get(variable):
                self.env[variable] = local_secret(self.data_dir, name, make)
        host = self.env.get("SHIORI_GATEWAY_HOST", "127.0.0.1")
        self.url = f"http://{host}:{self.env.get('SHIORI_GATEWAY_PORT', '8000')}"
        opac_host = self.env.get("SHIORI_OPAC_HOST", "127.0.0.1")
        self.opac_url = f"http://{opac_host}:{self.env.get('SHIORI_OPAC_PORT', '8001')}"
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
        process_name = name if replica == 1 else f"{name}-{replica}"
        log = open(self.data_dir / "logs" / f"{process_name}.log", "ab")
        self.processes[process_name] = subprocess.Popen(
            [sys.executable, "-m", "shiori", "serve", name], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent,
        )

    def healthy(self):
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def exited(self):
        return {name: process.returncode for name, process in self.processes.items() if process.poll() is not None}

    def wait_until_healthy(self):
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline and not self.stopping:
            if self.exited():
                return False
            if self.healthy():
                return True
            time.sleep(0.5)
        return False

    def stop(self):
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run(environ=None):
    die_with_parent()
    system = System(os.environ if environ is None else environ)
    try:
        replicas = system.replicas()
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    if replicas["catalog"] > 1:  # enough import batches in flight to keep every catalogue process busy
        system.env.setdefault("SHIORI_IMPORT_IN_FLIGHT", str(2 * replicas["catalog"]))
    if not broker_reachable(system.env["AMQP_URI"]):
        print(f"No RabbitMQ answers at {urlsplit(system.env['AMQP_URI']).netloc.split('@')[-1]}.\n"
              "Start one with `scripts/ensure-broker` (make run does), or `docker compose up -d rabbitmq`.",
              file=sys.stderr)
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
                print(f"the system did not come up; exited: {system.exited()}; see the logs", file=sys.stderr)
            return 0 if system.stopping else 1
        setup = subprocess.run([sys.executable, "-m", "shiori", "bootstrap"], env=system.env)
        if setup.returncode != 0:
            print("first-run setup failed; see above", file=sys.stderr)
            return 1
        print(f"\nShiori is running: {system.url}  (API {system.url}/api/v1, health {system.url}/health)\n"
              f"Public catalogue (OPAC): {system.opac_url}/api/v1/search?q=...\n"
              "Ctrl-C stops it.", flush=True)
        while not system.stopping:
            if system.exited():
                print(f"a service stopped unexpectedly: {system.exited()}; stopping the rest", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        print("stopping ...", flush=True)
        system.stop()
        print("stopped.", flush=True)
