"""What each process of a deployment is given: its own secrets, and no one else's.

A secret is handed only to the process that uses it: the master keys, the lookup key and the access
record's key to the patrons service; the token secret to the staff gateway; each database's URL (which may
hold its password) to its owner; each process its own broker credentials and context signing key. The
public catalogue gets nothing but its broker credentials. A process started by ``make run`` reads its
environment from here; compose gives each container the same (docker-compose.yml).

On one machine (``make run``, the tests) the secrets are made once per data folder and kept there, each in
a file of mode 0600 in a folder of mode 0700. A real deployment passes them in instead.
"""
import base64
import os
import secrets
from pathlib import Path

from shiori.broker import OPERATOR
from shiori.context import keyring_text, new_signing_key
from shiori.commands.provision import amqp_uri

DEFAULT_BROKER_URL = "amqp://127.0.0.1:5672"
DEFAULT_VHOST = "shiori"
# Processes that sign caller contexts: the staff gateway for requests, the services for their own timers
# and event work, the operators' commands. The public catalogue signs nothing: its callers are anonymous.
SIGNERS = ("gateway", "patrons", "loans", "catalog", "statistics", "notices", OPERATOR)
DATABASES = {  # the variable naming each database's URL: the service that owns it
    "SHIORI_PATRONS_DATABASE_URL": "patrons", "SHIORI_PATRONS_KEYS_DATABASE_URL": "patrons",
    "SHIORI_LOANS_DATABASE_URL": "loans", "SHIORI_LOANS_BORROWERS_DATABASE_URL": "loans",
    "SHIORI_CATALOG_DATABASE_URL": "catalog",
    "SHIORI_STATISTICS_DATABASE_URL": "statistics", "SHIORI_NOTICES_DATABASE_URL": "notices",
}


def random_key():
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


# A secret kept per data folder: its variable, its file, how to make one, and the one process it is for.
LOCAL_SECRETS = {
    "SHIORI_TOKEN_SECRET": ("token-secret", lambda: secrets.token_urlsafe(48), "gateway"),
    # Each gateway signs its own web sessions (the desk's, the residents' "my page").
    "SHIORI_GATEWAY_SESSION_KEY": ("gateway-session-key", lambda: secrets.token_urlsafe(48), "gateway"),
    "SHIORI_OPAC_SESSION_KEY": ("opac-session-key", lambda: secrets.token_urlsafe(48), "opac"),
    "SHIORI_PATRONS_MASTER_KEYS": ("master-keys", lambda: f"k1:{random_key()}", "patrons"),
    "SHIORI_PATRONS_LOOKUP_KEY": ("lookup-key", random_key, "patrons"),
    "SHIORI_ACCESS_RECORD_KEY": ("access-record-key", random_key, "patrons"),
}
# Settings that are secrets of one process, when the environment gives them.
# The broker's administrator is the provisioning's alone (the launcher's), never a process's.
GIVEN_SECRETS = {"SHIORI_SMTP_PASSWORD": "notices", "SHIORI_SMTP_USER": "notices",
                 "SHIORI_ADMIN_PASSWORD": OPERATOR, "SHIORI_BROKER_ADMIN_URL": None, **DATABASES}
# Never passed on from the environment of the command that starts the processes.
PER_PROCESS = ("AMQP_URI", "BROKER_PRINCIPAL", "SHIORI_CONTEXT_SIGNING_KEY", "SHIORI_OPAC_AMQP_URI")
PER_PROCESS_PREFIXES = ("SHIORI_BROKER_PASSWORD_",)


def broker_password_variable(principal):
    return f"SHIORI_BROKER_PASSWORD_{principal.upper()}"


def signing_key_variable(signer):
    return f"SHIORI_CONTEXT_KEY_{signer.upper()}"


def database_password_variable(owner):
    return f"SHIORI_DB_PASSWORD_{owner.upper()}"


def new_deployment_secrets(principals):
    """Every secret of a deployment that is given its secrets rather than keeping them in a data folder
    (compose reads them from ``.env``): each process's broker password and context signing key, each
    service's database password, the keys and the administrators' passwords; ``python -m shiori secrets``."""
    signing_keys = {signer: new_signing_key() for signer in SIGNERS}
    made = {variable: make() for variable, (_file, make, _owner) in LOCAL_SECRETS.items()}
    made.update({broker_password_variable(principal): secrets.token_urlsafe(24) for principal in principals})
    made.update({signing_key_variable(signer): key for signer, key in signing_keys.items()})
    made["SHIORI_CONTEXT_VERIFY_KEYS"] = keyring_text(signing_keys)  # public keys: every process gets them
    made.update({database_password_variable(owner): secrets.token_urlsafe(24)
                 for owner in sorted(set(DATABASES.values()))})
    for administrator in ("POSTGRES_PASSWORD", "RABBITMQ_ADMIN_PASSWORD", "SHIORI_ADMIN_PASSWORD"):
        made[administrator] = secrets.token_urlsafe(24)
    return made


def private_folder(path):
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


class LocalSecrets:
    """Secrets made once and kept in a folder (files 0600)."""

    def __init__(self, folder):
        self.folder = private_folder(folder)

    def get(self, name, make):
        path = self.folder / name
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(make())
        return path.read_text().strip()

    def broker_password(self, principal):
        return self.get(f"broker-password.{principal}", lambda: secrets.token_urlsafe(24))

    def signing_key(self, signer):
        return self.get(f"context-key.{signer}", new_signing_key)


def operator_environment(environ):
    """The environment an operators' command runs with: as given (a deployment passes the operator's
    credentials in), or else the operator's of the data folder that ``make run`` keeps."""
    if environ.get("AMQP_URI") and environ.get("SHIORI_CONTEXT_SIGNING_KEY"):
        return environ
    data_dir = Path(environ.get("SHIORI_DATA_DIR", "var")).resolve()
    return Deployment(dict(environ), LocalSecrets(data_dir)).environment(OPERATOR)


class Deployment:
    """One deployment's secrets and broker, and the environment each of its processes gets."""

    def __init__(self, environ, local_secrets):
        self.environ = environ
        self.secrets = local_secrets
        self.broker_url = self.environ.get("SHIORI_BROKER_URL") or DEFAULT_BROKER_URL
        self.vhost = self.environ.get("SHIORI_BROKER_VHOST") or DEFAULT_VHOST
        for variable, (name, make, _owner) in LOCAL_SECRETS.items():
            if not self.environ.get(variable):
                self.environ[variable] = local_secrets.get(name, make)
        self.signing_keys = {signer: local_secrets.signing_key(signer) for signer in SIGNERS}
        self.verify_keys = keyring_text(self.signing_keys)

    def broker_password(self, principal):
        """A principal's broker password: given (``SHIORI_BROKER_PASSWORD_GATEWAY`` …), else the data folder's."""
        return self.environ.get(broker_password_variable(principal)) or \
            self.secrets.broker_password(principal)

    def broker_passwords(self, principals):
        return {principal: self.broker_password(principal) for principal in principals}

    def amqp_uri(self, principal):
        return amqp_uri(self.broker_url, self.vhost, principal, self.broker_password(principal))

    def environment(self, principal):
        """The environment of the process ``principal`` (a service's name, or ``operator`` for a command)."""
        owned = {**{variable: owner for variable, (_n, _m, owner) in LOCAL_SECRETS.items()}, **GIVEN_SECRETS}
        environ = {key: value for key, value in self.environ.items()
                   if key not in PER_PROCESS and not key.startswith(PER_PROCESS_PREFIXES)
                   and (key not in owned or owned[key] == principal)}
        environ["AMQP_URI"] = self.amqp_uri(principal)
        if principal == OPERATOR:
            environ["BROKER_PRINCIPAL"] = OPERATOR
        if principal in self.signing_keys:
            environ["SHIORI_CONTEXT_SIGNING_KEY"] = self.signing_keys[principal]
            environ["SHIORI_CONTEXT_VERIFY_KEYS"] = self.verify_keys
        return environ
