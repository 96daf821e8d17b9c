"""The referrer's answers to the panel's questions."""

from alembic import op

from services.referral.storage import answers

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    answers.create(op.get_bind(), checkfirst=True)
