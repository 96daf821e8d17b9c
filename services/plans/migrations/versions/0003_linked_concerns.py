"""Concerns from the hub linked to open cases."""

from alembic import op

from services.plans.storage import linked_concerns

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    linked_concerns.create(op.get_bind(), checkfirst=True)
