"""Practitioners named by the referral, who join the Action Network when consent covers their agency."""

from alembic import op

from services.plans.storage import referred_practitioners

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    referred_practitioners.create(op.get_bind(), checkfirst=True)
