"""Stream cursors: the last committed seq per (run, writer) for exactly-once streaming.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_cursors",
        sa.Column("run_id", sa.String(32)),
        sa.Column("writer_id", sa.String(128)),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("update_time", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "writer_id", name="pk_stream_cursors"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_stream_cursors_run_id_runs"),
    )


def downgrade() -> None:
    op.drop_table("stream_cursors")
