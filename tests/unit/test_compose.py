"""docker-compose.yml gives each container only its own secrets (issue 11, part 6), with no default password,
and everything it needs comes from ``python -m shiori secrets``; it starts each long-running container again when
it exits, and checks its health (issue 14). Read as data: no Docker is needed."""
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shiori.broker import OPERATOR
from shiori.commands.deployment import (
    DATABASES, LOCAL_SECRETS, SIGNERS, broker_password_variable, database_password_variable,
    new_deployment_secrets, signing_key_variable,
)
from shiori.commands.serve import SERVICE_NAMES

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
REFERENCE = re.compile(r"\$\{(\w+)(:-|:\?)?")
PRINCIPALS = [*SERVICE_NAMES, OPERATOR]
# The containers that are no Shiori process, and the one the operator's command runs in.
INFRASTRUCTURE = {"rabbitmq", "postgres", "broker-setup"}
PRINCIPAL_OF = {**{name: name for name in SERVICE_NAMES}, "bootstrap": OPERATOR}
ONE_SHOT = {"broker-setup", "bootstrap"}


def secret_owners():
    """{variable: the one principal that may hold it} for every secret of a deployment."""
    owners = {variable: owner for variable, (_file, _make, owner) in LOCAL_SECRETS.items()}
    owners.update({broker_password_variable(principal): principal for principal in PRINCIPALS})
    owners.update({signing_key_variable(signer): signer for signer in SIGNERS})
    owners.update({database_password_variable(owner): owner for owner in set(DATABASES.values())})
    owners["SHIORI_ADMIN_PASSWORD"] = OPERATOR
    return owners


def referenced(environment):
    return {match.group(1) for value in (environment or {}).values() for match in REFERENCE.finditer(str(value))}


@pytest.mark.privacy(9)
@pytest.mark.parametrize("container", sorted(PRINCIPAL_OF))
def test_each_container_gets_only_its_own_secrets(container):
    owners = secret_owners()
    service = COMPOSE["services"][container]
    foreign = {variable for variable in referenced(service.get("environment"))
               if variable in owners and owners[variable] != PRINCIPAL_OF[container]}
    assert foreign == set()
    uri = service["environment"]["AMQP_URI"]
    assert uri.startswith(f"amqp://shiori.{PRINCIPAL_OF[container]}:"), "its own broker user"


def test_the_opac_gets_nothing_but_its_broker_credentials_and_session_key():
    assert set(COMPOSE["services"]["opac"]["environment"]) == {
        "AMQP_URI", "SHIORI_OPAC_SESSION_KEY", "SHIORI_OPAC_API_URL", "SHIORI_OPAC_HOST", "SHIORI_OPAC_PORT"}


def test_every_service_has_a_database_user_of_its_own():
    for owner in set(DATABASES.values()):
        urls = [value for variable, value in COMPOSE["services"][owner]["environment"].items()
                if variable in DATABASES]
        assert urls and all(url.startswith(f"postgresql+psycopg2://{owner}:") for url in urls)
    script = (REPO / "deploy/postgres-init/10-shiori-databases.sh").read_text()
    assert all(owner in script for owner in set(DATABASES.values()))


def test_no_password_or_key_has_a_default_and_the_secrets_command_makes_every_one():
    made = new_deployment_secrets(PRINCIPALS)
    text = (REPO / "docker-compose.yml").read_text()
    required = {name for name, kind in REFERENCE.findall(text) if kind == ":?"}
    defaulted = {name for name, kind in REFERENCE.findall(text) if kind == ":-"}
    assert not {name for name in defaulted if re.search("PASSWORD|SECRET|KEY", name)}
    assert required <= set(made), "compose needs what python -m shiori secrets does not make"


def test_the_broker_has_no_guest_and_is_provisioned_before_any_service():
    assert COMPOSE["services"]["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_USER"] != "guest"
    for container in PRINCIPAL_OF:
        dependencies = COMPOSE["services"][container]["depends_on"]
        assert dependencies["broker-setup"]["condition"] == "service_completed_successfully"


def test_the_secrets_command_prints_a_fresh_env_file():
    def env_file():
        printed = subprocess.run([sys.executable, "-m", "shiori", "secrets"], capture_output=True, text=True,
                                 check=True, cwd=REPO).stdout
        return dict(line.split("=", 1) for line in printed.splitlines())

    first, second = env_file(), env_file()
    assert set(first) == set(new_deployment_secrets(PRINCIPALS)) and all(first.values())
    assert not {name for name in first if first[name] == second[name]}, "each run makes new secrets"


@pytest.mark.parametrize("container", sorted(set(COMPOSE["services"]) - ONE_SHOT))
def test_each_long_running_container_is_started_again_when_it_exits_and_has_a_health_check(container):
    service = COMPOSE["services"][container]
    assert service["restart"] in ("unless-stopped", "always", "on-failure")
    check = service["healthcheck"]["test"]
    assert check[0] in ("CMD", "CMD-SHELL") and len(check) > 1
    assert {"interval", "timeout", "retries"} <= set(service["healthcheck"])


@pytest.mark.parametrize("container, port", [("gateway", "SHIORI_GATEWAY_PORT"), ("opac", "SHIORI_OPAC_PORT")])
def test_the_gateways_are_healthy_when_their_own_health_route_answers_200(container, port):
    service = COMPOSE["services"][container]
    check = " ".join(service["healthcheck"]["test"])
    # urlopen raises on 503 (a service behind it not answering), and so the check fails.
    assert f"urlopen('http://127.0.0.1:{service['environment'][port]}/health'" in check


BROKER_CONNECTION_CHECK = ["CMD-SHELL", f"grep -qs ':{5672:04X} 01 ' /proc/net/tcp /proc/net/tcp6"]


def test_the_services_without_http_are_healthy_while_connected_to_the_broker():
    for container in set(SERVICE_NAMES) - {"gateway", "opac"}:
        service = COMPOSE["services"][container]
        assert "@rabbitmq:5672/" in service["environment"]["AMQP_URI"]
        assert service["healthcheck"]["test"] == BROKER_CONNECTION_CHECK


def test_the_broker_connection_check_finds_an_established_connection_to_the_port_it_names():
    """The check's command, on this machine, for a port this test listens on in place of RabbitMQ's."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        command = BROKER_CONNECTION_CHECK[1].replace(f":{5672:04X} ", f":{port:04X} ")
        assert subprocess.run(command, shell=True).returncode == 1  # listening is not connected
        with socket.create_connection(("127.0.0.1", port)):
            assert subprocess.run(command, shell=True).returncode == 0


@pytest.mark.parametrize("container", sorted(ONE_SHOT))
def test_the_one_shot_containers_are_not_run_again_once_done(container):
    assert COMPOSE["services"][container]["restart"] == "no"
