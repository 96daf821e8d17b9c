"""Each lead professional's latest capacity (maximum caseload), from `LeadAssigned.lead_capacity`."""

from alembic import op

from services.reporting.storage import lead_capacity

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    lead_capacity.create(op.get_bind(), checkfirst=True)
