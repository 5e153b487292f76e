"""The store's engine and tables (SQLAlchemy Core), for SQLite and PostgreSQL alike.

* SQLite (``sqlite:///FILE``): the file (and its folder) is created on start; every connection runs in WAL
  mode with ``synchronous=FULL``, so a transaction is on disk when its commit returns and an acknowledged
  decision survives a SIGKILL or a power cut (WAL with ``NORMAL`` may lose the last commits on power loss).
* PostgreSQL (``postgresql://...`` or ``postgresql+psycopg://...``): through psycopg 3, with the server's
  default durability (``fsync``, ``synchronous_commit=on``).

The schema is created and upgraded by Alembic (:mod:`serving.migrations`, run by :func:`upgrade_to_head` at
start-up); the tables below are the current head and what the code reads and writes.

Tables:

* ``events``: the event log, one row per event in the columns of :data:`regsim.eventlog.EVENT_SCHEMA`
  (except ``timestamp``, computed on export), and ``arrived_at``: when the server received a reported event
  (Unix seconds; NULL for what the ledger derived). Each arrangement's events are in event-time order
  (``seq``): a late event rewrites its arrangement's log (:mod:`serving.late_events`).
* ``arrangements``: registered arrangements (the plan as agreed and the prior history), with status and the
  time of their latest event.
* ``incidents``: what late events showed to have gone wrong (a reminder sent after the payment that made it
  moot), one row per message.
* ``messages``: messages planned by decisions, their state (pending, sent, cancelled) and send time.
* ``shadow_decisions``, ``fallbacks``: what the shadow policy would have done; when and why the fallback
  answered.
* ``counters``: decision and message ids.
* ``idempotency_keys``: the first response to every ``Idempotency-Key`` (kept by the key's SHA-256, for the
  retention period), written in the same transaction as the request's effect.
* ``policy_state``: the online learner's state, written in the same transaction as the decisions and
  events that change it.
* ``revoked_sessions``: staff sessions ended by a logout, by the SHA-256 of the session's id, until the
  session's expiry (:mod:`serving.pages.session`); expired rows are purged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine, make_url

__all__ = [
    "ALEMBIC_INI",
    "EVENT_COLUMNS",
    "arrangements",
    "counters",
    "current_revision",
    "events",
    "fallbacks",
    "head_revision",
    "idempotency_keys",
    "incidents",
    "make_engine",
    "messages",
    "metadata",
    "normalise_url",
    "policy_state",
    "revoked_sessions",
    "shadow_decisions",
    "upgrade_to_head",
]

#: The Alembic configuration (``alembic -c serving/alembic.ini upgrade head`` by hand).
ALEMBIC_INI = Path(__file__).resolve().parent / "alembic.ini"

metadata = sa.MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY.
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_FLOAT = sa.Float(precision=53)  # double precision on PostgreSQL; SQLite's REAL is 8 bytes anyway

#: Columns of the ``events`` table after ``seq``: name -> SQL type, in the order of ``EVENT_SCHEMA``.
EVENT_COLUMNS: dict[str, Any] = {
    "time": _FLOAT,
    "event": sa.String(32),
    "arrangement_id": sa.BigInteger(),
    "installment": sa.SmallInteger(),
    "amount_eur": _FLOAT,
    "channel": sa.String(16),
    "message_id": sa.BigInteger(),
    "decision_id": sa.BigInteger(),
    "decision_kind": sa.String(32),
    "a_channel": sa.SmallInteger(),
    "a_send_slot": sa.SmallInteger(),
    "a_due_day": sa.SmallInteger(),
    "a_deferral": sa.SmallInteger(),
    "a_reduction": sa.SmallInteger(),
    "propensity": _FLOAT,
    "send_time": _FLOAT,
    "masked_rules": sa.Text(),
    "policy": sa.String(128),
    "policy_version": sa.String(128),
    "due_day": sa.SmallInteger(),
    "n_installments": sa.SmallInteger(),
    "installment_eur": _FLOAT,
    "deferral_days": sa.SmallInteger(),
    "reduction": _FLOAT,
    "prior_payments": sa.SmallInteger(),
    "prior_late_share": _FLOAT,
    "prior_pay_dom": sa.SmallInteger(),
    "collection_costs_eur": _FLOAT,
}

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    *(
        sa.Column(name, typ, nullable=name not in ("time", "event", "arrangement_id"))
        for name, typ in EVENT_COLUMNS.items()
    ),
    # When the server received a reported event (seconds since the Unix epoch); NULL for derived events.
    sa.Column("arrived_at", _FLOAT, nullable=True),
    sa.Index("ix_events_arrangement_seq", "arrangement_id", "seq"),
    sa.Index("ix_events_decision_id", "decision_id"),
)

arrangements = sa.Table(
    "arrangements",
    metadata,
    sa.Column("arrangement_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("debt_eur", _FLOAT, nullable=False),
    sa.Column("n_installments", sa.SmallInteger(), nullable=False),
    sa.Column("due_day", sa.SmallInteger(), nullable=False),
    sa.Column("created_time", _FLOAT, nullable=False),
    sa.Column("prior_payments", sa.SmallInteger(), nullable=False),
    sa.Column("prior_late_share", _FLOAT, nullable=False),
    sa.Column("prior_pay_dom", sa.SmallInteger(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("last_time", _FLOAT, nullable=False),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("message_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("arrangement_id", sa.BigInteger(), nullable=False, index=True),
    sa.Column("decision_id", sa.BigInteger(), nullable=False),
    sa.Column("installment", sa.SmallInteger(), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("purpose", sa.String(16), nullable=False),
    sa.Column("send_time", _FLOAT, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("state_time", _FLOAT, nullable=True),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("arrangement_id", sa.BigInteger(), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("message_id", sa.BigInteger(), nullable=False, unique=True),
    sa.Column("decision_id", sa.BigInteger(), nullable=False),
    sa.Column("installment", sa.SmallInteger(), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("moot_time", _FLOAT, nullable=False),
    sa.Column("sent_time", _FLOAT, nullable=False),
    sa.Column("recorded_at", _FLOAT, nullable=False),
)

shadow_decisions = sa.Table(
    "shadow_decisions",
    metadata,
    sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("decision_id", sa.BigInteger(), nullable=False, index=True),
    sa.Column("arrangement_id", sa.BigInteger(), nullable=False),
    sa.Column("time", _FLOAT, nullable=False),
    sa.Column("policy", sa.String(128), nullable=False),
    sa.Column("policy_version", sa.String(128), nullable=False),
    sa.Column("a_channel", sa.SmallInteger(), nullable=True),
    sa.Column("a_send_slot", sa.SmallInteger(), nullable=True),
    sa.Column("a_due_day", sa.SmallInteger(), nullable=True),
    sa.Column("a_deferral", sa.SmallInteger(), nullable=True),
    sa.Column("a_reduction", sa.SmallInteger(), nullable=True),
    sa.Column("propensity", _FLOAT, nullable=True),
    sa.Column("agrees", sa.Boolean(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
)

fallbacks = sa.Table(
    "fallbacks",
    metadata,
    sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("decision_id", sa.BigInteger(), nullable=False, index=True),
    sa.Column("arrangement_id", sa.BigInteger(), nullable=False),
    sa.Column("time", _FLOAT, nullable=False),
    sa.Column("active_policy", sa.String(128), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
)

counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger(), nullable=False),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key_hash", sa.String(64), primary_key=True),  # SHA-256 of the key, hex: never the key itself
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("path", sa.String(255), nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=False),
    sa.Column("response_body", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_idempotency_keys_created_at", "created_at"),
)

policy_state = sa.Table(
    "policy_state",
    metadata,
    sa.Column("slot", sa.String(32), primary_key=True),
    sa.Column("policy", sa.String(128), nullable=False),
    sa.Column("policy_version", sa.String(128), nullable=False),
    sa.Column("origin", sa.String(255), nullable=False),
    sa.Column("state", sa.LargeBinary(), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

revoked_sessions = sa.Table(
    "revoked_sessions",
    metadata,
    sa.Column("session_hash", sa.String(64), primary_key=True),  # SHA-256 of the session's id, hex
    sa.Column("expires_at", _FLOAT, nullable=False),  # the session's expiry, seconds since the Unix epoch
    sa.Index("ix_revoked_sessions_expires_at", "expires_at"),
)


def normalise_url(url: str) -> str:
    """The SQLAlchemy URL of a store: ``postgresql://`` and ``postgres://`` go through psycopg 3.

    Raises:
        ValueError: The URL is neither SQLite nor PostgreSQL (the message names the allowed schemes).
    """
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ValueError("store: an in-memory SQLite store would lose every decision; give a file: sqlite:///FILE")
        return parsed.render_as_string(hide_password=False)
    raise ValueError(f"store: unsupported database {backend!r} in {url!r}; allowed: sqlite:///FILE, postgresql://...")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every commit, so an acknowledged commit survives SIGKILL and power loss.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for the store at ``url`` (SQLite: the file's folder is created; WAL, ``synchronous=FULL``)."""
    full = normalise_url(url)
    parsed = make_url(full)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        Path(parsed.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(full, connect_args={"check_same_thread": False, "timeout": 10})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(full, pool_pre_ping=True, pool_size=8, max_overflow=8)


def _alembic_config(connection: sa.Connection | None = None) -> Config:
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(ALEMBIC_INI.parent / "migrations"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade_to_head(engine: Engine) -> str:
    """Create or upgrade the store's schema with Alembic (``alembic upgrade head``); returns the revision."""
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "head")
    return current_revision(engine) or ""


def current_revision(engine: Engine) -> str | None:
    """The store's Alembic revision (``alembic current``), ``None`` for an empty store."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision of :mod:`serving.migrations`."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head
