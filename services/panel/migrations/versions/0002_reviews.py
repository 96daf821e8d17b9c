"""Reviews of referrals, the panel's decisions, and plan reviews."""

from alembic import op

from services.panel.storage import metadata

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())
