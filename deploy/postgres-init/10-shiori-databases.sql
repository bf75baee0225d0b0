-- Run once by the postgres image on an empty data volume (docker-compose.yml), as POSTGRES_USER,
-- who then owns these databases: one per Shiori service.
CREATE DATABASE patrons;
CREATE DATABASE loans;
CREATE DATABASE catalog;
CREATE DATABASE statistics;
CREATE DATABASE notices;
