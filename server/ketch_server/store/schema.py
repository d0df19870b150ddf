"""The relational schema, shared by SQLite and PostgreSQL.

Migrations under ``migrations/versions`` create exactly this; a test compares
them. Times are BIGINT milliseconds since the epoch (UTC); ids are 32-hex text.
NaN metric values are stored as NULL in the summary columns (SQLite cannot hold
NaN) and restored on read; chunk blobs keep every value bit for bit.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "api_tokens",
    "approvals",
    "artifacts",
    "audit_events",
    "blobs",
    "datasets",
    "experiments",
    "lineage_edges",
    "metadata",
    "metric_chunks",
    "metric_keys",
    "metric_summaries",
    "model_aliases",
    "model_versions",
    "params",
    "principals",
    "registered_models",
    "registry_counters",
    "registry_policies",
    "runs",
    "stream_cursors",
    "tags",
    "transition_requests",
    "uploads",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(32)
# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
AutoBigInt = BigInteger().with_variant(Integer(), "sqlite")

experiments = Table(
    "experiments",
    metadata,
    Column("id", ID, primary_key=True),
    Column("display_name", String(256), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("lifecycle", String(16), nullable=False),
    Column("create_time", BigInteger, nullable=False),
    Column("update_time", BigInteger, nullable=False),
    Column("delete_time", BigInteger),
    Column("revision", Integer, nullable=False),
    Column("created_by", String(128)),  # principal name; NULL before revision 0006
)

runs = Table(
    "runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("experiment_id", ID, ForeignKey("experiments.id"), nullable=False),
    Column("display_name", String(256), nullable=False),
    Column("state", String(16), nullable=False),
    Column("lifecycle", String(16), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger),
    Column("update_time", BigInteger, nullable=False),
    Column("delete_time", BigInteger),
    Column("parent_run_id", ID, ForeignKey("runs.id")),
    Column("user", String(256), nullable=False),
    Column("request_id", String(128), unique=True),
    Column("source", Text, nullable=False),
    Column("environment", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("created_by", String(128)),  # principal name; NULL before revision 0006
    Index(None, "experiment_id", "start_time"),
    Index(None, "parent_run_id"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_by", String(128)),
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_by", String(128)),
)

metric_keys = Table(
    "metric_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False),
    Column("name", String(250), nullable=False),
    UniqueConstraint("run_id", "name"),
)

metric_chunks = Table(
    "metric_chunks",
    metadata,
    Column("id", AutoBigInt, primary_key=True, autoincrement=True),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False),
    Column("key_id", Integer, ForeignKey("metric_keys.id"), nullable=False),
    Column("rank", Integer, nullable=False, server_default="0"),
    Column("first_step", BigInteger, nullable=False),
    Column("last_step", BigInteger, nullable=False),
    Column("count", Integer, nullable=False),
    Column("min_value", Double),
    Column("max_value", Double),
    Column("steps", LargeBinary, nullable=False),
    Column("timestamps", LargeBinary, nullable=False),
    Column("values", LargeBinary, nullable=False),
    Index(None, "run_id", "key_id", "first_step"),
)

metric_summaries = Table(
    "metric_summaries",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("last_value", Double),
    Column("last_step", BigInteger, nullable=False),
    Column("last_timestamp", BigInteger, nullable=False),
    Column("min_value", Double),
    Column("max_value", Double),
    Column("count", BigInteger, nullable=False),
)

stream_cursors = Table(
    "stream_cursors",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("writer_id", String(128), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("rank", Integer, nullable=False),
    Column("host", String(256), nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("update_time", BigInteger, nullable=False),
    Column("principal", String(128)),
)

# ------------------------------------------------------------------ lineage (0005)

datasets = Table(
    "datasets",
    metadata,
    Column("id", ID, primary_key=True),
    Column("display_name", String(256), nullable=False),
    Column("digest", String(256), nullable=False),
    Column("source", String(2048), nullable=False),
    Column("schema_json", Text, nullable=False),
    Column("num_rows", BigInteger),
    Column("create_time", BigInteger, nullable=False),
    Column("created_by", String(128)),
    UniqueConstraint("display_name", "digest"),
)

# Immutable lineage events between nodes named (kind, ref): RUN -> run id, DATASET ->
# dataset id, ARTIFACT -> "{run_id}/{path}", MODEL_VERSION -> "{model}/{version}".
# Every edge points downstream. CHILD_OF edges are not stored: they are derived
# from runs.parent_run_id when the graph is read.
lineage_edges = Table(
    "lineage_edges",
    metadata,
    Column("id", AutoBigInt, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("upstream_kind", String(16), nullable=False),
    Column("upstream_ref", String(1100), nullable=False),
    Column("downstream_kind", String(16), nullable=False),
    Column("downstream_ref", String(1100), nullable=False),
    Column("context", String(128), nullable=False),
    Column("step", BigInteger),
    Column("create_time", BigInteger, nullable=False),
    Column("created_by", String(128)),
    UniqueConstraint(
        "upstream_kind",
        "upstream_ref",
        "downstream_kind",
        "downstream_ref",
        "kind",
        "context",
        name="uq_lineage_edges_event",
    ),
    Index(None, "downstream_kind", "downstream_ref"),
)

# ------------------------------------------------------------------ artifacts (0004)

blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("storage_key", String(512), nullable=False),
    Column("create_time", BigInteger, nullable=False),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("sha256", String(64), ForeignKey("blobs.sha256"), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("create_time", BigInteger, nullable=False),
    Column("created_by", String(128)),
    Index(None, "sha256"),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", ID, primary_key=True),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("storage_key", String(512), nullable=False),
    Column("backend_upload_id", String(1024)),
    Column("part_size", BigInteger, nullable=False),
    Column("request_id", String(128), unique=True),
    Column("create_time", BigInteger, nullable=False),
    Column("expire_time", BigInteger, nullable=False),
    Index(None, "expire_time"),
)

# ------------------------------------------------------------------ identity (0006)

principals = Table(
    "principals",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
    # The role of calls authenticated by this principal's client certificate (mTLS);
    # token calls carry the token's own role.
    Column("role", String(16), nullable=False),
    Column("create_time", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("principal", String(128), ForeignKey("principals.name"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("description", String(512), nullable=False),
    Column("create_time", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("expire_time", BigInteger),
    Column("revoke_time", BigInteger),
    Column("last_used_time", BigInteger),
    Index(None, "principal"),
)

# ------------------------------------------------------------------ registry (0007)
# Keyed by model name (immutable). Every registry write locks its model's row first
# (SELECT ... FOR UPDATE; on SQLite a write as the first statement), and appends its
# audit events last, numbered from registry_counters (see store/registry.py).

registered_models = Table(
    "registered_models",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("description", Text, nullable=False),
    Column("tags", Text, nullable=False),  # JSON object
    Column("owner", String(128), nullable=False),
    Column("latest_version", BigInteger, nullable=False),
    Column("request_id", String(128), unique=True),
    Column("create_time", BigInteger, nullable=False),
    Column("update_time", BigInteger, nullable=False),
    Column("revision", Integer, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("model", String(128), ForeignKey("registered_models.name"), primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("stage", String(16), nullable=False),
    Column("stage_time", BigInteger, nullable=False),
    Column("source_run_id", ID, ForeignKey("runs.id"), nullable=False),
    Column("source_path", String(1024), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("description", Text, nullable=False),
    Column("tags", Text, nullable=False),  # JSON object
    Column("created_by", String(128), nullable=False),
    Column("request_id", String(128), unique=True),
    Column("create_time", BigInteger, nullable=False),
    Column("update_time", BigInteger, nullable=False),
    Column("revision", Integer, nullable=False),
    Index(None, "model", "stage", "stage_time"),
    Index(None, "source_run_id"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model", String(128), ForeignKey("registered_models.name"), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("update_time", BigInteger, nullable=False),
    Column("updated_by", String(128), nullable=False),
    ForeignKeyConstraint(
        ["model", "version"],
        ["model_versions.model", "model_versions.version"],
        name="fk_model_aliases_version_model_versions",
    ),
    Index(None, "model", "version"),
)

# One row per (model, target stage) with a policy set; other stages use the defaults.
registry_policies = Table(
    "registry_policies",
    metadata,
    Column("model", String(128), ForeignKey("registered_models.name"), primary_key=True),
    Column("stage", String(16), primary_key=True),
    Column("approvals_required", Integer, nullable=False),
    Column("approver_roles", String(128), nullable=False),  # comma-separated role names
    Column("gates", Text, nullable=False),  # JSON list of run filters
    Column("archive_existing", Boolean, nullable=False),
    Column("max_versions", Integer, nullable=False),
    Column("expiry_seconds", BigInteger, nullable=False),
    Column("allowed_from", String(64), nullable=False),  # comma-separated stages
    Column("update_time", BigInteger, nullable=False),
    Column("updated_by", String(128), nullable=False),
)

transition_requests = Table(
    "transition_requests",
    metadata,
    Column("id", ID, primary_key=True),
    Column("model", String(128), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("from_stage", String(16), nullable=False),
    Column("target_stage", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("comment", Text, nullable=False),
    Column("requested_by", String(128), nullable=False),
    Column("resolution", Text, nullable=False),
    Column("request_id", String(128), unique=True),
    Column("create_time", BigInteger, nullable=False),
    Column("update_time", BigInteger, nullable=False),
    Column("expire_time", BigInteger, nullable=False),
    ForeignKeyConstraint(
        ["model", "version"],
        ["model_versions.model", "model_versions.version"],
        name="fk_transition_requests_version_model_versions",
    ),
    Index(None, "model", "version", "state"),
    Index(None, "state", "expire_time"),  # the expiry sweep (0008)
)

# Votes: one per (request, principal).
approvals = Table(
    "approvals",
    metadata,
    Column("transition_id", ID, ForeignKey("transition_requests.id"), primary_key=True),
    Column("principal", String(128), primary_key=True),
    Column("decision", String(16), nullable=False),
    Column("role", String(16), nullable=False),
    Column("comment", Text, nullable=False),
    Column("evidence", Text, nullable=False),  # JSON {"url": ..., "checks": {...}}
    Column("digest", String(64), nullable=False),
    Column("create_time", BigInteger, nullable=False),
)

# Append-only. seq is allocated from registry_counters in the writing transaction,
# so it is gap-free and in commit order (the watch stream depends on it).
audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_time", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("resource", String(512), nullable=False),
    Column("model", String(128), nullable=False),
    Column("before_json", Text, nullable=False),
    Column("after_json", Text, nullable=False),
    Column("request_id", String(128), nullable=False),
    Index(None, "model", "seq"),
)

registry_counters = Table(
    "registry_counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
