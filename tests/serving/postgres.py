"""A throwaway, real PostgreSQL server for tests (not a mock).

:class:`PostgresServer` runs ``initdb`` into a fresh temporary directory and ``pg_ctl start`` on a free TCP
port of 127.0.0.1 (plus a unix socket inside the same directory), with trust authentication (the server only
listens on loopback and lives for one test session) and ``fsync=on``/``synchronous_commit=on`` (production's
defaults, so that the durability test and the benchmark measure the real commit path, not a shortcut).
``stop()`` shuts it down with ``pg_ctl stop -m immediate`` and removes the directory.

The binaries come from ``/usr/lib/postgresql/<version>/bin`` (Debian/Ubuntu's ``postgresql`` package, which
``scripts/setup.sh`` installs) or, failing that, from ``PATH``. ``initdb`` refuses to run as root, so when the
tests run as root (euid 0) every server binary runs as the ``postgres`` system user through
``runuser -u postgres --`` and the temporary directory is handed to that user.

Typical use (``tests/serving/conftest.py`` wraps it in a session fixture)::

    reason = postgres_available()
    if reason is not None:
        pytest.skip(reason)
    with PostgresServer() as server:
        url = server.create_database("api_tests")  # postgresql+psycopg://postgres@127.0.0.1:PORT/api_tests
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from benchmarks.server_process import free_port

__all__ = ["PostgresServer", "PostgresServerError", "find_bin_dir", "postgres_available"]

#: System account the server runs as when the tests run as root (created by Debian's ``postgresql`` package).
SYSTEM_USER = "postgres"
#: Database role created by ``initdb -U``; trust authentication, so no password.
SUPERUSER = "postgres"
#: ``CREATE DATABASE`` names accepted by :meth:`PostgresServer.create_database` (no quoting games in tests).
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresServerError(RuntimeError):
    """The throwaway server could not be initialised, started or stopped; the message carries the server log."""


def find_bin_dir() -> Path | None:
    """The directory of ``initdb``/``pg_ctl``/``postgres``: newest ``/usr/lib/postgresql/*/bin``, else ``PATH``.

    Returns:
        The directory, or ``None`` when no PostgreSQL server binaries are installed.
    """

    def version(path: str) -> tuple[int, ...]:
        # "/usr/lib/postgresql/15/bin" -> (15,); a non-numeric version sorts first.
        name = Path(path).parent.name
        return tuple(int(part) for part in name.split(".")) if re.fullmatch(r"\d+(\.\d+)*", name) else (-1,)

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for directory in candidates:
        if all(os.access(Path(directory) / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(directory)
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("pg_ctl") is not None:
        return Path(initdb).resolve().parent
    return None


def _needs_runuser() -> bool:
    return os.geteuid() == 0


def postgres_available() -> str | None:
    """Whether :class:`PostgresServer` can start here.

    Returns:
        ``None`` when the server binaries (and, as root, the ``postgres`` account and ``runuser``) are present,
        otherwise a one-line reason suitable for ``pytest.skip``.
    """
    if find_bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or PATH"
    if _needs_runuser():
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            return f"running as root and there is no {SYSTEM_USER!r} system user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root and `runuser` is not available to run initdb as the postgres user"
    try:
        import psycopg  # noqa: F401  (the driver the SQLAlchemy URL names)
    except ImportError:
        return "the psycopg driver is not installed (pip install 'psycopg[binary]')"
    return None


class PostgresServer:
    """A real PostgreSQL server in a temporary directory, for the duration of a ``with`` block.

    Args:
        bin_dir: Directory of the server binaries; default :func:`find_bin_dir`.
        start_timeout_s: Seconds ``pg_ctl start`` may wait for the server to accept connections.
        settings: Extra ``postgres -c name=value`` settings (e.g. ``{"max_connections": "200"}``); they
            override the defaults (``fsync=on``, ``listen_addresses=127.0.0.1``).

    Attributes:
        port: The TCP port on 127.0.0.1 (set by :meth:`start`).
        directory: The temporary directory holding ``data/``, ``socket/`` and ``server.log``.
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        start_timeout_s: float = 30.0,
        settings: dict[str, str] | None = None,
    ) -> None:
        found = bin_dir if bin_dir is not None else find_bin_dir()
        if found is None:
            raise PostgresServerError(postgres_available() or "PostgreSQL server binaries not found")
        self.bin_dir = found
        self.start_timeout_s = start_timeout_s
        self.settings = {"fsync": "on", "synchronous_commit": "on", "listen_addresses": "127.0.0.1"}
        self.settings.update(settings or {})
        self.port: int | None = None
        self.directory: Path | None = None
        self._running = False

    # -- paths -----------------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self._dir() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._dir() / "socket"

    @property
    def log_file(self) -> Path:
        return self._dir() / "server.log"

    def _dir(self) -> Path:
        if self.directory is None:
            raise PostgresServerError("the server has not been started")
        return self.directory

    # -- URLs ------------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """SQLAlchemy URL of the default ``postgres`` database: ``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres``."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver, TCP on loopback) of ``database`` on this server."""
        if self.port is None or not self._running:
            raise PostgresServerError("the server is not running")
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    # -- life cycle ------------------------------------------------------------------------------------------
    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / tool), *args]
        return ["runuser", "-u", SYSTEM_USER, "--", *command] if _needs_runuser() else command

    def _run(self, tool: str, *args: str, timeout: float) -> None:
        proc = subprocess.run(
            self._command(tool, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            # The binaries run as another user; the cwd must be one it can enter.
            cwd=self._dir(),
            check=False,
        )
        if proc.returncode != 0:
            log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
            raise PostgresServerError(
                f"{tool} {' '.join(args)} failed with exit code {proc.returncode}:\n"
                f"{proc.stdout}\n{proc.stderr}\n--- server log ---\n{log}"
            )

    def start(self, *, attempts: int = 3) -> PostgresServer:
        """Initialise a cluster in a new temporary directory and start it on a free port.

        Args:
            attempts: How many free ports to try (another process may grab the chosen port before the
                server binds it).

        Returns:
            ``self``, running.

        Raises:
            PostgresServerError: ``initdb`` or ``pg_ctl start`` failed (the message includes the server log).
        """
        if self._running:
            raise PostgresServerError("the server is already running")
        self.directory = Path(tempfile.mkdtemp(prefix="regsim-pg-"))
        try:
            self.socket_dir.mkdir()
            if _needs_runuser():
                # initdb and postgres run as the postgres user: it must own the whole tree (mkdtemp's 0700
                # directory would otherwise be closed to it).
                entry = pwd.getpwnam(SYSTEM_USER)
                for path in (self.directory, self.socket_dir):
                    os.chown(path, entry.pw_uid, entry.pw_gid)
            self._run(
                "initdb",
                "--pgdata",
                str(self.data_dir),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
                # initdb's own fsyncs only protect the template files of a cluster that dies with the test run.
                "--no-sync",
                timeout=120,
            )
            for _ in range(attempts):
                self.port = free_port()
                options = [f"-p {self.port}", f"-k {self.socket_dir}"]
                options += [f"-c {name}={value}" for name, value in self.settings.items()]
                try:
                    self._run(
                        "pg_ctl",
                        "start",
                        "--pgdata",
                        str(self.data_dir),
                        "--log",
                        str(self.log_file),
                        "--wait",
                        "--timeout",
                        str(max(1, round(self.start_timeout_s))),
                        "--options",
                        " ".join(options),
                        timeout=self.start_timeout_s + 30,
                    )
                except PostgresServerError:
                    if "Address already in use" not in self.log_file.read_text(errors="replace"):
                        raise
                    continue
                self._running = True
                return self
            raise PostgresServerError(f"no free port after {attempts} attempts")
        except BaseException:
            self._remove_directory()
            raise

    def stop(self) -> None:
        """Stop the server at once (``pg_ctl stop -m immediate``) and remove its directory. Idempotent."""
        if self.directory is None:
            return
        try:
            if self._running:
                self._run("pg_ctl", "stop", "--pgdata", str(self.data_dir), "--mode", "immediate", "--wait", timeout=60)
        finally:
            self._running = False
            self._remove_directory()

    def _remove_directory(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    @property
    def running(self) -> bool:
        """Whether :meth:`start` succeeded and :meth:`stop` has not been called."""
        return self._running

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- databases -------------------------------------------------------------------------------------------
    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL.

        Args:
            name: Lower-case identifier (``[a-z_][a-z0-9_]*``, at most 63 characters).

        Returns:
            ``postgresql+psycopg://postgres@127.0.0.1:PORT/<name>``.

        Raises:
            ValueError: ``name`` is not such an identifier.
        """
        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")
        import psycopg

        # CREATE DATABASE cannot run inside a transaction block, hence autocommit.
        with psycopg.connect(self._libpq_dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its remaining sessions first (``WITH (FORCE)``, PostgreSQL >= 13)."""
        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")
        import psycopg

        with psycopg.connect(self._libpq_dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _libpq_dsn(self, database: str) -> str:
        if self.port is None or not self._running:
            raise PostgresServerError("the server is not running")
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"
