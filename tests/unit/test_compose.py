"""docker-compose.yml gives each container only its own secrets (issue 11, part 6), with no default password,
and everything it needs comes from ``python -m shiori secrets``. Read as data: no Docker is needed."""
import re
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
