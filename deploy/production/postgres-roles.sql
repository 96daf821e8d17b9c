-- Production PostgreSQL: the database, and two roles per service, each with rights on its own schema only.
-- Definitions, not yet run against a managed cluster: try it on staging first.
--
--   psql "host=<primary endpoint> dbname=postgres user=<admin role> sslmode=verify-full sslrootcert=<ca.crt>" \
--        -f deploy/production/postgres-roles.sql
--
-- Run once, on an empty cluster, as the administrator role the provider gives you (CREATEROLE and CREATEDB; it need
-- not be a superuser). Then give each login role its password from your secret store, in psql:
--   \password referral          (psql sends a SCRAM verifier, so the clear text never reaches the server or its logs)
-- and put it in the matching Kubernetes Secret (deploy/k8s/secrets.template.yaml).
--
-- Per service <s> (referral, panel, assignment, plans, hub, reporting):
--   <s>_owner  owns schema <s> and everything in it. Only the migration Job logs in as it (deploy/k8s/migrate):
--              Alembic creates the tables, so they belong to it.
--   <s>        what the running service logs in as: USAGE on its schema, and SELECT, INSERT, UPDATE on the tables
--              and USAGE on the sequences its owner creates. Not DELETE, not TRUNCATE, not DDL: nothing is ever
--              hard-deleted (ARCHITECTURE.md, "Data"), and since it does not own audit_log it cannot drop or disable
--              the trigger that keeps that table append-only (shared/messaging/tables.py). One exception, granted
--              after the migrations: reporting may empty its own fact tables and inbox for its rebuild (see "After the
--              reporting migrations" below).
-- No role has any right on another service's schema, nor on public. The local stacks (deploy/docker/init-db.sql,
-- deploy/local/stack.sh) use one role per service that owns its schema; the code is the same either way, since the
-- engine sets search_path to the service's schema (shared/db.py) and migrations set it themselves.
--
-- Add a service by repeating one block below with its name, and its Secrets and Job container.

\set ON_ERROR_STOP on
SET client_min_messages = warning;

-- Login roles without passwords (set them with \password, above). CONNECTION LIMIT caps what one service can take of
-- max_connections; the sizing is in "Connection settings" at the end.
CREATE ROLE referral_owner   LOGIN CONNECTION LIMIT 5;
CREATE ROLE panel_owner      LOGIN CONNECTION LIMIT 5;
CREATE ROLE assignment_owner LOGIN CONNECTION LIMIT 5;
CREATE ROLE plans_owner      LOGIN CONNECTION LIMIT 5;
CREATE ROLE hub_owner        LOGIN CONNECTION LIMIT 5;
CREATE ROLE reporting_owner  LOGIN CONNECTION LIMIT 5;
CREATE ROLE referral         LOGIN CONNECTION LIMIT 70;
CREATE ROLE panel            LOGIN CONNECTION LIMIT 70;
CREATE ROLE assignment       LOGIN CONNECTION LIMIT 70;
CREATE ROLE plans            LOGIN CONNECTION LIMIT 70;
CREATE ROLE hub              LOGIN CONNECTION LIMIT 70;
CREATE ROLE reporting        LOGIN CONNECTION LIMIT 70;

CREATE DATABASE childrensteams;
REVOKE ALL ON DATABASE childrensteams FROM PUBLIC;
GRANT CONNECT ON DATABASE childrensteams
    TO referral, panel, assignment, plans, hub, reporting,
       referral_owner, panel_owner, assignment_owner, plans_owner, hub_owner, reporting_owner;

\connect childrensteams
SET client_min_messages = warning;

-- Nothing of ours lives in public; PostgreSQL 15 already denies CREATE there, this also denies USAGE.
REVOKE ALL ON SCHEMA public FROM PUBLIC;

-- Creating a schema for another role, and setting default privileges for it, needs membership in that role. A
-- provider's administrator is not a superuser, so it takes the membership for this script and gives it back at the end.
GRANT referral_owner, panel_owner, assignment_owner, plans_owner, hub_owner, reporting_owner TO CURRENT_USER;

-- referral
CREATE SCHEMA referral AUTHORIZATION referral_owner;
GRANT USAGE ON SCHEMA referral TO referral;
ALTER DEFAULT PRIVILEGES FOR ROLE referral_owner IN SCHEMA referral GRANT SELECT, INSERT, UPDATE ON TABLES TO referral;
ALTER DEFAULT PRIVILEGES FOR ROLE referral_owner IN SCHEMA referral GRANT USAGE, SELECT ON SEQUENCES TO referral;
ALTER ROLE referral_owner SET search_path = referral;
ALTER ROLE referral SET search_path = referral;

-- panel
CREATE SCHEMA panel AUTHORIZATION panel_owner;
GRANT USAGE ON SCHEMA panel TO panel;
ALTER DEFAULT PRIVILEGES FOR ROLE panel_owner IN SCHEMA panel GRANT SELECT, INSERT, UPDATE ON TABLES TO panel;
ALTER DEFAULT PRIVILEGES FOR ROLE panel_owner IN SCHEMA panel GRANT USAGE, SELECT ON SEQUENCES TO panel;
ALTER ROLE panel_owner SET search_path = panel;
ALTER ROLE panel SET search_path = panel;

-- assignment
CREATE SCHEMA assignment AUTHORIZATION assignment_owner;
GRANT USAGE ON SCHEMA assignment TO assignment;
ALTER DEFAULT PRIVILEGES FOR ROLE assignment_owner IN SCHEMA assignment
    GRANT SELECT, INSERT, UPDATE ON TABLES TO assignment;
ALTER DEFAULT PRIVILEGES FOR ROLE assignment_owner IN SCHEMA assignment GRANT USAGE, SELECT ON SEQUENCES TO assignment;
ALTER ROLE assignment_owner SET search_path = assignment;
ALTER ROLE assignment SET search_path = assignment;

-- plans
CREATE SCHEMA plans AUTHORIZATION plans_owner;
GRANT USAGE ON SCHEMA plans TO plans;
ALTER DEFAULT PRIVILEGES FOR ROLE plans_owner IN SCHEMA plans GRANT SELECT, INSERT, UPDATE ON TABLES TO plans;
ALTER DEFAULT PRIVILEGES FOR ROLE plans_owner IN SCHEMA plans GRANT USAGE, SELECT ON SEQUENCES TO plans;
ALTER ROLE plans_owner SET search_path = plans;
ALTER ROLE plans SET search_path = plans;

-- hub
CREATE SCHEMA hub AUTHORIZATION hub_owner;
GRANT USAGE ON SCHEMA hub TO hub;
ALTER DEFAULT PRIVILEGES FOR ROLE hub_owner IN SCHEMA hub GRANT SELECT, INSERT, UPDATE ON TABLES TO hub;
ALTER DEFAULT PRIVILEGES FOR ROLE hub_owner IN SCHEMA hub GRANT USAGE, SELECT ON SEQUENCES TO hub;
ALTER ROLE hub_owner SET search_path = hub;
ALTER ROLE hub SET search_path = hub;

-- reporting (the same rights as the others here; its rebuild's DELETE and TRUNCATE come after the migrations, below)
CREATE SCHEMA reporting AUTHORIZATION reporting_owner;
GRANT USAGE ON SCHEMA reporting TO reporting;
ALTER DEFAULT PRIVILEGES FOR ROLE reporting_owner IN SCHEMA reporting
    GRANT SELECT, INSERT, UPDATE ON TABLES TO reporting;
ALTER DEFAULT PRIVILEGES FOR ROLE reporting_owner IN SCHEMA reporting GRANT USAGE, SELECT ON SEQUENCES TO reporting;
ALTER ROLE reporting_owner SET search_path = reporting;
ALTER ROLE reporting SET search_path = reporting;

-- A session stuck inside a transaction (a pod frozen on a partitioned node) would keep the outbox buckets it locked
-- (pg_try_advisory_xact_lock in shared/messaging/outbox.py) and the rows it claimed until TCP gave up on it, which
-- can take hours; this ends it sooner. Well above the relay's own wait for Kafka inside its transaction (60 s).
ALTER ROLE referral   SET idle_in_transaction_session_timeout = '5min';
ALTER ROLE panel      SET idle_in_transaction_session_timeout = '5min';
ALTER ROLE assignment SET idle_in_transaction_session_timeout = '5min';
ALTER ROLE plans      SET idle_in_transaction_session_timeout = '5min';
ALTER ROLE hub        SET idle_in_transaction_session_timeout = '5min';
ALTER ROLE reporting  SET idle_in_transaction_session_timeout = '5min';

REVOKE referral_owner, panel_owner, assignment_owner, plans_owner, hub_owner, reporting_owner FROM CURRENT_USER;

-- After the reporting migrations ----------------------------------------------------------------------------------
--
-- Reporting's tables, unlike every other service's, hold no record of their own: its facts are derived from the
-- public streams, and `python -m services.reporting.rebuild` (docs/operations.md, "Rebuild reporting") derives them
-- again. It runs as the runtime role `reporting` and, in one transaction, TRUNCATEs the fact tables
-- (services/reporting/storage.py, FACT_TABLES) and DELETEs the inbox rows of its consumer (reporting.figures), so
-- that the replay applies every event again (services/reporting/rebuild.py). So `reporting`, and only it, gets
-- TRUNCATE on those tables and DELETE on its inbox: exactly what the rebuild executes. Nothing on audit_log (it stays
-- append-only: no DELETE, no TRUNCATE, and its trigger refuses both anyway), outbox or timers.
-- Default privileges apply to every table of a schema and cannot name one, and the tables exist only once the
-- migration Job has run, so these are plain grants, made by the tables' owner after it: the first time, and after any
-- release whose migration adds a fact table (GRANT is idempotent; tests/unit/test_k8s_manifests.py keeps the list
-- equal to FACT_TABLES). Without them the rebuild stops at its first step ("permission denied"), having changed
-- nothing.
--   psql "host=<primary endpoint> dbname=childrensteams user=reporting_owner sslmode=verify-full sslrootcert=<ca.crt>" \
--        -v ON_ERROR_STOP=1 <<'SQL'
--   GRANT TRUNCATE ON reporting.referrals, reporting.sibling_groups, reporting.cases, reporting.actions,
--       reporting.overdue_reviews, reporting.concerns, reporting.concern_overrides, reporting.escalations,
--       reporting.escalation_steps, reporting.lead_capacity TO reporting;
--   GRANT DELETE ON reporting.inbox TO reporting;
--   SQL

-- Connection settings (a managed, replicated cluster) -----------------------------------------------------------------
--
-- URL. Unchanged from the local stacks (shared/settings.py, deploy/local/__init__.py):
--     postgresql+asyncpg://<role>:<password>@<primary endpoint>:5432/childrensteams
-- the schema being the service's name. <role> is <s> for the service, <s>_owner for the migration Job. The host is
-- the provider's primary (writer) endpoint, the name that follows the primary through a failover; never a replica
-- or reader endpoint.
--
-- TLS and "primary only" go in the environment, not in the URL (deploy/k8s/config.yaml):
--     PGSSLMODE=verify-full   PGSSLROOTCERT=/etc/ctp/postgres-ca/ca.crt   PGTARGETSESSIONATTRS=read-write
-- Why: the URL reaches asyncpg by two paths. The SQLAlchemy engine (shared/db.py, shared/migrations.py) passes its
-- query parameters to asyncpg.connect() as keyword arguments: `?ssl=verify-full` works there, `?sslmode=verify-full`
-- fails (no such argument), and there is no argument for the CA file. The outbox relay's LISTEN connection
-- (shared/messaging/outbox.py) and the hub console's (services/hub/console.py) pass the same URL to asyncpg as a DSN:
-- there `sslmode=` works, while `ssl=` is not understood as TLS at all (it is sent to the server as a run-time
-- setting and TLS falls back to `prefer`). asyncpg reads PGSSLMODE, PGSSLROOTCERT and PGTARGETSESSIONATTRS on both
-- paths; checked against asyncpg 0.32 and SQLAlchemy 2.0.58 (uv.lock) by parsing the arguments both ways.
-- verify-full checks the certificate against the CA and the host name against the certificate; read-write makes a
-- connection that lands on a node in recovery (a stale DNS answer during a failover) fail and be retried instead of
-- serving a read-only session.
--
-- Pool sizes. One instance opens at most 2 x CTP_DATABASE_POOL_SIZE through its engine (pool_size + max_overflow,
-- shared/db.py) plus one LISTEN connection for the outbox relay, and the hub one more for its console: with
-- CTP_DATABASE_POOL_SIZE=4 (deploy/k8s/config.yaml), 9 (hub 10). A service runs at most 6 instances (the partition
-- count, deploy/k8s/keda) plus one surging during a rollout: 7 x 9 = 63 (hub 70), hence CONNECTION LIMIT 70; a
-- reporting rebuild uses one more of reporting's, while it runs.
-- All six: 5 x 63 + 70 = 385 at most, plus 6 x 5 for migrations, plus the provider's reserved and your
-- administrators' and monitoring's connections: max_connections must be at least about 445 for the worst case, or
-- lower the pool size or the replica bound. A role at its limit gets "too many connections for role": that service
-- slows down (its consumers wait and retry), the others are untouched.
-- Poolers: only in session mode. LISTEN/NOTIFY (the relay's wake-up and the hub console) needs a session, and
-- asyncpg's prepared statements break behind a transaction-mode pooler.
--
-- Failover. The open connections break; transactions in flight roll back. Nothing else is needed from an operator:
-- pool_pre_ping (shared/db.py) drops dead connections when they are checked out; a consumer whose batch's transaction
-- failed waits with back-off and has the batch redelivered, since its offsets were not committed (the inbox absorbs
-- anything that had committed); the outbox relay backs off and publishes the rows still unsent; the LISTEN
-- connections reconnect every CTP_RELAY_IDLE_SECONDS; a timer whose transaction failed stays pending and fires again
-- after its lease; readiness (/health/ready) fails until the database answers, so Kubernetes holds HTTP traffic back.
-- An HTTP write whose commit was in flight may or may not have committed: the caller gets an error and should check
-- before sending it again. Because state and its events commit in one transaction (the outbox), a failover can never
-- keep one without the other.
-- Replication. Fail over only to a synchronous standby (check that your provider's high-availability option is). With an
-- asynchronous one, transactions committed just before the failover can be lost, their outbox rows with them, and any
-- event the relay had already published from those rows would then tell other services about state that no longer
-- exists.
