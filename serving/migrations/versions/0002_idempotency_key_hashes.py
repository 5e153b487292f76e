"""Idempotency keys kept as their SHA-256, with an index for purging them after the retention period.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 21:40:00

The ``key`` column (the key as the client sent it, up to 255 characters) becomes ``key_hash`` (its SHA-256,
hex), and the rows already stored are rewritten with their keys' hashes, so replays of requests made before
the upgrade are still answered. ``created_at`` gets an index (the purge deletes by it). The downgrade cannot
give the keys back: it keeps the hashes in ``key``, so replays of keys stored before it get no match.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = ("method", "path", "request_hash", "status_code", "response_body", "created_at")


def _table(name: str, key: str, key_length: int) -> list[sa.schema.SchemaItem]:
    return [
        sa.Column(key, sa.String(length=key_length), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(key, name=f"pk_{name}"),
    ]


def _copy(source: str, source_key: str, target: str, target_key: str, hash_keys: bool) -> None:
    conn = op.get_bind()
    src = sa.table(source, sa.column(source_key), *(sa.column(c) for c in _COLUMNS))
    dst = sa.table(target, sa.column(target_key), *(sa.column(c) for c in _COLUMNS))
    rows = []
    for row in conn.execute(sa.select(src)).mappings():
        key = str(row[source_key])
        rows.append(
            {
                target_key: hashlib.sha256(key.encode("utf-8")).hexdigest() if hash_keys else key,
                **{c: row[c] for c in _COLUMNS},
            }
        )
        if len(rows) >= 1000:
            conn.execute(sa.insert(dst), rows)
            rows = []
    if rows:
        conn.execute(sa.insert(dst), rows)


def upgrade() -> None:
    op.create_table("idempotency_keys_hashed", *_table("idempotency_keys_hashed", "key_hash", 64))
    _copy("idempotency_keys", "key", "idempotency_keys_hashed", "key_hash", hash_keys=True)
    op.drop_table("idempotency_keys")
    op.rename_table("idempotency_keys_hashed", "idempotency_keys")
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.create_table("idempotency_keys_plain", *_table("idempotency_keys_plain", "key", 255))
    _copy("idempotency_keys", "key_hash", "idempotency_keys_plain", "key", hash_keys=False)
    op.drop_table("idempotency_keys")
    op.rename_table("idempotency_keys_plain", "idempotency_keys")
