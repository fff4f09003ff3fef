"""Connecting to the anomaly database: the engine (SQLite pragmas and write locks, a
PostgreSQL connect timeout), Alembic's configuration, and database errors as one line."""

from __future__ import annotations

import functools
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from aemon.errors import StoreError, redact_url
from aemon.store.values import dumps

if TYPE_CHECKING:  # Alembic is imported only to migrate: opening an up-to-date store skips it
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).parents[1] / "migrations"
_SQLITE_BUSY_TIMEOUT_MS = 30_000
_PG_CONNECT_TIMEOUT_S = 10
# pg_advisory_xact_lock key that serialises concurrent migrations on one PostgreSQL database.
MIGRATION_LOCK_KEY = 0x61656D6F6E  # "aemon"
# Connection option that makes SQLite start a transaction with BEGIN IMMEDIATE.
WRITE_OPTION = "aemon_write"
VERSION_TABLE = "alembic_version"
# The newest migration in aemon/migrations/versions (a test checks it against Alembic's head).
SCHEMA_HEAD = "0003"


def create_store_engine(url: str) -> Engine:
    """A SQLAlchemy engine for the anomaly database (SQLite or PostgreSQL only).

    SQLite: the parent folder is created, and every connection gets WAL mode, a busy timeout,
    foreign keys, and SQLAlchemy-controlled transactions (`BEGIN IMMEDIATE` for writes, so that
    concurrent writers queue instead of failing).
    """
    safe = safe_url(url)
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise StoreError(f"invalid database URL {safe!r}: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported database {safe!r}: use sqlite:/// or postgresql+psycopg://")
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        make_sqlite_folder(parsed)
    elif "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT_S
    try:
        engine = sa.create_engine(
            parsed,
            json_serializer=dumps,
            pool_pre_ping=backend == "postgresql",
            connect_args=connect_args,
        )
    except (ImportError, sa.exc.SQLAlchemyError) as exc:
        raise StoreError(f"cannot use database {safe}: {exc}") from exc
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Let SQLAlchemy emit BEGIN (see _sqlite_on_begin) instead of the sqlite3 module, whose
    # legacy mode starts transactions late and never for DDL.
    dbapi_connection.isolation_level = None
    # Two processes switching a new file to WAL at once: SQLite answers one of them "database is
    # locked" at once, without waiting out the busy timeout (it would deadlock), so retry here.
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            _sqlite_setup(dbapi_connection)
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_setup(dbapi_connection: sqlite3.Connection) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # A deferred transaction that reads and then writes fails at once with SQLITE_BUSY when
    # another writer got in between (the busy timeout does not apply); taking the write lock
    # up front makes writers queue instead.
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_sqlite_folder(url: sa.URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


@functools.cache
def script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def current_heads(conn: Connection) -> set[str]:
    """The schema revisions stamped in the database (no MigrationContext: it logs at INFO)."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return set()
    return set(conn.scalars(sa.select(sa.column("version_num")).select_from(sa.table(VERSION_TABLE))))


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return redact_url(url)


def error_reason(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's message, without the SQL statement and parameters SQLAlchemy appends."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return " ".join(text.split()) or type(exc).__name__
