"""Servers of a test's (or a benchmark's) own that speak TLS only, beside the machine's: a RabbitMQ node with an
AMQPS listener and no plain one, and a PostgreSQL cluster whose pg_hba admits TLS connections only, with
certificates of a CA made for the run (trustme). Each runs in a process group of its own, stopped whatever
happens, and dies with the process that started it. Used by tests/integration/test_tls.py and
benchmarks/privacy_cost.py --tls."""
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
import warnings
from contextlib import closing, contextmanager, suppress
from pathlib import Path

import psycopg2
import requests
import trustme

from shiori.commands.launcher import die_with_parent
from support import free_port

RABBITMQ_SERVER = shutil.which("rabbitmq-server", path="/usr/lib/rabbitmq/bin") or shutil.which("rabbitmq-server")
EPMD = shutil.which("epmd")
POSTGRES_BIN = max(glob.glob("/usr/lib/postgresql/*/bin/postgres"), default=None,
                   key=lambda path: int(Path(path).parent.parent.name))


class ServerFailed(Exception):
    """A server of ours did not start."""


def missing_binaries():
    """Why these servers cannot be started here (the packages to install), or nothing."""
    return [reason for missing, reason in (
        (not (RABBITMQ_SERVER and EPMD), "no rabbitmq-server (and epmd) to start a TLS-only broker node: "
                                         "apt-get install rabbitmq-server"),
        (not POSTGRES_BIN, "no /usr/lib/postgresql/*/bin/postgres to start a TLS-only cluster: "
                           "apt-get install postgresql"),
    ) if missing]


HOST = "localhost"  # the one name on the servers' certificates; 127.0.0.1 is not on them
STARTUP_SECONDS = 60
STOP_SECONDS = 20

def _tail(path, lines=30):
    with suppress(OSError):
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextmanager
def child_process(args, log_path, ready, stop_signal=signal.SIGTERM, **popen):
    """A server process of this test's own, in a process group of its own, yielded once ``ready()``; stopped
    with ``stop_signal`` whatever happens, and anything left of its group killed after STOP_SECONDS. The
    kernel stops it too should the test process die first."""
    with open(log_path, "wb") as log:
        with warnings.catch_warnings():
            # eventlet warns of any fork (a preexec_fn needs one); this child sets its death signal and execs.
            warnings.filterwarnings("ignore", message="Using fork", category=DeprecationWarning)
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, preexec_fn=die_with_parent, **popen)
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while not ready():
                if process.poll() is not None:
                    raise ServerFailed(f"{Path(args[0]).name} exited ({process.returncode}):\n{_tail(log_path)}")
                if time.monotonic() > deadline:
                    raise ServerFailed(f"{Path(args[0]).name} not ready in {STARTUP_SECONDS} s:\n{_tail(log_path)}")
                time.sleep(0.25)
            yield process
        finally:
            process.send_signal(stop_signal)
            with suppress(subprocess.TimeoutExpired):
                process.wait(STOP_SECONDS)
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def port_answers(port):
    with suppress(OSError), closing(socket.create_connection(("127.0.0.1", port), timeout=1)):
        return True
    return False


def certificates(folder, identities=(HOST,)):
    """A certificate authority of the caller's, and one certificate for ``identities`` that every server uses:
    files ``ca``, ``cert`` and ``key`` in ``folder``."""
    authority = trustme.CA(organization_name="Shiori test CA")
    certificate = authority.issue_cert(*identities)
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    authority.cert_pem.write_to_path(files["ca"])
    certificate.cert_chain_pems[0].write_to_path(files["cert"])
    certificate.private_key_pem.write_to_path(files["key"])
    return files


def rabbitmq_node_environment(base, name, dist_port, epmd_port):
    """The environment of a RabbitMQ node of a test's own under ``base`` (its ``rabbitmq.conf`` written there
    first): its plugins, name, ports and files, none of them the system node's."""
    (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
    (base / "rabbitmq-env.conf").write_text("")  # not the system node's (its name and ports)
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(base / "home"), "LANG": "C.UTF-8",
        "ERL_EPMD_PORT": str(epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "RABBITMQ_NODENAME": f"{name}@localhost",
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_DIST_PORT": str(dist_port),
    }


@contextmanager
def tls_broker(folder, ca):
    """A RabbitMQ node with an AMQPS listener and no plain one, its management API on loopback HTTP for the
    provisioning, and its own epmd, so that nothing of it outlives the test."""
    base = folder / "rabbitmq"
    (base / "home").mkdir(parents=True)
    amqps_port, admin_port, dist_port, epmd_port = (free_port() for _ in range(4))
    (base / "rabbitmq.conf").write_text(
        "listeners.tcp = none\n"
        f"listeners.ssl.default = 127.0.0.1:{amqps_port}\n"
        f"ssl_options.cacertfile = {ca['ca']}\nssl_options.certfile = {ca['cert']}\nssl_options.keyfile = {ca['key']}\n"
        "ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n"
        f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {admin_port}\n"
        "collect_statistics_interval = 500\n")  # so that the connections' list is soon up to date
    environ = rabbitmq_node_environment(base, f"shiori-tls-{uuid.uuid4().hex[:6]}", dist_port, epmd_port)
    admin_url = f"http://guest:guest@127.0.0.1:{admin_port}"

    def answers():
        with suppress(requests.RequestException):
            return requests.get(f"http://127.0.0.1:{admin_port}/api/overview", auth=("guest", "guest"),
                                timeout=2).ok and port_answers(amqps_port)
        return False

    with child_process([EPMD, "-port", str(epmd_port), "-address", "127.0.0.1"], base / "epmd.log",
                       lambda: port_answers(epmd_port), env=environ):
        with child_process([RABBITMQ_SERVER], base / "rabbitmq.log", answers, env=environ):
            yield {"url": f"amqps://{HOST}:{amqps_port}", "port": amqps_port, "admin_url": admin_url}


@contextmanager
def tls_postgres(folder, ca, fsync=False):
    """A PostgreSQL cluster on loopback whose pg_hba admits TLS connections only (hostssl), run as the
    postgres user when the test runs as root (PostgreSQL refuses to run as root)."""
    as_user = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
    bin_dir = Path(POSTGRES_BIN).parent
    data = folder / "postgres"
    data.mkdir(mode=0o700)
    for source, name in ((ca["cert"], "server.crt"), (ca["key"], "server.key")):
        shutil.copy(source, data / name)
        (data / name).chmod(0o600)
    if as_user:
        for path in (data, data / "server.crt", data / "server.key"):
            shutil.chown(path, "postgres", "postgres")
    # initdb wants an empty folder: it makes the cluster in one beside the certificates, which then move in.
    cluster = data / "cluster"
    subprocess.run([bin_dir / "initdb", "-D", cluster, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--locale=C.UTF-8"], check=True, capture_output=True, timeout=120, **as_user)
    for name in ("server.crt", "server.key"):
        (data / name).rename(cluster / name)
    port = free_port()
    with open(cluster / "postgresql.conf", "a") as conf:
        conf.write(f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n"
                   "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                   f"fsync = {'on' if fsync else 'off'}\nmax_connections = 200\n")
    (cluster / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n")
    server = {"port": port, "ca": ca["ca"]}

    def answers():
        with suppress(psycopg2.OperationalError):
            psycopg2.connect(host=HOST, port=port, user="postgres", dbname="postgres", sslmode="verify-full",
                             sslrootcert=str(ca["ca"]), connect_timeout=2).close()
            return True
        return False

    # SIGINT: PostgreSQL's fast shutdown, which does not wait for sessions to end.
    with child_process([POSTGRES_BIN, "-D", str(cluster)], folder / "postgres.log", answers, signal.SIGINT,
                       **as_user):
        yield server
