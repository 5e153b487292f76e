"""The throwaway PostgreSQL server of :mod:`tests.serving.postgres`: starts fast, is real, cleans up."""

from __future__ import annotations

import socket
import time

import pytest
import sqlalchemy as sa

from tests.serving.postgres import PostgresServer, PostgresServerError, postgres_available

_REASON = postgres_available()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def test_start_connect_create_database_stop() -> None:
    started = time.perf_counter()
    server = PostgresServer().start()
    startup_s = time.perf_counter() - started
    directory = server.directory
    assert directory is not None and directory.is_dir()
    try:
        # The issue asks for a server that starts in well under the test budget.
        assert startup_s < 5.0, f"PostgreSQL took {startup_s:.2f} s to start"
        assert server.url == f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/postgres"

        engine = sa.create_engine(server.url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SHOW fsync")).scalar_one() == "on"
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        engine.dispose()

        url = server.create_database("helper_check")
        assert url.endswith("/helper_check")
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x integer primary key)"))
            conn.execute(sa.text("INSERT INTO t VALUES (1), (2)"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT sum(x) FROM t")).scalar_one() == 3
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == "helper_check"
        engine.dispose()

        server.drop_database("helper_check")
        with sa.create_engine(server.url).connect() as conn:
            names = conn.execute(sa.text("SELECT datname FROM pg_database")).scalars().all()
        assert "helper_check" not in names
    finally:
        server.stop()
    assert not server.running
    assert not directory.exists()
    server.stop()  # idempotent


def test_context_manager_and_guards() -> None:
    with PostgresServer() as server:
        with pytest.raises(ValueError, match="database name"):
            server.create_database("Robert'); DROP TABLE students;--")
        with pytest.raises(PostgresServerError, match="already running"):
            server.start()
        port = server.port
    with pytest.raises(PostgresServerError, match="not"):
        _ = server.url
    # The port is released once the server is gone (SO_REUSEADDR: connections in TIME_WAIT do not count,
    # a listening server still would).
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        assert port is not None
        sock.bind(("127.0.0.1", port))
