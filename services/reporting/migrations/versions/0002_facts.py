"""Reporting's fact tables: journeys, cases, overdue items, concerns and escalations (ids, codes and times only)."""

from alembic import op

from services.reporting.storage import metadata

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind(), checkfirst=True)
