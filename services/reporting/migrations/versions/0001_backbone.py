"""The backbone tables: outbox, inbox, durable timers, audit log."""

from alembic import op

from shared.migrations import create_backbone

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_backbone(op.get_bind())
