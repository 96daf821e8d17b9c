"""The console's live updates: NOTIFY `hub_console` with the concern id whenever a concern or its escalation changes.

A trigger sends it in the changing transaction itself, so it is delivered only if that commits, and every hub instance
listening hears it whichever instance made the change. The payload is the concern id only, never personal data.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION console_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_notify('hub_console', json_build_object('concern_id', NEW.concern_id)::text);
          RETURN NULL;
        END $$
        """
    )
    for table in ("concerns", "escalations"):
        op.execute(
            f"CREATE TRIGGER {table}_console_notify AFTER INSERT OR UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION console_notify()"
        )


def downgrade() -> None:
    for table in ("concerns", "escalations"):
        op.execute(f"DROP TRIGGER {table}_console_notify ON {table}")
    op.execute("DROP FUNCTION console_notify()")
