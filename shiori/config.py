"""Service configuration: each service's ``config.yml`` with ``${VAR:default}`` taken from the environment."""
import os
import re
from pathlib import Path

import yaml

from shiori.tls import with_broker_tls

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"

# Innermost placeholders first, so a default may itself contain a placeholder:
# ${SHIORI_LOANS_DATABASE_URL:sqlite:///${SHIORI_DATA_DIR:var}/loans.db}
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^${}]*))?\}")


def expand(text, environ=None):
    environ = os.environ if environ is None else environ

    def replace(match):
        name, default = match.group(1), match.group(2)
        return environ.get(name, default if default is not None else "")

    previous = None
    while previous != text:
        previous, text = text, _PLACEHOLDER.sub(replace, text)
    return text


def load_config(service_name, environ=None):
    environ = os.environ if environ is None else environ
    path = SERVICES_DIR / service_name / "config.yml"
    return with_broker_tls(yaml.safe_load(expand(path.read_text(encoding="utf-8"), environ)) or {}, environ)
