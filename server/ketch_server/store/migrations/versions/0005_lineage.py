"""Lineage: datasets and the immutable edges of the lineage graph.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(32)),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("digest", sa.String(256), nullable=False),
        sa.Column("source", sa.String(2048), nullable=False),
        sa.Column("schema_json", sa.Text, nullable=False),
        sa.Column("num_rows", sa.BigInteger),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("display_name", "digest", name="uq_datasets_display_name_digest"),
    )
    op.create_table(
        "lineage_edges",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("upstream_kind", sa.String(16), nullable=False),
        sa.Column("upstream_ref", sa.String(1100), nullable=False),
        sa.Column("downstream_kind", sa.String(16), nullable=False),
        sa.Column("downstream_ref", sa.String(1100), nullable=False),
        sa.Column("context", sa.String(128), nullable=False),
        sa.Column("step", sa.BigInteger),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lineage_edges"),
        sa.UniqueConstraint(
            "upstream_kind",
            "upstream_ref",
            "downstream_kind",
            "downstream_ref",
            "kind",
            "context",
            name="uq_lineage_edges_event",
        ),
    )
    op.create_index(
        "ix_lineage_edges_downstream_kind_downstream_ref",
        "lineage_edges",
        ["downstream_kind", "downstream_ref"],
    )


def downgrade() -> None:
    op.drop_index("ix_lineage_edges_downstream_kind_downstream_ref", table_name="lineage_edges")
    op.drop_table("lineage_edges")
    op.drop_table("datasets")
