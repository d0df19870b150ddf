"""Tracking schema: experiments, runs, params, tags, metric keys, chunks and summaries.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(32)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", ID, primary_key=True),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("lifecycle", sa.String(16), nullable=False),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.Column("update_time", sa.BigInteger, nullable=False),
        sa.Column("delete_time", sa.BigInteger),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
        sa.UniqueConstraint("display_name", name="uq_experiments_display_name"),
    )
    op.create_table(
        "runs",
        sa.Column("id", ID),
        sa.Column("experiment_id", ID, nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("lifecycle", sa.String(16), nullable=False),
        sa.Column("start_time", sa.BigInteger, nullable=False),
        sa.Column("end_time", sa.BigInteger),
        sa.Column("update_time", sa.BigInteger, nullable=False),
        sa.Column("delete_time", sa.BigInteger),
        sa.Column("parent_run_id", ID),
        sa.Column("user", sa.String(256), nullable=False),
        sa.Column("request_id", sa.String(128)),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("environment", sa.Text, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(
            ["experiment_id"], ["experiments.id"], name="fk_runs_experiment_id_experiments"
        ),
        sa.ForeignKeyConstraint(["parent_run_id"], ["runs.id"], name="fk_runs_parent_run_id_runs"),
        sa.UniqueConstraint("request_id", name="uq_runs_request_id"),
    )
    op.create_index("ix_runs_experiment_id_start_time", "runs", ["experiment_id", "start_time"])
    op.create_index("ix_runs_parent_run_id", "runs", ["parent_run_id"])
    for name in ("params", "tags"):
        op.create_table(
            name,
            sa.Column("run_id", ID),
            sa.Column("key", sa.String(250)),
            sa.Column("value", sa.Text, nullable=False),
            sa.PrimaryKeyConstraint("run_id", "key", name=f"pk_{name}"),
            sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=f"fk_{name}_run_id_runs"),
        )
    op.create_table(
        "metric_keys",
        sa.Column("id", sa.Integer, autoincrement=True),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("name", sa.String(250), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_metric_keys"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_metric_keys_run_id_runs"),
        sa.UniqueConstraint("run_id", "name", name="uq_metric_keys_run_id_name"),
    )
    op.create_table(
        "metric_chunks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("key_id", sa.Integer, nullable=False),
        sa.Column("first_step", sa.BigInteger, nullable=False),
        sa.Column("last_step", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("min_value", sa.Double),
        sa.Column("max_value", sa.Double),
        sa.Column("steps", sa.LargeBinary, nullable=False),
        sa.Column("timestamps", sa.LargeBinary, nullable=False),
        sa.Column("values", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_metric_chunks"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_metric_chunks_run_id_runs"),
        sa.ForeignKeyConstraint(
            ["key_id"], ["metric_keys.id"], name="fk_metric_chunks_key_id_metric_keys"
        ),
    )
    op.create_index(
        "ix_metric_chunks_run_id_key_id_first_step",
        "metric_chunks",
        ["run_id", "key_id", "first_step"],
    )
    op.create_table(
        "metric_summaries",
        sa.Column("run_id", ID),
        sa.Column("key", sa.String(250)),
        sa.Column("last_value", sa.Double),
        sa.Column("last_step", sa.BigInteger, nullable=False),
        sa.Column("last_timestamp", sa.BigInteger, nullable=False),
        sa.Column("min_value", sa.Double),
        sa.Column("max_value", sa.Double),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_metric_summaries"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_metric_summaries_run_id_runs"),
    )


def downgrade() -> None:
    for name in (
        "metric_summaries",
        "metric_chunks",
        "metric_keys",
        "tags",
        "params",
        "runs",
        "experiments",
    ):
        op.drop_table(name)
