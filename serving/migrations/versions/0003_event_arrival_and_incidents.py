"""Events by event time: each reported event's arrival time, and the incidents a late event reveals.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 21:50:00

``events.arrived_at`` is when the server received an event reported to it (a registration, a decision, a
payment, a message event, an opt-out, a declared ending), in seconds since the Unix epoch; it is NULL for the
events the ledger derived. Events stored before this revision get ``0.0`` (arrived, time unknown) where their
type is one only production reports; a breakdown stored before it stays NULL (the ledger derives most of them,
and a stored row does not say which ones were declared), so a late event re-derives it.

``incidents``: what a late event showed to have gone wrong, one row per message, e.g. a reminder that went
out after the payment that made it moot (``kind`` ``sent_after_payment``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_REPORTED = (
    "arrangement_created",
    "decision",
    "payment",
    "message_sent",
    "message_delivered",
    "message_opened",
    "message_clicked",
    "opt_out",
    "referred",
)


def upgrade() -> None:
    op.add_column("events", sa.Column("arrived_at", sa.Float(precision=53), nullable=True))
    events = sa.table("events", sa.column("event"), sa.column("arrived_at"))
    op.execute(sa.update(events).where(events.c.event.in_(_REPORTED)).values(arrived_at=0.0))
    op.create_table(
        "incidents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("arrangement_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("decision_id", sa.BigInteger(), nullable=False),
        sa.Column("installment", sa.SmallInteger(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("moot_time", sa.Float(precision=53), nullable=False),
        sa.Column("sent_time", sa.Float(precision=53), nullable=False),
        sa.Column("recorded_at", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_incidents"),
        sa.UniqueConstraint("message_id", name="uq_incidents_message_id"),
    )
    op.create_index("ix_incidents_arrangement_id", "incidents", ["arrangement_id"])


def downgrade() -> None:
    op.drop_index("ix_incidents_arrangement_id", table_name="incidents")
    op.drop_table("incidents")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("arrived_at")
