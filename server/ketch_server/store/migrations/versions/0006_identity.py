"""Identity: principals, hashed API tokens, and the actor of every write.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# (table, column): who made the row (NULL for rows written before this revision).
ACTOR_COLUMNS = (
    ("experiments", "created_by"),
    ("runs", "created_by"),
    ("params", "created_by"),
    ("tags", "updated_by"),
    ("stream_cursors", "principal"),
    ("datasets", "created_by"),
    ("lineage_edges", "created_by"),
    ("artifacts", "created_by"),
)


def upgrade() -> None:
    for table, column in ACTOR_COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(column, sa.String(128)))
    op.create_table(
        "principals",
        sa.Column("name", sa.String(128)),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_principals"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(16)),
        sa.Column("principal", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("description", sa.String(512), nullable=False),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("expire_time", sa.BigInteger),
        sa.Column("revoke_time", sa.BigInteger),
        sa.Column("last_used_time", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.ForeignKeyConstraint(
            ["principal"], ["principals.name"], name="fk_api_tokens_principal_principals"
        ),
    )
    op.create_index("ix_api_tokens_principal", "api_tokens", ["principal"])


def downgrade() -> None:
    op.drop_index("ix_api_tokens_principal", "api_tokens")
    op.drop_table("api_tokens")
    op.drop_table("principals")
    for table, column in reversed(ACTOR_COLUMNS):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
