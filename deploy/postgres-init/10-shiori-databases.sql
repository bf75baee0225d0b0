-- Run once by the postgres image on an empty data volume (docker-compose.yml), as POSTGRES_USER,
-- who then owns these databases: one per Shiori service.
CREATE DATABASE patrons;
-- The patrons' wrapped data keys: backed up apart from the patrons database, so that deleting a key
-- makes older backups of that patron unreadable.
CREATE DATABASE patron_keys;
CREATE DATABASE loans;
CREATE DATABASE catalog;
CREATE DATABASE statistics;
CREATE DATABASE notices;
