-- PostgreSQL's first-run script for docker-compose.yml (mounted into /docker-entrypoint-initdb.d, so it runs once,
-- on an empty data volume, as the postgres superuser). Same layout as deploy/local/stack.sh provisions:
-- database childrensteams; one login role per service, password = name (development only), each owning the schema of
-- its name. A role's default search_path ("$user", public) finds its own schema; no role can use another's schema.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

CREATE ROLE referral   LOGIN PASSWORD 'referral';
CREATE ROLE panel      LOGIN PASSWORD 'panel';
CREATE ROLE assignment LOGIN PASSWORD 'assignment';
CREATE ROLE plans      LOGIN PASSWORD 'plans';
CREATE ROLE hub        LOGIN PASSWORD 'hub';
CREATE ROLE reporting  LOGIN PASSWORD 'reporting';

CREATE DATABASE childrensteams;
REVOKE ALL ON DATABASE childrensteams FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE childrensteams TO referral, panel, assignment, plans, hub, reporting;

\connect childrensteams
SET client_min_messages = warning;

CREATE SCHEMA referral   AUTHORIZATION referral;
CREATE SCHEMA panel      AUTHORIZATION panel;
CREATE SCHEMA assignment AUTHORIZATION assignment;
CREATE SCHEMA plans      AUTHORIZATION plans;
CREATE SCHEMA hub        AUTHORIZATION hub;
CREATE SCHEMA reporting  AUTHORIZATION reporting;

-- Nothing of ours lives in public; PostgreSQL 15 already denies CREATE there, this also denies USAGE.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
