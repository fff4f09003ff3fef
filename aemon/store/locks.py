"""Per-batch locks that die with their process: a batch is scored (or its monitoring finished)
by one live process at a time, and the batch of a process that was killed can be taken over
at once, with no lease to wait out.

PostgreSQL: a session advisory lock, keyed by the schema and the batch id, on a connection of
its own. SQLite: a POSIX record lock on byte `batch id` of a file beside the database
(`<database>.locks`). Either is released by `release_all()` or by the process's death. A
record lock belongs to the process, so two stores in one process do not exclude each other.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine


class BatchLocks:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None
        self._fd: int | None = None

    def try_lock(self, batch_id: int) -> bool:
        """Take the lock of `batch_id` for this store; False when another process holds it."""
        if self._engine.dialect.name == "postgresql":
            return self._try_advisory(batch_id)
        return self._try_record(batch_id)

    def _try_advisory(self, batch_id: int) -> bool:
        if self._conn is None:
            self._conn = self._engine.connect()
        # hashtext(current_schema()): one database can hold several aemon schemas.
        got = self._conn.scalar(
            sa.text("SELECT pg_try_advisory_lock(hashtext('aemon.batch.' || current_schema()), :id)"),
            {"id": batch_id},
        )
        self._conn.commit()  # the lock is the session's: it outlives the transaction
        return bool(got)

    def _try_record(self, batch_id: int) -> bool:
        import fcntl

        database = self._engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return True  # one process only
        if self._fd is None:
            self._fd = os.open(
                Path(database).with_name(Path(database).name + ".locks"), os.O_RDWR | os.O_CREAT
            )
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, batch_id)
        except OSError:
            return False
        return True

    def release_all(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock_all()"))
                conn.commit()
            except sa.exc.SQLAlchemyError:
                conn.invalidate()  # the session ends, and its locks with it
            finally:
                conn.close()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # releases every record lock of this process on the file
