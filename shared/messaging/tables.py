"""The backbone tables every service's schema holds: outbox, inbox, durable timers and the audit log."""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    SmallInteger,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import backbone_metadata

outbox = Table(
    "outbox",
    backbone_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", Text, nullable=False, unique=True),
    Column("topic", Text, nullable=False),
    Column("key", Text, nullable=False),
    # Rows of one key share a bucket; a relay publishes a bucket under an advisory lock, so order per key holds.
    Column("bucket", SmallInteger, nullable=False),
    Column("headers", JSONB, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
)
Index("outbox_unsent", outbox.c.bucket, outbox.c.id, postgresql_where=outbox.c.sent_at.is_(None))

inbox = Table(
    "inbox",
    backbone_metadata,
    Column("consumer", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("handled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

timers = Table(
    "timers",
    backbone_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("state", Text, nullable=False, server_default="pending"),
    # Incremented at every claim: a runner whose token is stale (lease lost) does nothing.
    Column("fence", BigInteger, nullable=False, server_default="0"),
    Column("lease_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("fired_at", DateTime(timezone=True)),
)
Index("timers_due", timers.c.due_at, postgresql_where=timers.c.state == "pending")
Index(
    "timers_one_pending",
    timers.c.kind,
    timers.c.key,
    unique=True,
    postgresql_where=timers.c.state == "pending",
)

audit_log = Table(
    "audit_log",
    backbone_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", Text, nullable=False),
    Column("roles", Text, nullable=False),
    Column("agency", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("child_id", Text),
    Column("purpose", Text, nullable=False),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
)


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel that wakes a schema's outbox relay."""
    return f"outbox_{schema}"


# Run by each service's first migration after the tables: wake the relay on every outbox insert, keep the audit
# log append-only even against the service's own role.
BACKBONE_DDL = [
    """
    CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('outbox_' || TG_TABLE_SCHEMA, '');
      RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()
    """,
    """
    CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'audit_log is append-only';
    END $$
    """,
    """
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()
    """,
]
