"""Children, referrals, submissions, siblings and consent."""

from alembic import op

from services.referral.storage import metadata

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())
