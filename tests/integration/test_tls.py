"""TLS on every hop (PRIVACY.md 12), with certificates of the test's own CA: a RabbitMQ node that listens on
AMQPS only and a PostgreSQL cluster that admits TLS connections only, both started here beside the system's
on ports of their own, and the services configured as a deployment would be. A check-out goes over HTTPS to
the staff gateway, AMQPS between the services and TLS with ``sslmode=verify-full`` to the databases; each
hop refuses plain text, and a certificate for another host name.

Needs RabbitMQ's and PostgreSQL's server binaries (Debian's rabbitmq-server and postgresql packages, which
.ci/run installs); the module is skipped, saying which is missing, where they are not, and fails under CI.
"""
import base64
import glob
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
import warnings
from contextlib import closing, contextmanager, suppress
from pathlib import Path

import eventlet
import psycopg2
import pytest
import requests
import trustme
from kombu import Connection

from conftest import ADMIN, DATABASES, TENANT, RunningSystem, key_store_urls, provisioned
from services.patrons.vault import new_master_key_spec
from shiori.launcher import die_with_parent
from shiori.serve import SERVICE_NAMES
from support import free_port, patron_fields, wait_until

RABBITMQ_SERVER = shutil.which("rabbitmq-server", path="/usr/lib/rabbitmq/bin") or shutil.which("rabbitmq-server")
EPMD = shutil.which("epmd")
POSTGRES_BIN = max(glob.glob("/usr/lib/postgresql/*/bin/postgres"), default=None,
                   key=lambda path: int(Path(path).parent.parent.name))
MISSING = [reason for missing, reason in (
    (not (RABBITMQ_SERVER and EPMD), "no rabbitmq-server (and epmd) to start a TLS-only broker node: "
                                     "apt-get install rabbitmq-server"),
    (not POSTGRES_BIN, "no /usr/lib/postgresql/*/bin/postgres to start a TLS-only cluster: apt-get install postgresql"),
) if missing]
if MISSING and os.environ.get("CI") == "true":  # .ci/run installs both: there, missing is a failure
    pytest.fail("; ".join(MISSING), pytrace=False)
if MISSING:
    pytest.skip("; ".join(MISSING), allow_module_level=True)

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
                    pytest.fail(f"{Path(args[0]).name} exited ({process.returncode}):\n{_tail(log_path)}")
                if time.monotonic() > deadline:
                    pytest.fail(f"{Path(args[0]).name} not ready in {STARTUP_SECONDS} s:\n{_tail(log_path)}")
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


@pytest.fixture(scope="module")
def folder():
    """World-traversable, so that the postgres user reaches its data folder inside."""
    path = Path(tempfile.mkdtemp(prefix="shiori-tls-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def ca(folder):
    """The test's certificate authority, and one certificate for ``localhost`` that every server uses."""
    authority = trustme.CA(organization_name="Shiori test CA")
    certificate = authority.issue_cert(HOST)
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    authority.cert_pem.write_to_path(files["ca"])
    certificate.cert_chain_pems[0].write_to_path(files["cert"])
    certificate.private_key_pem.write_to_path(files["key"])
    return files


@pytest.fixture(scope="module")
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
    (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
    (base / "rabbitmq-env.conf").write_text("")  # not the system node's (its name and ports)
    environ = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(base / "home"), "LANG": "C.UTF-8",
        "ERL_EPMD_PORT": str(epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "RABBITMQ_NODENAME": f"shiori-tls-{uuid.uuid4().hex[:6]}@localhost",
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_DIST_PORT": str(dist_port),
    }
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


@pytest.fixture(scope="module")
def tls_postgres(folder, ca):
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
                   "fsync = off\nmax_connections = 200\n")
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


def verified_database_urls(server, key_store_folder):
    """A database per service on the TLS cluster, each URL with ``sslmode=verify-full`` and the test's CA (and
    the erasing stores, SQLite files whatever the databases are)."""
    prefix = f"shiori_tls_{uuid.uuid4().hex[:8]}"
    connection = psycopg2.connect(host=HOST, port=server["port"], user="postgres", dbname="postgres",
                                  sslmode="verify-full", sslrootcert=str(server["ca"]))
    connection.autocommit = True
    with closing(connection), connection.cursor() as cursor:
        for name in DATABASES:
            cursor.execute(f'CREATE DATABASE "{prefix}_{name}"')
    return {**{name: f"postgresql+psycopg2://postgres@{HOST}:{server['port']}/{prefix}_{name}"
                     f"?sslmode=verify-full&sslrootcert={server['ca']}" for name in DATABASES},
            **key_store_urls(key_store_folder)}


@pytest.fixture(scope="module")
def tls_system(tls_broker, tls_postgres, ca, smtp_server, tmp_path_factory):
    """Every service on the TLS broker and cluster, the gateways on HTTPS with the test's certificate."""
    with provisioned(tls_broker["url"], tls_broker["admin_url"], tmp_path_factory.mktemp("tls-secrets")) as broker:
        keys = {"SHIORI_PATRONS_MASTER_KEYS": new_master_key_spec("tls1"),
                "SHIORI_PATRONS_LOOKUP_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode()}
        database_urls = verified_database_urls(tls_postgres, tmp_path_factory.mktemp("tls-key-stores"))
        running = RunningSystem(broker, database_urls, keys, smtp_server.port)
        running.environ.update({"SHIORI_BROKER_CA": str(ca["ca"]), "SHIORI_TLS_CERT": str(ca["cert"]),
                                "SHIORI_TLS_KEY": str(ca["key"])})
        running.url = f"https://{HOST}:{running.port}"
        running.opac_url = f"https://{HOST}:{running.opac_port}"
        try:
            for name in SERVICE_NAMES:
                running.start(name)
            with running.rpc() as rpc:
                rpc.catalog.ensure_tenant({"code": TENANT, "name": "試験市"})
                rpc.patrons.ensure_staff_account(ADMIN)
                rpc.catalog.add_library({"code": "main", "name": "試験市立図書館", "kind": "main"})
            yield running
        finally:
            runners = list(running.runners.values())
            with eventlet.Timeout(60, False):
                running.stop_all()
            for runner in runners:  # those that did not stop in time (for the others, nothing)
                runner.kill()


@pytest.fixture(scope="module")
def https_staff(tls_system, ca):
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE, where set, would win over the session's own CA
    session.verify = str(ca["ca"])
    response = session.post(f"{tls_system.url}/api/v1/auth/token", timeout=10,
                            json={"username": ADMIN["username"], "password": ADMIN["password"]})
    response.raise_for_status()
    session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    yield session
    session.close()


@pytest.mark.privacy(12)
@pytest.mark.privacy(12)
def test_a_check_out_goes_over_https_amqps_and_postgresql_with_verify_full(tls_system, https_staff, tls_broker,
                                                                          tls_postgres):
    url = tls_system.url
    patron = https_staff.post(f"{url}/api/v1/patrons", json=patron_fields(), timeout=10)
    assert patron.status_code == 201, patron.text
    work = https_staff.post(f"{url}/api/v1/works", json={"title": "坊っちゃん", "authors": [{"name": "夏目 漱石"}]},
                            timeout=10)
    assert work.status_code == 201, work.text
    item = https_staff.post(f"{url}/api/v1/items", timeout=10, json={
        "barcode": "TLS0001", "work_id": work.json()["id"], "library": "main", "call_number": "913.6",
        "shelf_location": "一般書架"})
    assert item.status_code == 201, item.text
    loan = https_staff.post(f"{url}/api/v1/checkouts", timeout=10, json={
        "card_number": patron.json()["card_number"], "item_barcode": "TLS0001", "library": "main"})
    assert loan.status_code == 201, loan.text
    assert loan.json()["due_date"]

    # Every connection the services hold is over TLS: the node has no other listener, and says so.
    def connections():
        listed = requests.get(f"{tls_broker['admin_url'].replace('guest:guest@', '')}/api/connections",
                              auth=("guest", "guest"), timeout=10).json()
        if {"patrons", "loans", "catalog", "gateway", "opac"} <= {entry["user"].rpartition(".")[2] for entry in listed}:
            return listed
        return None

    assert all(connection["ssl"] for connection in wait_until(connections, message="the services' connections"))
    # And so is every connection to the cluster, from every service's pool.
    check = psycopg2.connect(host=HOST, port=tls_postgres["port"], user="postgres", dbname="postgres",
                             sslmode="verify-full", sslrootcert=str(tls_postgres["ca"]))
    with closing(check), check.cursor() as cursor:
        cursor.execute("SELECT a.datname, s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                       "WHERE a.datname LIKE 'shiori_tls_%'")
        sessions = cursor.fetchall()
    assert {name.rpartition("_tls_")[2].partition("_")[2] for name, _ssl in sessions} >= {"patrons", "loans", "catalog"}
    assert all(encrypted for _name, encrypted in sessions)


@pytest.mark.privacy(12)
def test_the_opac_answers_over_https(tls_system, ca):
    response = requests.get(f"{tls_system.opac_url}/api/v1/search", params={"q": "坊っちゃん"}, verify=str(ca["ca"]),
                            timeout=10)
    assert response.status_code == 200, response.text


@pytest.mark.privacy(12)
@pytest.mark.privacy(12)
def test_the_gateway_refuses_plain_http_and_unverified_clients_refuse_it(tls_system):
    for port in (tls_system.port, tls_system.opac_port):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://{HOST}:{port}/health", timeout=5)
        with pytest.raises(requests.exceptions.SSLError):  # the test CA is no system CA
            requests.get(f"https://{HOST}:{port}/health", timeout=5)


@pytest.mark.privacy(12)
@pytest.mark.privacy(12)
def test_the_broker_refuses_plain_amqp_and_its_certificate_is_checked(tls_system, tls_broker, ca):
    operator_uri = tls_system.amqp_uri  # amqps://…@localhost:port/vhost
    plain = operator_uri.replace("amqps://", "amqp://", 1)
    with pytest.raises(OSError, match="closed connection"), Connection(plain, connect_timeout=5) as connection:
        connection.connect()
    checked = {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(ca["ca"])}
    with Connection(operator_uri, ssl={**checked, "server_hostname": HOST}, connect_timeout=5) as connection:
        connection.connect()  # the same credentials over TLS are let in
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"), \
            Connection(operator_uri, ssl={**checked, "server_hostname": "broker.example.org"},
                       connect_timeout=5) as connection:
        connection.connect()
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"), \
            Connection(operator_uri, ssl={"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": HOST},
                       connect_timeout=5) as connection:  # the system's CAs do not know the test's
        connection.connect()


@pytest.mark.privacy(12)
@pytest.mark.privacy(12)
def test_postgresql_refuses_connections_without_tls_and_verify_full_checks_the_host_name(tls_postgres):
    with pytest.raises(psycopg2.OperationalError, match="no pg_hba.conf entry.*no encryption"):
        psycopg2.connect(host=HOST, port=tls_postgres["port"], user="postgres", dbname="postgres",
                         sslmode="disable", connect_timeout=5)
    with pytest.raises(psycopg2.OperationalError, match="does not match host name"):
        psycopg2.connect(host="127.0.0.1", port=tls_postgres["port"], user="postgres", dbname="postgres",
                         sslmode="verify-full", sslrootcert=str(tls_postgres["ca"]), connect_timeout=5)


@pytest.mark.privacy(12)
def test_clients_that_never_finish_a_handshake_hold_nobody_else(tls_system, ca):
    silent = [socket.create_connection(("127.0.0.1", tls_system.port), timeout=10) for _ in range(20)]
    try:
        started = time.monotonic()
        response = requests.get(f"{tls_system.url}/health", verify=str(ca["ca"]), timeout=5)
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 3
    finally:
        for connection in silent:
            connection.close()
