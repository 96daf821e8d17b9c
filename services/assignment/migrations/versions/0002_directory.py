"""Practitioner directory, children waiting for a lead, proposals to managers."""

from alembic import op

from services.assignment.storage import metadata

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())
