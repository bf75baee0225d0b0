#!/usr/bin/env bash
# Run once by the postgres image on an empty data volume (docker-compose.yml), as the superuser: for each
# Shiori service a database user (password SHIORI_DB_PASSWORD_<SERVICE>, from .env) that owns the service's
# database, which nobody else may connect to.
set -euo pipefail

for service in patrons loans catalog statistics notices; do
    variable="SHIORI_DB_PASSWORD_${service^^}"
    if [[ -z ${!variable:-} ]]; then
        echo "10-shiori-databases: $variable is not set (python -m shiori secrets > .env)" >&2
        exit 1
    fi
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
         -v service="$service" -v password="${!variable}" <<'SQL'
CREATE ROLE :"service" LOGIN PASSWORD :'password';
CREATE DATABASE :"service" OWNER :"service";
REVOKE ALL ON DATABASE :"service" FROM PUBLIC;
SQL
done
