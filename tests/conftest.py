"""Fixtures for the real resources the suite needs: a RabbitMQ broker, databases (SQLite and PostgreSQL),
and the running system.

Where each comes from: the environment first (SHIORI_BROKER_URL with SHIORI_BROKER_ADMIN_URL,
SHIORI_TEST_POSTGRES_URL); else a testcontainers container when a Docker engine answers; else the local
services (RabbitMQ on 127.0.0.1:5672 with its management API on :15672, PostgreSQL on 127.0.0.1:5432 as
``postgres``). On the broker the suite provisions a deployment of its own, as ``make run`` does: a virtual
host for this run, a user per service with only the permissions its code needs, and no access for guest,
so every test runs with the broker's isolation on.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()  # before anything imports sockets, kombu or database drivers

import base64  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import uuid  # noqa: E402
from contextlib import closing, contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

import pytest  # noqa: E402
import requests  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402
from nameko.testing.utils import get_extension  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402
from shiori.broker import OPERATOR, ScopedStandaloneReplyListener  # noqa: E402
from shiori.clock import Clock  # noqa: E402
from shiori.context import ContextSigner  # noqa: E402
from shiori.commands.calls import operator_rpc, wait_for_libraries  # noqa: E402
from shiori.config import load_config  # noqa: E402
from shiori.commands.deployment import Deployment, LocalSecrets  # noqa: E402
from shiori.commands.provision import DEFAULT_ADMIN_URL, deprovision, provision  # noqa: E402
from services.patrons.vault import new_master_key_spec  # noqa: E402
from shiori.commands.serve import SERVICE_NAMES, service_class  # noqa: E402
from browsers import DESKTOP, PHONE, chromium_and_driver, open_browser  # noqa: E402
from support import RPC_TIMEOUT, MailCatcher, free_port  # noqa: E402

TENANT = "testcity"
ADMIN = {"username": "test-admin", "password": "a-long-test-password", "role": "admin", "libraries": []}

LOCAL_BROKER = "amqp://127.0.0.1:5672"
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def docker_answers():
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:  # no Docker SDK, no socket, no daemon: all mean "use the local services"
        return False


class TestBroker:
    """The suite's own deployment on the broker: its virtual host, and every principal's credentials."""

    def __init__(self, broker_url, admin_url, secrets_folder):
        self.broker_url, self.admin_url = broker_url, admin_url
        self.vhost = f"shiori-test-{uuid.uuid4().hex[:8]}"
        self.secrets = LocalSecrets(secrets_folder)

    def deployment(self, environ):
        """The deployment with these settings, on this broker, sharing the suite's secrets."""
        return Deployment({**environ, "SHIORI_BROKER_URL": self.broker_url, "SHIORI_BROKER_VHOST": self.vhost},
                          self.secrets)

    def amqp_uri(self, principal=OPERATOR):
        return self.deployment({}).amqp_uri(principal)


@contextmanager
def provisioned(broker_url, admin_url, secrets_folder):
    broker = TestBroker(broker_url, admin_url, secrets_folder)
    provision(admin_url, broker.vhost, broker.deployment({}).broker_passwords([*SERVICE_NAMES, OPERATOR]))
    try:
        yield broker
    finally:
        deprovision(admin_url, broker.vhost)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    secrets_folder = tmp_path_factory.mktemp("secrets")
    if os.environ.get("SHIORI_BROKER_ADMIN_URL"):
        with provisioned(os.environ.get("SHIORI_BROKER_URL", LOCAL_BROKER), os.environ["SHIORI_BROKER_ADMIN_URL"],
                         secrets_folder) as broker:
            yield broker
    elif docker_answers():
        from testcontainers.community.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3.13-management").with_exposed_ports(15672) as container:
            host = container.get_container_host_ip()
            with provisioned(f"amqp://{host}:{container.get_exposed_port(container.port)}",
                             f"http://guest:guest@{host}:{container.get_exposed_port(15672)}",
                             secrets_folder) as broker:
                yield broker
    else:
        with provisioned(LOCAL_BROKER, DEFAULT_ADMIN_URL, secrets_folder) as broker:
            yield broker


@pytest.fixture(scope="session")
def amqp_uri(broker):
    """The operator's URI: the one principal that may look at every queue (as the tests do)."""
    return broker.amqp_uri()


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server URL on which the suite may create and drop databases."""
    if os.environ.get("SHIORI_TEST_POSTGRES_URL"):
        yield os.environ["SHIORI_TEST_POSTGRES_URL"]
        return
    if docker_answers():
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            yield container.get_connection_url()
        return
    try:
        with closing(socket.create_connection(("127.0.0.1", 5432), timeout=2)):
            yield LOCAL_POSTGRES
            return
    except OSError:
        pass
    if os.environ.get("SHIORI_REQUIRE_POSTGRES") == "1":
        pytest.fail("SHIORI_REQUIRE_POSTGRES=1 but no PostgreSQL is reachable")
    pytest.skip("no PostgreSQL reachable (set SHIORI_TEST_POSTGRES_URL, or run scripts/ensure-postgres)")


@contextmanager
def postgres_databases(server_url, names):
    """Fresh databases on the server, one per name, dropped afterwards; yields SQLAlchemy URLs."""
    admin = create_engine(server_url.replace("postgresql://", "postgresql+psycopg2://", 1), isolation_level="AUTOCOMMIT",
                          pool_pre_ping=True)  # the server may have been restarted meanwhile (tests/chaos)
    prefix = f"shiori_test_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(server_url)
    urls = {}
    with admin.connect() as connection:
        for name in names:
            database = f"{prefix}_{name}"
            connection.execute(text(f'CREATE DATABASE "{database}"'))
            urls[name] = urlunsplit(("postgresql+psycopg2", parts.netloc, f"/{database}", "", ""))
    try:
        yield urls
    finally:
        with admin.connect() as connection:
            for url in urls.values():
                database = urlsplit(url).path.lstrip("/")
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


# Each service's database, and the variable that names it.
DATABASES = {
    "patrons": "SHIORI_PATRONS_DATABASE_URL",
    "loans": "SHIORI_LOANS_DATABASE_URL",
    "catalog": "SHIORI_CATALOG_DATABASE_URL",
    "statistics": "SHIORI_STATISTICS_DATABASE_URL",
    "notices": "SHIORI_NOTICES_DATABASE_URL",
}
# The erasing stores (shiori/keystore.py): SQLite files whatever the services' databases are.
KEY_STORES = {
    "patron_keys": "SHIORI_PATRONS_KEYS_DATABASE_URL",
    "loan_borrowers": "SHIORI_LOANS_BORROWERS_DATABASE_URL",
}


def key_store_urls(folder):
    return {name: f"sqlite:///{folder}/{name}.db" for name in KEY_STORES}


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database_urls(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("databases")
    key_stores = key_store_urls(folder)
    if request.param == "sqlite":
        yield {**{name: f"sqlite:///{folder}/{name}.db" for name in DATABASES}, **key_stores}
    else:
        with postgres_databases(request.getfixturevalue("postgres_server"), DATABASES) as urls:
            yield {**urls, **key_stores}


@pytest.fixture(scope="session")
def patron_keys(database_urls):
    """The patrons service's master keys and lookup key, for as long as its databases live (a test that
    rotates the master key changes them here, for the modules after it)."""
    return {
        "SHIORI_PATRONS_MASTER_KEYS": new_master_key_spec("test1"),
        "SHIORI_PATRONS_LOOKUP_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }


class SmtpServer:
    """A real SMTP server in this process (aiosmtpd) on a fixed port, which a test may stop and start again."""

    def __init__(self):
        self.port, self.handler, self.controller = free_port(), MailCatcher(), None

    def start(self):
        from aiosmtpd.controller import Controller

        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        self.controller.stop()


@pytest.fixture(scope="session")
def smtp_server():
    """Where the notices service sends its mail."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


class RunningSystem:
    """Every service in this process, each in its own container with its own configuration."""

    def __init__(self, broker, database_urls, keys, smtp_port):
        self.amqp_uri = broker.amqp_uri()
        self.database_urls = database_urls
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.opac_port = free_port()
        self.opac_url = f"http://127.0.0.1:{self.opac_port}"
        self.environ = {
            "SHIORI_GATEWAY_PORT": str(self.port),
            "SHIORI_OPAC_PORT": str(self.opac_port),
            "SHIORI_TOKEN_SECRET": "test-secret-" + "x" * 40,
            "SHIORI_GATEWAY_SESSION_KEY": "test-desk-sessions-" + "x" * 40,
            "SHIORI_OPAC_SESSION_KEY": "test-opac-sessions-" + "x" * 40,
            "SHIORI_TRUSTED_PROXIES": "127.0.0.1",
            "SHIORI_RPC_TIMEOUT": str(RPC_TIMEOUT),
            "SHIORI_TENANT": TENANT,
            "SHIORI_SMTP_PORT": str(smtp_port),
            "SHIORI_NOTICE_RETRY_FIRST_SECONDS": "1",
            **{{**DATABASES, **KEY_STORES}[name]: url for name, url in database_urls.items()},
        }
        self.keys = keys
        self.broker = broker
        self.runners = {}

    def environment(self, principal):
        """What the process ``principal`` is given (shiori.commands.deployment): its own secrets, no one else's."""
        return self.broker.deployment({**self.environ, **self.keys}).environment(principal)

    @property
    def operator_environ(self):
        """For an operators' command run as a process of its own."""
        return {**self.environment(OPERATOR), "PATH": "/usr/bin:/bin"}

    def start(self, name):
        self.runners[name] = self.another(name)

    def another(self, name):
        """One more started process-alike of a service, sharing its queues (as SHIORI_REPLICAS runs it); the
        caller stops it."""
        runner = ServiceRunner(load_config(name, self.environment(name)))
        runner.add_service(service_class(name))
        runner.start()
        return runner

    def stop(self, name):
        self.runners.pop(name).stop()

    def stop_all(self):
        # Each container takes a second or two to wind its consumers down; together they take the longest one.
        list(eventlet.GreenPool().imap(self.stop, list(self.runners)))

    def clocks(self):
        found = [get_extension(container, Clock) for runner in self.runners.values() for container in runner.containers]
        return [clock for clock in found if clock is not None]

    def today(self):
        """The library's day as the services see it (moved by ``travel``)."""
        [loans] = self.runners["loans"].containers
        return get_extension(loans, Clock).time.today()

    @contextmanager
    def travel(self, by=None, to=None):
        """Every service's clock moved ``by`` a timedelta or ``to`` a library day while the block runs: a loan
        falls due, a pickup window ends, a card expires as the days pass, not by rewriting the services' rows."""
        clocks = self.clocks()
        shifts = [clock.time.shift for clock in clocks]
        for clock in clocks:
            clock.travel(by, to)
        try:
            yield
        finally:
            for clock, shift in zip(clocks, shifts):
                clock.time.shift = shift

    @contextmanager
    def rpc(self, tenant=TENANT):
        with operator_rpc(tenant, 30, self.environment(OPERATOR)) as proxy:
            yield proxy

    @contextmanager
    def rpc_as(self, identity, signer="gateway", timeout=10):
        """Calls straight to the services with ``identity``, vouched for by ``signer``'s key, as the gateway
        would make them (the operator's broker user carries them)."""
        context = ContextSigner(signer, self.broker.secrets.signing_key(signer)).sign({"tenant": TENANT, **identity})
        with ClusterRpcProxy({"AMQP_URI": self.amqp_uri, "BROKER_PRINCIPAL": OPERATOR}, context_data=context,
                             timeout=timeout, reply_listener_cls=ScopedStandaloneReplyListener) as proxy:
            yield proxy


@pytest.fixture(scope="module")
def system(broker, database_urls, patron_keys, smtp_server):
    """Per test module, so that no in-process service still consumes from the broker when a module (the
    end-to-end tests) starts the system as processes on the same broker."""
    running = RunningSystem(broker, database_urls, patron_keys, smtp_server.port)
    for name in SERVICE_NAMES:
        running.start(name)
    with running.rpc() as rpc:
        rpc.catalog.ensure_tenant({"code": TENANT, "name": "試験市"})
        rpc.patrons.ensure_staff_account(ADMIN)
        if not rpc.catalog.list_libraries():  # the databases live for the session, the services per module
            for library in ({"code": "main", "name": "試験市立図書館", "kind": "main"},
                            {"code": "east", "name": "試験市立図書館 東分館", "kind": "branch"}):
                rpc.catalog.add_library(library)
        wait_for_libraries(rpc, ["main", "east"])
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def staff(system):
    """An HTTP session logged in as the tenant's admin."""
    session = requests.Session()
    response = session.post(f"{system.url}/api/v1/auth/token",
                            json={"username": ADMIN["username"], "password": ADMIN["password"]}, timeout=10)
    response.raise_for_status()
    session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    session.base_url = system.url
    yield session
    session.close()  # an open keep-alive connection would hold the gateway's shutdown


@pytest.fixture
def sqlite_session():
    """A session on a fresh in-memory SQLite database with a service's tables (for worker_factory tests)."""
    from sqlalchemy.orm import sessionmaker
    from sqlalchemy.pool import StaticPool

    from shiori.db import create_schema

    engines = []

    def open_session(metadata):
        engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        engines.append(engine)
        create_schema(engine, metadata)
        return sessionmaker(engine, expire_on_commit=False)()

    yield open_session
    for engine in engines:
        engine.dispose()

# --- a real browser for the pages (tests/browser/) ---------------------------------------------------------
# Debian's Chromium through Selenium (tests/browsers.py). .ci/run installs Chromium, its driver and the
# Japanese fonts where they are missing; without them the browser tests are skipped, except in CI (CI=true),
# where their absence is a failure. A failing test leaves a screenshot of its page in tests/browser/screenshots/.

SCREENSHOTS = Path(__file__).resolve().parent / "browser" / "screenshots"


@pytest.fixture(scope="session")
def chromium():
    found = chromium_and_driver()
    if None in found:
        if os.environ.get("CI") == "true":
            pytest.fail("no Chromium or chromedriver: .ci/run installs chromium, chromium-driver, fonts-noto-cjk")
        pytest.skip("no Chromium here (apt-get install --no-install-recommends chromium chromium-driver "
                    "fonts-noto-cjk)")
    return found


@pytest.fixture
def browser(chromium, request):
    yield from _browser(chromium, request, DESKTOP, "")


@pytest.fixture
def phone(chromium, request):
    yield from _browser(chromium, request, PHONE, "-phone")


def _browser(chromium, request, size, suffix):
    opened = open_browser(chromium, size)
    yield opened
    if getattr(request.node, "failed", False):
        SCREENSHOTS.mkdir(exist_ok=True)
        opened.save_screenshot(str(SCREENSHOTS / f"{request.node.name}{suffix}.png"))
    opened.quit()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        item.failed = True
    return report
