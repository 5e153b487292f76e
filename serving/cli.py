"""``regsim serve``, ``regsim export-log`` and ``regsim staff-user``: :func:`register` adds them to ``regsim``.

They are subcommands of ``regsim`` (``experiments/cli.py`` registers them); ``python -m serving.cli ...`` runs them too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["export_log", "main", "register", "staff_user_entry"]


def export_log(store: str, out: Path, population: str | None = None) -> Path:
    """Write the store's event log as ``OUT/events.parquet`` (the simulator's schema, sorted by time), and the
    shadow policy's decisions, if any, as ``OUT/shadow_decisions.parquet`` (its table as stored).

    The file reads with :func:`regsim.eventlog.read_events`, and :func:`regsim.metrics.kpis` runs on it
    unchanged. Events are sorted stably by time, as a simulated log is (the store keeps them in commit order;
    events of one arrangement are committed in time order except the installments falling due, which the
    server books when it next sees the arrangement).

    Args:
        store: The store's URL.
        out: Output folder (created).
        population: World config whose calendar start is the epoch (default: the default world).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    import sqlalchemy as sa

    from regsim.config import load_world_config
    from regsim.eventlog import EVENT_SCHEMA, write_events
    from serving import db
    from serving.settings import DEFAULT_POPULATION
    from serving.store import iter_event_tables

    config = load_world_config(population or DEFAULT_POPULATION)
    engine = db.make_engine(store)
    try:
        if db.current_revision(engine) is None:
            raise ValueError(f"store: {store} holds no regsim schema (no Alembic revision)")
        with engine.connect() as conn:
            tables = list(iter_event_tables(conn, config.simulation.start_date))
            shadow = [dict(r._mapping) for r in conn.execute(sa.select(db.shadow_decisions).order_by("id"))]
    finally:
        engine.dispose()
    table = pa.concat_tables(tables) if tables else EVENT_SCHEMA.empty_table()
    if len(table):
        table = table.take(pa.array(_stable_time_order(table)))
    out.mkdir(parents=True, exist_ok=True)
    if shadow:  # the shadow policy's decisions, for `regsim ope --policy shadow` (issue 19)
        pq.write_table(pa.Table.from_pylist(shadow), out / "shadow_decisions.parquet")
    return write_events(table, out / "events.parquet")


def _stable_time_order(table: object) -> list[int]:
    import numpy as np

    time = table.column("time").to_numpy()  # type: ignore[attr-defined]
    return np.argsort(time, kind="stable").tolist()


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from serving.app import create_app
    from serving.settings import ServerSettings

    overrides: dict[str, object] = {"policy": args.policy}
    for name in ("store", "host", "port", "population", "access_log"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    try:
        settings = ServerSettings(**overrides)  # type: ignore[arg-type]  # the rest from REGSIM_* variables
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        workers=1,
        log_level="info",
        access_log=settings.access_log,
    )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    try:
        path = export_log(args.store, Path(args.out), args.population)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def staff_user_entry(user: str, password: str) -> str:
    """A ``REGSIM_STAFF_USERS`` entry, ``USER:scrypt$SALT$HASH``, for a user and password (never stored in clear).

    Raises:
        ValueError: The user name is empty or holds ``:`` or ``,`` (the entry's separators), or the password is
            shorter than 12 characters.
    """
    from serving.pages.session import hash_password

    if not user or any(c in user for c in ":,") or user != user.strip():
        raise ValueError(f"user: {user!r} must be non-empty, without ':' or ',' or surrounding spaces")
    if len(password) < 12:
        raise ValueError("password: at least 12 characters")
    return f"{user}:{hash_password(password)}"


def _cmd_staff_user(args: argparse.Namespace) -> int:
    import getpass

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.user}: ")
        if getpass.getpass("again: ") != password:
            print("error: the passwords differ", file=sys.stderr)
            return 2
    try:
        print(staff_user_entry(args.user, password))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve``, ``export-log`` and ``staff-user`` to a ``regsim`` argument parser's subcommands."""
    sv = subparsers.add_parser("serve", help="serve a policy over HTTP (settings also from REGSIM_* variables)")
    sv.add_argument("--policy", required=True, help="policy artifact folder (or a registered policy name)")
    sv.add_argument(
        "--store", default=os.environ.get("REGSIM_STORE"), help="store URL (sqlite:///FILE or postgresql://...)"
    )
    sv.add_argument("--host", default=None, help="interface (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=None, help="TCP port (default 8000)")
    sv.add_argument("--population", default=None, help="world config YAML (rules, options, calendar)")
    sv.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log one line per request (default: off, or REGSIM_ACCESS_LOG; /metrics counts every request, and a "
        "line per request costs throughput: python -m benchmarks.bench_server --access-log measures it)",
    )
    sv.set_defaults(func=_cmd_serve)
    ex = subparsers.add_parser("export-log", help="write a server's event log as Parquet (events.parquet)")
    ex.add_argument("--store", required=True, help="store URL")
    ex.add_argument("--out", required=True, help="output folder")
    ex.add_argument("--population", default=None, help="world config YAML giving the epoch (default: default world)")
    ex.set_defaults(func=_cmd_export)
    su = subparsers.add_parser(
        "staff-user",
        help="print a REGSIM_STAFF_USERS entry (USER:scrypt$SALT$HASH) for a staff login to the /staff pages",
    )
    su.add_argument("user", help="the login name")
    su.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin (scripts)"
    )
    su.set_defaults(func=_cmd_staff_user)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m serving.cli serve|export-log|staff-user ...``."""
    parser = argparse.ArgumentParser(prog="regsim")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
