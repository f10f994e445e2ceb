"""SQLAlchemy Core descriptions of the ledger tables, for building statements.

The schema itself is owned by ``sql/`` migrations; these mirror the columns the
code writes and reads (a test checks they match the migrated database).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()
TZ = sa.DateTime(timezone=True)

epochs = sa.Table(
    "epochs", metadata,
    sa.Column("epoch_key", sa.Date, primary_key=True),
    sa.Column("window_start", TZ), sa.Column("window_end", TZ),
    sa.Column("status", sa.Text), sa.Column("policy", JSONB), sa.Column("policy_hash", sa.Text),
    sa.Column("approvers", JSONB), sa.Column("completeness", JSONB), sa.Column("completeness_waiver", JSONB),
    sa.Column("final_collection_at", TZ), sa.Column("created_at", TZ), sa.Column("review_at", TZ),
    sa.Column("finalized_at", TZ), sa.Column("policy_text", sa.Text),
)

activity_events = sa.Table(
    "activity_events", metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("source", sa.Text), sa.Column("event_type", sa.Text),
    sa.Column("platform_user_id", sa.Text), sa.Column("platform_login", sa.Text),
    sa.Column("is_bot", sa.Boolean), sa.Column("artifact_url", sa.Text), sa.Column("event_time", TZ),
    sa.Column("metadata", JSONB), sa.Column("payload", JSONB), sa.Column("payload_hash", sa.Text),
    sa.Column("producer", sa.Text), sa.Column("producer_version", sa.Text),
    sa.Column("retrieved_at", TZ), sa.Column("ingested_at", TZ),
)

quarantined_items = sa.Table(
    "quarantined_items", metadata,
    sa.Column("source", sa.Text, primary_key=True), sa.Column("stream", sa.Text, primary_key=True),
    sa.Column("source_ref", sa.Text, primary_key=True), sa.Column("raw_sha256", sa.Text, primary_key=True),
    sa.Column("item_key", sa.Text), sa.Column("reason", sa.Text), sa.Column("excerpt", sa.Text),
    sa.Column("first_seen_at", TZ), sa.Column("last_seen_at", TZ), sa.Column("times_seen", sa.Integer),
    sa.Column("resolved_event_id", sa.Text),
)

event_facts = sa.Table(
    "event_facts", metadata,
    sa.Column("event_id", sa.Text, primary_key=True), sa.Column("facts_version", sa.Integer, primary_key=True),
    sa.Column("facts", JSONB), sa.Column("derived_at", TZ),
)

activity_curation = sa.Table(
    "activity_curation", metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("epoch_key", sa.Date), sa.Column("recipient_id", sa.Text), sa.Column("resolution", sa.Text),
    sa.Column("resolved_at", TZ), sa.Column("included", sa.Boolean), sa.Column("weight_override", sa.BigInteger),
    sa.Column("note", sa.Text), sa.Column("curated_by", sa.Text), sa.Column("curated_at", TZ),
)

epoch_allocations = sa.Table(
    "epoch_allocations", metadata,
    sa.Column("epoch_key", sa.Date, primary_key=True), sa.Column("recipient_id", sa.Text, primary_key=True),
    sa.Column("proposed_units", sa.BigInteger), sa.Column("activity_count", sa.Integer),
    sa.Column("algorithm_version", sa.Text), sa.Column("proposed_at", TZ),
    sa.Column("final_units", sa.BigInteger), sa.Column("reason", sa.Text),
    sa.Column("adjusted_by", sa.Text), sa.Column("adjusted_at", TZ),
)

epoch_pool_components = sa.Table(
    "epoch_pool_components", metadata,
    sa.Column("epoch_key", sa.Date, primary_key=True), sa.Column("component_id", sa.Text, primary_key=True),
    sa.Column("amount", sa.Numeric(78, 0)), sa.Column("algorithm_version", sa.Text), sa.Column("inputs", JSONB),
    sa.Column("evidence_ref", sa.Text), sa.Column("recorded_by", sa.Text), sa.Column("recorded_at", TZ),
)

epoch_approvals = sa.Table(
    "epoch_approvals", metadata,
    sa.Column("approval_id", sa.BigInteger, primary_key=True),
    sa.Column("epoch_key", sa.Date), sa.Column("allocation_set_hash", sa.Text), sa.Column("policy_hash", sa.Text),
    sa.Column("pool_total", sa.Numeric(78, 0)), sa.Column("message", sa.Text), sa.Column("signer", sa.Text),
    sa.Column("signature", sa.Text), sa.Column("approved_at", TZ),
    sa.Column("revision", sa.Integer), sa.Column("ledger_id", sa.Uuid(as_uuid=False)), sa.Column("supersedes", sa.Text),
)

statement_corrections = sa.Table(
    "statement_corrections", metadata,
    sa.Column("correction_id", sa.BigInteger, primary_key=True),
    sa.Column("epoch_key", sa.Date), sa.Column("revision", sa.Integer), sa.Column("recipient_id", sa.Text),
    sa.Column("final_units", sa.BigInteger), sa.Column("reason", sa.Text), sa.Column("corrected_by", sa.Text),
    sa.Column("corrected_at", TZ),
)

ledger_identity = sa.Table(
    "ledger_identity", metadata,
    sa.Column("singleton", sa.Boolean, primary_key=True), sa.Column("ledger_id", sa.Uuid(as_uuid=False)),
    sa.Column("created_at", TZ),
)

payout_statements = sa.Table(
    "payout_statements", metadata,
    sa.Column("statement_hash", sa.Text, primary_key=True),
    sa.Column("epoch_key", sa.Date), sa.Column("revision", sa.Integer), sa.Column("supersedes", sa.Text),
    sa.Column("allocation_set_hash", sa.Text), sa.Column("pool_total", sa.Numeric(78, 0)),
    sa.Column("bundle", sa.Text), sa.Column("created_at", TZ),
)

source_cursors = sa.Table(
    "source_cursors", metadata,
    sa.Column("source", sa.Text, primary_key=True), sa.Column("stream", sa.Text, primary_key=True),
    sa.Column("source_ref", sa.Text, primary_key=True), sa.Column("position", JSONB), sa.Column("updated_at", TZ),
)

identity_events = sa.Table(
    "identity_events", metadata,
    sa.Column("identity_event_id", sa.BigInteger, primary_key=True),
    sa.Column("action", sa.Text), sa.Column("provider", sa.Text), sa.Column("external_id", sa.Text),
    sa.Column("user_id", sa.Text), sa.Column("previous_user_id", sa.Text), sa.Column("evidence", JSONB),
    sa.Column("actor", sa.Text), sa.Column("created_at", TZ),
)

# A VIEW since sql/0003: the latest bind/merge of each account in identity_events. Select
# from it; write identity_events (IdentityStore), never this.
user_bindings = sa.Table(
    "user_bindings", metadata,
    sa.Column("provider", sa.Text, primary_key=True), sa.Column("external_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text), sa.Column("identity_event_id", sa.BigInteger), sa.Column("bound_at", TZ),
)

# sql/0007: what the last resolution / allocation pass of an epoch read, and its summary (a cache; see
# ledger/pass_marks.py).
epoch_pass_marks = sa.Table(
    "epoch_pass_marks", metadata,
    sa.Column("epoch_key", sa.Date, primary_key=True), sa.Column("stage", sa.Text, primary_key=True),
    sa.Column("mark", JSONB), sa.Column("summary", JSONB), sa.Column("recorded_at", TZ),
)
