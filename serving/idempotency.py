"""``Idempotency-Key`` on every POST: a replay returns the first response; another body with the key is refused.

The key, a hash of the request (method, path and the validated body as canonical JSON) and the first response
(status and body) are written in the same transaction as the request's effect, so a key is recorded if and
only if its effect committed. A replay with the same key and request returns the stored response, status and
body byte for byte; the same key with another request gets 409.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from serving import db

__all__ = ["IdempotencyConflictError", "StoredResponse", "lookup", "lookup_many", "remember", "request_hash"]


class IdempotencyConflictError(Exception):
    """The key was used before with another request (409)."""


@dataclass(frozen=True)
class StoredResponse:
    """The first response given to a key."""

    status_code: int
    body: str


def request_hash(method: str, path: str, payload: Any) -> str:
    """SHA-256 of the request, with the body as canonical JSON (key order and whitespace do not matter)."""
    text = json.dumps([method.upper(), path, payload], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def lookup(conn: sa.Connection, key: str, method: str, path: str, digest: str) -> StoredResponse | None:
    """The stored response of a key, ``None`` if the key is new.

    Raises:
        IdempotencyConflictError: The key was used with another request.
    """
    row = conn.execute(sa.select(db.idempotency_keys).where(db.idempotency_keys.c.key == key)).first()
    if row is None:
        return None
    if (row.method, row.path, row.request_hash) != (method.upper(), path, digest):
        raise IdempotencyConflictError(
            f"Idempotency-Key {key!r} was already used for another request ({row.method} {row.path} with a "
            "different body); use a new key for a new request"
        )
    return StoredResponse(int(row.status_code), str(row.response_body))


def lookup_many(
    conn: sa.Connection, requests: list[tuple[str, str, str, str]]
) -> dict[str, StoredResponse | IdempotencyConflictError]:
    """:func:`lookup` for many requests ``(key, method, path, digest)`` in one query; new keys are left out.

    A key used before with another request maps to its :class:`IdempotencyConflictError` (not raised, so the
    other requests of a group are answered).
    """
    wanted = {key: (method.upper(), path, digest) for key, method, path, digest in requests}
    out: dict[str, StoredResponse | IdempotencyConflictError] = {}
    keys = list(wanted)
    for k in range(0, len(keys), 500):
        stmt = sa.select(db.idempotency_keys).where(db.idempotency_keys.c.key.in_(keys[k : k + 500]))
        for row in conn.execute(stmt):
            if (row.method, row.path, row.request_hash) != wanted[row.key]:
                out[row.key] = IdempotencyConflictError(
                    f"Idempotency-Key {row.key!r} was already used for another request ({row.method} {row.path} "
                    "with a different body); use a new key for a new request"
                )
            else:
                out[row.key] = StoredResponse(int(row.status_code), str(row.response_body))
    return out


def remember(conn: sa.Connection, key: str, method: str, path: str, digest: str, response: StoredResponse) -> None:
    """Record a key's first response (inside the transaction of the request's effect)."""
    conn.execute(
        sa.insert(db.idempotency_keys).values(
            key=key,
            method=method.upper(),
            path=path,
            request_hash=digest,
            status_code=response.status_code,
            response_body=response.body,
            created_at=dt.datetime.now(dt.UTC),
        )
    )
