"""Alembic environment of the server's store.

Run programmatically by :func:`serving.db.upgrade_to_head` (which passes its open connection in
``config.attributes["connection"]``), or by hand with ``alembic -c serving/alembic.ini upgrade head``, which
takes the URL from ``REGSIM_STORE`` (else ``sqlalchemy.url`` of the ini file).
"""

from __future__ import annotations

import os

from alembic import context

from serving.db import make_engine, metadata

config = context.config
target_metadata = metadata


def run_migrations_offline() -> None:
    """Emit SQL for a URL without connecting (``alembic upgrade head --sql``)."""
    url = os.environ.get("REGSIM_STORE") or config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate over the given connection, or over a fresh engine for the configured store."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = os.environ.get("REGSIM_STORE") or config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = make_engine(url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
