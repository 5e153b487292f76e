"""Self-service: the menus shown to debtors, their choices, and the custom cases waiting for the collectors.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 12:00:00

``menus``: one row per menu shown (``POST /v1/menus`` or the debtor's page), keyed by its id (a decision id,
so it is the ``decision_id`` of its ``menu_shown`` and ``menu_choice`` events and of its confirmation). The
six slot levels, the propensity, policy and version are also in the event log; the row adds what the page
and the API answer from: the menu as answered (JSON), the debtor's answers to the page's questions (JSON), the
state (``open``, ``chosen``, ``superseded`` by a later menu of the arrangement), the option chosen, when, the
answer to the choice (JSON), and ``case_state`` (``queued``: a custom solution waiting in the collectors'
queue).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_FLOAT = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "menus",
        sa.Column("menu_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("arrangement_id", sa.BigInteger(), nullable=False),
        sa.Column("time", _FLOAT, nullable=False),
        sa.Column("installment", sa.SmallInteger(), nullable=False),
        sa.Column("levels", sa.String(length=64), nullable=False),
        sa.Column("propensity", _FLOAT, nullable=False),
        sa.Column("policy", sa.String(length=128), nullable=False),
        sa.Column("policy_version", sa.String(length=128), nullable=False),
        sa.Column("menu_json", sa.Text(), nullable=False),
        sa.Column("answers_json", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("chosen_option", sa.String(length=16), nullable=True),
        sa.Column("chosen_time", _FLOAT, nullable=True),
        sa.Column("choice_json", sa.Text(), nullable=True),
        sa.Column("case_state", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("menu_id", name="pk_menus"),
    )
    op.create_index("ix_menus_arrangement_id", "menus", ["arrangement_id"])


def downgrade() -> None:
    op.drop_index("ix_menus_arrangement_id", table_name="menus")
    op.drop_table("menus")
