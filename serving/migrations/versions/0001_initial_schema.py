"""The initial schema of the server's store (see serving/db.py for what each table holds).

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 16:26:34.557908
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "arrangements",
        sa.Column("arrangement_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("debt_eur", sa.Float(precision=53), nullable=False),
        sa.Column("n_installments", sa.SmallInteger(), nullable=False),
        sa.Column("due_day", sa.SmallInteger(), nullable=False),
        sa.Column("created_time", sa.Float(precision=53), nullable=False),
        sa.Column("prior_payments", sa.SmallInteger(), nullable=False),
        sa.Column("prior_late_share", sa.Float(precision=53), nullable=False),
        sa.Column("prior_pay_dom", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_time", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("arrangement_id"),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    counters = sa.table("counters", sa.column("name", sa.String()), sa.column("value", sa.BigInteger()))
    # Decision and message ids are handed out from these rows (serving/store.py), starting at 1.
    op.bulk_insert(counters, [{"name": "decision", "value": 0}, {"name": "message", "value": 0}])
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("time", sa.Float(precision=53), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("arrangement_id", sa.BigInteger(), nullable=False),
        sa.Column("installment", sa.SmallInteger(), nullable=True),
        sa.Column("amount_eur", sa.Float(precision=53), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("decision_id", sa.BigInteger(), nullable=True),
        sa.Column("decision_kind", sa.String(length=32), nullable=True),
        sa.Column("a_channel", sa.SmallInteger(), nullable=True),
        sa.Column("a_send_slot", sa.SmallInteger(), nullable=True),
        sa.Column("a_due_day", sa.SmallInteger(), nullable=True),
        sa.Column("a_deferral", sa.SmallInteger(), nullable=True),
        sa.Column("a_reduction", sa.SmallInteger(), nullable=True),
        sa.Column("propensity", sa.Float(precision=53), nullable=True),
        sa.Column("send_time", sa.Float(precision=53), nullable=True),
        sa.Column("masked_rules", sa.Text(), nullable=True),
        sa.Column("policy", sa.String(length=128), nullable=True),
        sa.Column("policy_version", sa.String(length=128), nullable=True),
        sa.Column("due_day", sa.SmallInteger(), nullable=True),
        sa.Column("n_installments", sa.SmallInteger(), nullable=True),
        sa.Column("installment_eur", sa.Float(precision=53), nullable=True),
        sa.Column("deferral_days", sa.SmallInteger(), nullable=True),
        sa.Column("reduction", sa.Float(precision=53), nullable=True),
        sa.Column("prior_payments", sa.SmallInteger(), nullable=True),
        sa.Column("prior_late_share", sa.Float(precision=53), nullable=True),
        sa.Column("prior_pay_dom", sa.SmallInteger(), nullable=True),
        sa.Column("collection_costs_eur", sa.Float(precision=53), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_events_arrangement_seq", "events", ["arrangement_id", "seq"], unique=False)
    op.create_index("ix_events_decision_id", "events", ["decision_id"], unique=False)
    op.create_table(
        "fallbacks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("decision_id", sa.BigInteger(), nullable=False),
        sa.Column("arrangement_id", sa.BigInteger(), nullable=False),
        sa.Column("time", sa.Float(precision=53), nullable=False),
        sa.Column("active_policy", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_fallbacks_decision_id"), "fallbacks", ["decision_id"], unique=False)
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "messages",
        sa.Column("message_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("arrangement_id", sa.BigInteger(), nullable=False),
        sa.Column("decision_id", sa.BigInteger(), nullable=False),
        sa.Column("installment", sa.SmallInteger(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("send_time", sa.Float(precision=53), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_time", sa.Float(precision=53), nullable=True),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.create_index(op.f("ix_messages_arrangement_id"), "messages", ["arrangement_id"], unique=False)
    op.create_table(
        "policy_state",
        sa.Column("slot", sa.String(length=32), nullable=False),
        sa.Column("policy", sa.String(length=128), nullable=False),
        sa.Column("policy_version", sa.String(length=128), nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("slot"),
    )
    op.create_table(
        "shadow_decisions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("decision_id", sa.BigInteger(), nullable=False),
        sa.Column("arrangement_id", sa.BigInteger(), nullable=False),
        sa.Column("time", sa.Float(precision=53), nullable=False),
        sa.Column("policy", sa.String(length=128), nullable=False),
        sa.Column("policy_version", sa.String(length=128), nullable=False),
        sa.Column("a_channel", sa.SmallInteger(), nullable=True),
        sa.Column("a_send_slot", sa.SmallInteger(), nullable=True),
        sa.Column("a_due_day", sa.SmallInteger(), nullable=True),
        sa.Column("a_deferral", sa.SmallInteger(), nullable=True),
        sa.Column("a_reduction", sa.SmallInteger(), nullable=True),
        sa.Column("propensity", sa.Float(precision=53), nullable=True),
        sa.Column("agrees", sa.Boolean(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_shadow_decisions_decision_id"), "shadow_decisions", ["decision_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_shadow_decisions_decision_id"), table_name="shadow_decisions")
    op.drop_table("shadow_decisions")
    op.drop_table("policy_state")
    op.drop_index(op.f("ix_messages_arrangement_id"), table_name="messages")
    op.drop_table("messages")
    op.drop_table("idempotency_keys")
    op.drop_index(op.f("ix_fallbacks_decision_id"), table_name="fallbacks")
    op.drop_table("fallbacks")
    op.drop_index("ix_events_decision_id", table_name="events")
    op.drop_index("ix_events_arrangement_seq", table_name="events")
    op.drop_table("events")
    op.drop_table("counters")
    op.drop_table("arrangements")
