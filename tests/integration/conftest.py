"""Integration fixtures: a real anomaly database per test, never a mock.

`db_url` runs a test twice: on a SQLite file in the test's tmp_path, and on PostgreSQL in a
schema of its own (created here, dropped afterwards) at `AEMON_TEST_POSTGRES_URL`, e.g.
`postgresql+psycopg://postgres@127.0.0.1:5432/test`. Without that variable, or without a server
answering there, the PostgreSQL runs are skipped with the reason.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from aemon.store import AnomalyStore

POSTGRES_ENV = "AEMON_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The PostgreSQL server URL, checked once per session (a skip is remembered)."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: PostgreSQL tests skipped")
    safe = sa.make_url(url).render_as_string(hide_password=True)
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        pytest.skip(f"no PostgreSQL server answers at {safe} ({POSTGRES_ENV}): {reason}")
    finally:
        engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database: a SQLite file (its folder not created yet) or a fresh schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'aemon.db'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    schema = f"aemon_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        # Every connection of the URL, Alembic's version table included, lands in the schema.
        url = sa.make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql("SET lock_timeout = '10s'")
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def store(db_url: str) -> Iterator[AnomalyStore]:
    """An open store on the test's database (migrated on open)."""
    with AnomalyStore(db_url) as opened:
        yield opened
