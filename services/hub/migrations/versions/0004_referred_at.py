"""When a concern became a referral to a Children's Team, beside its agency referral id."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("concerns", sa.Column("referred_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("concerns", "referred_at")
