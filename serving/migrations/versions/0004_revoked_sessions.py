"""Lasting logout: the staff sessions revoked at logout, kept until their cookie would have expired.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 11:40:00

``revoked_sessions``: one row per staff session ended by a logout before its expiry, keyed by the SHA-256 of
the session's id (its CSRF token, fresh at every login; never the token itself), with the session's expiry in
seconds since the Unix epoch. A cookie whose session is listed is no session, across restarts and for every
server process on the store; a row whose expiry has passed is purged (the cookie is refused by its expiry then).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revoked_sessions",
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("session_hash", name="pk_revoked_sessions"),
    )
    op.create_index("ix_revoked_sessions_expires_at", "revoked_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_revoked_sessions_expires_at", table_name="revoked_sessions")
    op.drop_table("revoked_sessions")
