"""Alembic environment of the anomaly database.

`AnomalyStore.upgrade()` runs it with its own connection (in `config.attributes["connection"]`),
already inside a transaction; the `alembic` command line, with a `sqlalchemy.url` option or
`AEMON_DATABASE_URL`, gets an engine configured the same way.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from aemon import config as aemon_config
from aemon.store import MIGRATION_LOCK_KEY, WRITE_OPTION, create_store_engine, metadata

config = context.config


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or aemon_config.database_url()


def run_migrations_offline() -> None:
    """Write the SQL to stdout (`alembic upgrade head --sql`)."""
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        # SQLite DDL is transactional once BEGIN is explicit, which the store's engine ensures.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Processes opening a new database at once queue here; the next one then finds the
            # schema current. (SQLite: the store's BEGIN IMMEDIATE already serialises them.)
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = create_store_engine(_url())
    try:
        with engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            run_migrations(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
