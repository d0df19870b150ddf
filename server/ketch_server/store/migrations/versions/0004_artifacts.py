"""Artifacts: content-addressed blobs, per-run artifact paths and pending uploads.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.String(32)


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(64)),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("storage_key", sa.String(512), nullable=False),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_blobs"),
    )
    op.create_table(
        "artifacts",
        sa.Column("run_id", ID),
        sa.Column("path", sa.String(1024)),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "path", name="pk_artifacts"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_artifacts_run_id_runs"),
        sa.ForeignKeyConstraint(["sha256"], ["blobs.sha256"], name="fk_artifacts_sha256_blobs"),
    )
    op.create_index("ix_artifacts_sha256", "artifacts", ["sha256"])
    op.create_table(
        "uploads",
        sa.Column("id", ID),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("storage_key", sa.String(512), nullable=False),
        sa.Column("backend_upload_id", sa.String(1024)),
        sa.Column("part_size", sa.BigInteger, nullable=False),
        sa.Column("request_id", sa.String(128)),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.Column("expire_time", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_uploads"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_uploads_run_id_runs"),
        sa.UniqueConstraint("request_id", name="uq_uploads_request_id"),
    )
    op.create_index("ix_uploads_expire_time", "uploads", ["expire_time"])


def downgrade() -> None:
    op.drop_index("ix_uploads_expire_time", table_name="uploads")
    op.drop_table("uploads")
    op.drop_index("ix_artifacts_sha256", table_name="artifacts")
    op.drop_table("artifacts")
    op.drop_table("blobs")
