"""A RabbitMQ node and a PostgreSQL cluster of the chaos run's own, which it may stop and start again: the
machine's broker (:5672) and server (:5432) serve others, and stay untouched.

Each is a process group of its own that dies with the process that started it (tests/tls_servers.py), on
free ports, with its data in a folder of the run's. A restart keeps that data: the broker's durable queues,
users and persistent messages, the cluster's databases.
"""
import os
import shutil
import signal
import subprocess
import time
import warnings
from contextlib import suppress
from pathlib import Path

import psycopg2
import requests

from shiori.commands.launcher import die_with_parent
from support import free_port
from tls_servers import EPMD, POSTGRES_BIN, RABBITMQ_SERVER, ServerFailed, port_answers, rabbitmq_node_environment

STARTUP_SECONDS = 90
STOP_SECONDS = 30


def why_not_here():
    """What this machine lacks to run the private servers, or None."""
    missing = [reason for lacking, reason in (
        (not (RABBITMQ_SERVER and EPMD), "no rabbitmq-server and epmd (apt-get install rabbitmq-server)"),
        (not POSTGRES_BIN, "no /usr/lib/postgresql/*/bin/postgres (apt-get install postgresql)"),
    ) if lacking]
    return "; ".join(missing) or None


class ServerProcess:
    """One server process that may be stopped and started again, its output appended to ``log_path``."""

    def __init__(self, args, log_path, ready, stop_signal=signal.SIGTERM, **popen):
        self.args, self.log_path, self.ready, self.stop_signal, self.popen = args, log_path, ready, stop_signal, popen
        self.process = None

    def start(self):
        with open(self.log_path, "ab") as log, warnings.catch_warnings():
            # eventlet warns of any fork (a preexec_fn needs one); this child sets its death signal and execs.
            warnings.filterwarnings("ignore", message="Using fork", category=DeprecationWarning)
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, preexec_fn=die_with_parent, **self.popen)
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self.ready():
            if self.process.poll() is not None:
                raise ServerFailed(f"{Path(self.args[0]).name} exited ({self.process.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerFailed(f"{Path(self.args[0]).name} not ready in {STARTUP_SECONDS} s:\n{self.tail()}")
            time.sleep(0.25)

    def stop(self):
        """Stop it with its stop signal, and anything left of its process group after STOP_SECONDS."""
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            self.process.send_signal(self.stop_signal)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(STOP_SECONDS)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def tail(self, lines=30):
        with suppress(OSError):
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])
        return ""


class PrivateBroker:
    """A RabbitMQ node on free ports with its management API and its own epmd; ``restart`` stops the node
    (gracefully, as an operator's restart does) and starts it again on the same data."""

    def __init__(self, folder):
        base = folder / "rabbitmq"
        (base / "home").mkdir(parents=True)
        self.port, self.admin_port, dist_port, epmd_port = (free_port() for _ in range(4))
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
            f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.admin_port}\n")
        environ = rabbitmq_node_environment(base, f"shiori-chaos-{self.port}", dist_port, epmd_port)
        self.url = f"amqp://127.0.0.1:{self.port}"
        self.admin_url = f"http://guest:guest@127.0.0.1:{self.admin_port}"
        self.epmd = ServerProcess([EPMD, "-port", str(epmd_port), "-address", "127.0.0.1"], base / "epmd.log",
                                  lambda: port_answers(epmd_port), env=environ)
        self.node = ServerProcess([RABBITMQ_SERVER], base / "rabbitmq.log", self.answers, env=environ)

    def answers(self):
        with suppress(requests.RequestException):
            return requests.get(f"http://127.0.0.1:{self.admin_port}/api/overview", auth=("guest", "guest"),
                                timeout=2).ok and port_answers(self.port)
        return False

    def start(self):
        self.epmd.start()
        self.node.start()

    def restart(self):
        self.node.stop()
        self.node.start()

    def stop(self):
        self.node.stop()
        self.epmd.stop()


class PrivatePostgres:
    """A PostgreSQL cluster on a free loopback port, run as the postgres user when the test runs as root
    (PostgreSQL refuses root); ``stop`` is a fast shutdown, ``start`` brings it back on the same data."""

    def __init__(self, folder):
        self.as_user = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
        bin_dir = Path(POSTGRES_BIN).parent
        cluster = folder / "postgres"
        cluster.mkdir(mode=0o700)
        if self.as_user:
            shutil.chown(cluster, "postgres", "postgres")
        subprocess.run([bin_dir / "initdb", "-D", cluster, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                        "--locale=C.UTF-8"], check=True, capture_output=True, timeout=120, **self.as_user)
        self.port = free_port()
        with open(cluster / "postgresql.conf", "a") as conf:
            # fsync off: the outage is a clean shutdown, which writes everything out anyway.
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
                       "fsync = off\nmax_connections = 300\n")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        # SIGINT: the fast shutdown, which does not wait for sessions to end.
        self.server = ServerProcess([POSTGRES_BIN, "-D", str(cluster)], folder / "postgres.log", self.answers,
                                    signal.SIGINT, **self.as_user)

    def answers(self):
        with suppress(psycopg2.OperationalError):
            psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             connect_timeout=2).close()
            return True
        return False

    def start(self):
        self.server.start()

    def stop(self):
        self.server.stop()
