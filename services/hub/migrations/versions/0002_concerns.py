"""Concerns, screenings, escalations and their steps."""

from alembic import op

from services.hub.storage import metadata

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())
