"""The child's assigned lead professional on the referral (they may read it and record consent changes)."""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE referrals ADD COLUMN IF NOT EXISTS lead_practitioner_id text")
