"""What the child and the whānau said of the help at exit (their words stay in the plans service)."""

from alembic import op

from services.plans.storage import exit_feedback

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    exit_feedback.create(op.get_bind(), checkfirst=True)
