"""Model registry: models, versions, aliases, policies, transition requests, votes,
and the audit trail with its sequence counter.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.String(32)


def upgrade() -> None:
    _models_and_versions()
    _policies_and_requests()
    _audit()


def _models_and_versions() -> None:
    op.create_table(
        "registered_models",
        sa.Column("name", sa.String(128)),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("latest_version", sa.BigInteger, nullable=False),
        sa.Column("request_id", sa.String(128)),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.Column("update_time", sa.BigInteger, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_registered_models"),
        sa.UniqueConstraint("request_id", name="uq_registered_models_request_id"),
    )
    op.create_table(
        "model_versions",
        sa.Column("model", sa.String(128)),
        sa.Column("version", sa.BigInteger),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("stage_time", sa.BigInteger, nullable=False),
        sa.Column("source_run_id", ID, nullable=False),
        sa.Column("source_path", sa.String(1024), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(128)),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.Column("update_time", sa.BigInteger, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("model", "version", name="pk_model_versions"),
        sa.ForeignKeyConstraint(
            ["model"], ["registered_models.name"], name="fk_model_versions_model_registered_models"
        ),
        sa.ForeignKeyConstraint(
            ["source_run_id"], ["runs.id"], name="fk_model_versions_source_run_id_runs"
        ),
        sa.UniqueConstraint("request_id", name="uq_model_versions_request_id"),
    )
    op.create_index(
        "ix_model_versions_model_stage_stage_time",
        "model_versions",
        ["model", "stage", "stage_time"],
    )
    op.create_index("ix_model_versions_source_run_id", "model_versions", ["source_run_id"])
    op.create_table(
        "model_aliases",
        sa.Column("model", sa.String(128)),
        sa.Column("alias", sa.String(64)),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("update_time", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("model", "alias", name="pk_model_aliases"),
        sa.ForeignKeyConstraint(
            ["model"], ["registered_models.name"], name="fk_model_aliases_model_registered_models"
        ),
        sa.ForeignKeyConstraint(
            ["model", "version"],
            ["model_versions.model", "model_versions.version"],
            name="fk_model_aliases_version_model_versions",
        ),
    )
    op.create_index("ix_model_aliases_model_version", "model_aliases", ["model", "version"])


def _policies_and_requests() -> None:
    op.create_table(
        "registry_policies",
        sa.Column("model", sa.String(128)),
        sa.Column("stage", sa.String(16)),
        sa.Column("approvals_required", sa.Integer, nullable=False),
        sa.Column("approver_roles", sa.String(128), nullable=False),
        sa.Column("gates", sa.Text, nullable=False),
        sa.Column("archive_existing", sa.Boolean, nullable=False),
        sa.Column("max_versions", sa.Integer, nullable=False),
        sa.Column("expiry_seconds", sa.BigInteger, nullable=False),
        sa.Column("allowed_from", sa.String(64), nullable=False),
        sa.Column("update_time", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("model", "stage", name="pk_registry_policies"),
        sa.ForeignKeyConstraint(
            ["model"],
            ["registered_models.name"],
            name="fk_registry_policies_model_registered_models",
        ),
    )
    op.create_table(
        "transition_requests",
        sa.Column("id", ID),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("from_stage", sa.String(16), nullable=False),
        sa.Column("target_stage", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("resolution", sa.Text, nullable=False),
        sa.Column("request_id", sa.String(128)),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.Column("update_time", sa.BigInteger, nullable=False),
        sa.Column("expire_time", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_transition_requests"),
        sa.ForeignKeyConstraint(
            ["model", "version"],
            ["model_versions.model", "model_versions.version"],
            name="fk_transition_requests_version_model_versions",
        ),
        sa.UniqueConstraint("request_id", name="uq_transition_requests_request_id"),
    )
    op.create_index(
        "ix_transition_requests_model_version_state",
        "transition_requests",
        ["model", "version", "state"],
    )
    op.create_table(
        "approvals",
        sa.Column("transition_id", ID),
        sa.Column("principal", sa.String(128)),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("transition_id", "principal", name="pk_approvals"),
        sa.ForeignKeyConstraint(
            ["transition_id"],
            ["transition_requests.id"],
            name="fk_approvals_transition_id_transition_requests",
        ),
    )


def _audit() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger, autoincrement=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("resource", sa.String(512), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("before_json", sa.Text, nullable=False),
        sa.Column("after_json", sa.Text, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_model_seq", "audit_events", ["model", "seq"])
    op.create_table(
        "registry_counters",
        sa.Column("name", sa.String(32)),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_registry_counters"),
    )


def downgrade() -> None:
    op.drop_table("registry_counters")
    op.drop_index("ix_audit_events_model_seq", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("approvals")
    op.drop_index("ix_transition_requests_model_version_state", table_name="transition_requests")
    op.drop_table("transition_requests")
    op.drop_table("registry_policies")
    op.drop_index("ix_model_aliases_model_version", table_name="model_aliases")
    op.drop_table("model_aliases")
    op.drop_index("ix_model_versions_source_run_id", table_name="model_versions")
    op.drop_index("ix_model_versions_model_stage_stage_time", table_name="model_versions")
    op.drop_table("model_versions")
    op.drop_table("registered_models")
