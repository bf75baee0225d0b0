"""TLS on every hop (PRIVACY.md 12), with certificates of the test's own CA: a RabbitMQ node that listens on
AMQPS only and a PostgreSQL cluster that admits TLS connections only, both started here beside the system's
on ports of their own, and the services configured as a deployment would be. A check-out goes over HTTPS to
the staff gateway, AMQPS between the services and TLS with ``sslmode=verify-full`` to the databases; each
hop refuses plain text, and a certificate for another host name.

Needs RabbitMQ's and PostgreSQL's server binaries (Debian's rabbitmq-server and postgresql packages, which
.ci/run installs); the module is skipped, saying which is missing, where they are not, and fails under CI.
"""
import base64
import os
import shutil
import socket
import ssl
import tempfile
import time
import uuid
from contextlib import closing
from pathlib import Path

import eventlet
import psycopg2
import pytest
import requests
from kombu import Connection

from conftest import ADMIN, DATABASES, TENANT, RunningSystem, key_store_urls, provisioned
from services.patrons.vault import new_master_key_spec
from shiori.commands.calls import wait_for_libraries
from shiori.commands.serve import SERVICE_NAMES
import tls_servers as servers
from support import patron_fields, wait_until
from tls_servers import HOST, certificates, missing_binaries


MISSING = missing_binaries()
if MISSING and os.environ.get("CI") == "true":  # .ci/run installs both: there, missing is a failure
    pytest.fail("; ".join(MISSING), pytrace=False)
if MISSING:
    pytest.skip("; ".join(MISSING), allow_module_level=True)


@pytest.fixture(scope="module")
def folder():
    """World-traversable, so that the postgres user reaches its data folder inside."""
    path = Path(tempfile.mkdtemp(prefix="shiori-tls-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def ca(folder):
    return certificates(folder)


@pytest.fixture(scope="module")
def tls_broker(folder, ca):
    with servers.tls_broker(folder, ca) as broker:
        yield broker


@pytest.fixture(scope="module")
def tls_postgres(folder, ca):
    with servers.tls_postgres(folder, ca) as server:
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
                wait_for_libraries(rpc, ["main"])
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
def test_the_gateway_refuses_plain_http_and_unverified_clients_refuse_it(tls_system):
    for port in (tls_system.port, tls_system.opac_port):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://{HOST}:{port}/health", timeout=5)
        with pytest.raises(requests.exceptions.SSLError):  # the test CA is no system CA
            requests.get(f"https://{HOST}:{port}/health", timeout=5)


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
