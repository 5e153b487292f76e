"""``Idempotency-Key`` on every POST: a replay returns the first response; another body with the key is refused.

The key's SHA-256 (never the key: a client may use an e-mail address or an account number as its key), a hash
of the request (method, path and the validated body as canonical JSON) and the first response (status and body)
are written in the same transaction as the request's effect, so a key is recorded if and only if its effect
committed. A replay with the same key and request returns the stored response, status and body byte for byte;
the same key with another request gets 409.

Keys are kept for a retention period (``REGSIM_IDEMPOTENCY_RETENTION_HOURS``, default 72 hours: a client's
retries of one request fall well within it), then :func:`purge` deletes them; a request repeated with an
expired key is a new request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from serving import db
from serving.store import execute_many

__all__ = [
    "IdempotencyConflictError",
    "StoredResponse",
    "key_digest",
    "lookup",
    "lookup_many",
    "purge",
    "remember",
    "remember_many",
    "request_hash",
]


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


def key_digest(key: str) -> str:
    """What the store keeps of an ``Idempotency-Key``: its SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def lookup(conn: sa.Connection, key: str, method: str, path: str, digest: str) -> StoredResponse | None:
    """The stored response of a key, ``None`` if the key is new.

    Raises:
        IdempotencyConflictError: The key was used with another request.
    """
    row = conn.execute(sa.select(db.idempotency_keys).where(db.idempotency_keys.c.key_hash == key_digest(key))).first()
    if row is None:
        return None
    if (row.method, row.path, row.request_hash) != (method.upper(), path, digest):
        raise IdempotencyConflictError(
            f"Idempotency-Key {key!r} was already used for another request ({row.method} {row.path} with a "
            "different body); use a new key for a new request"
        )
    return StoredResponse(int(row.status_code), str(row.response_body))


#: Built once (an expanding IN list): building a statement costs more than running it on SQLite.
_SELECT_KEYS = sa.select(db.idempotency_keys).where(
    db.idempotency_keys.c.key_hash.in_(sa.bindparam("keys", expanding=True))
)


def lookup_many(
    conn: sa.Connection, requests: list[tuple[str, str, str, str]]
) -> dict[str, StoredResponse | IdempotencyConflictError]:
    """:func:`lookup` for many requests ``(key, method, path, digest)`` in one query; new keys are left out.

    A key used before with another request maps to its :class:`IdempotencyConflictError` (not raised, so the
    other requests of a group are answered).
    """
    wanted = {key: (method.upper(), path, digest) for key, method, path, digest in requests}
    by_hash = {key_digest(key): key for key in wanted}
    out: dict[str, StoredResponse | IdempotencyConflictError] = {}
    hashes = list(by_hash)
    for k in range(0, len(hashes), 500):
        for row in conn.execute(_SELECT_KEYS, {"keys": hashes[k : k + 500]}):
            key = by_hash[row.key_hash]
            if (row.method, row.path, row.request_hash) != wanted[key]:
                out[key] = IdempotencyConflictError(
                    f"Idempotency-Key {key!r} was already used for another request ({row.method} {row.path} "
                    "with a different body); use a new key for a new request"
                )
            else:
                out[key] = StoredResponse(int(row.status_code), str(row.response_body))
    return out


def remember(conn: sa.Connection, key: str, method: str, path: str, digest: str, response: StoredResponse) -> None:
    """Record a key's first response (inside the transaction of the request's effect)."""
    remember_many(conn, [(key, method, path, digest, response)])


_INSERT_KEYS = db.idempotency_keys.insert()


def remember_many(conn: sa.Connection, entries: Sequence[tuple[str, str, str, str, StoredResponse]]) -> None:
    """Record the first responses of many keys ``(key, method, path, digest, response)`` in one statement."""
    if not entries:
        return
    # Rows go straight to the driver (execute_many): the timestamp is converted as the column type would.
    now: Any = dt.datetime.now(dt.UTC)
    convert = _CREATED_AT.type.bind_processor(conn.dialect)
    if convert is not None:
        now = convert(now)
    rows = [
        {
            "key_hash": key_digest(key),
            "method": method.upper(),
            "path": path,
            "request_hash": digest,
            "status_code": response.status_code,
            "response_body": response.body,
            "created_at": now,
        }
        for key, method, path, digest, response in entries
    ]
    execute_many(conn, _INSERT_KEYS, rows)


_CREATED_AT = db.idempotency_keys.c.created_at


def purge(conn: sa.Connection, older_than: dt.datetime) -> int:
    """Delete the keys first used before ``older_than`` (their retention is over); returns how many."""
    done = conn.execute(sa.delete(db.idempotency_keys).where(db.idempotency_keys.c.created_at < older_than))
    return int(done.rowcount or 0)
