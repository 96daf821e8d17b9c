"""When a concern became a referral to a Children's Team, beside its agency referral id.

0002 creates the tables from today's `storage.metadata`, so a new database has the column already.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE concerns ADD COLUMN IF NOT EXISTS referred_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE concerns DROP COLUMN IF EXISTS referred_at")
