"""Index pending transition requests by expire time: every replica looks for due ones.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_transition_requests_state_expire_time",
        "transition_requests",
        ["state", "expire_time"],
    )


def downgrade() -> None:
    op.drop_index("ix_transition_requests_state_expire_time", table_name="transition_requests")
