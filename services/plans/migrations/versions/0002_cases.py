"""Cases, Action Networks, consent as heard, assessments, the Child's Plan, goals, actions, reviews, timeline."""

from alembic import op

from services.plans.storage import metadata

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())
