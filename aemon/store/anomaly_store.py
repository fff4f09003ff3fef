"""`AnomalyStore`: the batch ledger, flagged records, drift reports, feedback and alerts, in
transactions that turn SQLAlchemy's errors into `StoreError`."""

from __future__ import annotations

import gc
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from aemon import config
from aemon.errors import ConfigError, StoreError
from aemon.store.engine import (
    SCHEMA_HEAD,
    WRITE_OPTION,
    alembic_config,
    create_store_engine,
    current_heads,
    error_reason,
    safe_url,
    script_directory,
)
from aemon.store.locks import BatchLocks
from aemon.store.records import (
    ALERT_STATUSES,
    BATCH_STATUSES,
    VERDICTS,
    AlertRow,
    Anomaly,
    Batch,
    DriftReportRow,
    FeedbackRow,
)
from aemon.store.schema import (
    alerts_table,
    anomalies_table,
    batches_table,
    drift_reports_table,
    feedback_table,
)
from aemon.store.values import anomaly_values, as_utc, check_sha256, check_text, jsonable, utcnow

_log = logging.getLogger(__name__)

# Rows per executemany call inside complete_batch; progress is reported between chunks.
_CHUNK_ROWS = 5_000
# Waits before each new try when a database server does not answer (7.5 s in all), so that a
# restart or a network blip does not fail a run; SQLite files are not retried.
CONNECT_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)


class AnomalyStore:
    """The anomaly database at `url` (default `config.database_url()`).

    Opening a new or outdated database applies the Alembic migrations first. SQLite runs in WAL
    mode with a busy timeout and foreign keys on, so several processes can share one file.
    """

    def __init__(self, url: str | None = None) -> None:
        self._url = url or config.database_url()
        self._engine = create_store_engine(self._url)
        self._locks = BatchLocks(self._engine)
        self.url = safe_url(self._url)
        try:
            self._ensure_schema()
        except BaseException:
            self._engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"AnomalyStore({self.url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the batches this store holds and close the pooled connections (the store
        can still be used: it reconnects)."""
        self._locks.release_all()
        self._engine.dispose()

    # -- schema --

    def upgrade(self) -> str:
        """Apply every pending migration (`alembic upgrade head`); returns the revision."""
        from alembic import command
        from alembic.util import CommandError

        cfg = alembic_config()
        try:
            with self._transaction("upgrading the schema", write=True) as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                revision = ", ".join(sorted(current_heads(conn)))
        except CommandError as exc:
            raise StoreError(f"cannot upgrade the schema of {self.url}: {exc}") from exc
        if not revision:  # pragma: no cover - upgrade always stamps a revision
            raise StoreError(f"no schema revision in {self.url} after upgrade")
        return revision

    def current_revision(self) -> str | None:
        """The schema revision of the database, None for an empty database."""
        with self._transaction("reading the schema revision") as conn:
            heads = current_heads(conn)
        return ", ".join(sorted(heads)) or None

    def _ensure_schema(self) -> None:
        with self._transaction("reading the schema revision") as conn:
            current = current_heads(conn)
        if current == {SCHEMA_HEAD}:  # up to date, the usual case: no need to load Alembic
            return
        script = script_directory()
        heads = set(script.get_heads())
        if current == heads:
            return
        unknown = current - {rev.revision for rev in script.walk_revisions()}
        if unknown:
            msg = (
                f"database {self.url} has schema revision {', '.join(sorted(unknown))}, which "
                f"this aemon does not know (newest known: {', '.join(sorted(heads))}); "
                "upgrade aemon"
            )
            raise StoreError(msg)
        _log.info("migrating %s from %s to %s", self.url, sorted(current) or "empty", heads)
        self.upgrade()

    # -- batches --

    def claim_batch(
        self, *, source: str, content_sha256: str, model_name: str, model_version: str
    ) -> Batch | None:
        """Claim a batch for scoring by one model version, and hold it until `close()`.

        Inserts a `running` batch, or takes over an existing one that is `running` (its process
        died) or `failed`. Returns None when the batch is `done` or `quarantined` for this model,
        or held by another live process (`hold_batch`): the caller skips it, and nothing changes.
        """
        check_sha256(content_sha256)
        check_text(source=source, model_name=model_name, model_version=model_version)
        now = utcnow()
        key = (
            (batches_table.c.content_sha256 == content_sha256)
            & (batches_table.c.model_name == model_name)
            & (batches_table.c.model_version == model_version)
        )
        with self._transaction(f"claiming batch {source}", write=True) as conn:
            stmt = (
                self._insert(batches_table)
                .values(
                    source=source,
                    content_sha256=content_sha256,
                    model_name=model_name,
                    model_version=model_version,
                    status="running",
                    n_records=0,
                    n_flagged=0,
                    started_at=now,
                )
                .on_conflict_do_nothing(index_elements=["content_sha256", "model_name", "model_version"])
                .returning(*batches_table.c)
            )
            row = conn.execute(stmt).one_or_none()
            if row is not None:
                # No other process knows the new id before the commit: the lock is free.
                self.hold_batch(row.id)
                return _batch(row)
            existing = conn.execute(sa.select(batches_table).where(key).with_for_update()).one()
            if existing.status in ("done", "quarantined"):
                _log.info(
                    "batch %s is %s for %s/%s: skipped",
                    existing.id,
                    existing.status,
                    model_name,
                    model_version,
                )
                return None
            if not self.hold_batch(existing.id):
                _log.info("batch %s is being scored by another process: skipped", existing.id)
                return None
            _log.info("taking over %s batch %s", existing.status, existing.id)
            taken = conn.execute(
                sa.update(batches_table)
                .where(batches_table.c.id == existing.id)
                .values(status="running", source=source, error=None, started_at=now, finished_at=None)
                .returning(*batches_table.c)
            ).one()
            return _batch(taken)

    def hold_batch(self, batch_id: int) -> bool:
        """Hold `batch_id` until `close()` (or this process ends); False when another live
        process holds it. `claim_batch` holds what it claims; the score flow holds a done
        batch while it finishes its monitoring."""
        try:
            return self._locks.try_lock(batch_id)
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            reason = error_reason(exc) if isinstance(exc, sa.exc.SQLAlchemyError) else str(exc)
            raise StoreError(f"cannot lock batch {batch_id} in {self.url}: {reason}") from exc

    def complete_batch(
        self,
        batch_id: int,
        anomalies: Iterable[Mapping[str, Any]],
        *,
        n_records: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Store a batch's flagged records and mark it `done`, in one transaction.

        Each anomaly maps `record_key`, `score` and `threshold` (flagged when score > threshold),
        and optionally `timestamp`, `p_value` and `details` (JSON-able); the model name and
        version come from the batch. `anomalies` may be a generator: rows are checked and
        written a chunk at a time, and a bad row rolls back the whole batch (ConfigError).
        Rows already stored are skipped, and a batch already `done` is left as it is.
        `on_progress(n_written)` is called inside the transaction after each chunk of rows.
        Returns the number of rows inserted.
        """
        if n_records < 0:
            raise ConfigError(f"n_records must be >= 0, got {n_records}")
        with _gc_paused(), self._transaction(f"completing batch {batch_id}", write=True) as conn:
            batch = conn.execute(
                sa.select(batches_table).where(batches_table.c.id == batch_id).with_for_update()
            ).one_or_none()
            if batch is None:
                raise StoreError(f"batch {batch_id} does not exist in {self.url}")
            if batch.status == "done":
                _log.info("batch %s is already done: nothing stored", batch_id)
                return 0
            if batch.status == "quarantined":
                raise StoreError(f"batch {batch_id} is quarantined: claim it before completing")
            common = {
                "batch_id": batch_id,
                "model_name": batch.model_name,
                "model_version": batch.model_version,
                "created_at": utcnow(),
            }
            count = (
                sa.select(sa.func.count())
                .select_from(anomalies_table)
                .where(anomalies_table.c.batch_id == batch_id)
            )
            n_before = conn.scalar(count) or 0
            sql, to_params = self._anomaly_insert(conn, common)
            n_written, numbered = 0, enumerate(anomalies)
            while chunk := list(itertools.islice(numbered, _CHUNK_ROWS)):
                conn.exec_driver_sql(sql, [to_params(anomaly_values(i, a)) for i, a in chunk])
                n_written += len(chunk)
                if on_progress is not None:
                    on_progress(n_written)
            # The batch row is locked, so no one else adds rows to this batch meanwhile.
            n_flagged = conn.scalar(count) or 0
            n_inserted = n_flagged - n_before
            conn.execute(
                sa.update(batches_table)
                .where(batches_table.c.id == batch_id)
                .values(
                    status="done",
                    n_records=n_records,
                    n_flagged=n_flagged,
                    error=None,
                    finished_at=common["created_at"],
                )
            )
        _log.info("batch %s done: %d records, %d flagged", batch_id, n_records, n_flagged)
        return n_inserted

    def fail_batch(self, batch_id: int, error: str, *, quarantined: bool = False) -> None:
        """Mark a batch `failed` (retried on the next claim) or `quarantined` (never retried).

        A batch already `done` stays done.
        """
        status = "quarantined" if quarantined else "failed"
        with self._transaction(f"marking batch {batch_id} {status}", write=True) as conn:
            self._require_batch(conn, batch_id)
            result = conn.execute(
                sa.update(batches_table)
                .where((batches_table.c.id == batch_id) & (batches_table.c.status != "done"))
                .values(status=status, error=error, finished_at=utcnow())
            )
            if result.rowcount == 0:
                _log.warning("batch %s is done; not marking it %s: %s", batch_id, status, error)

    def mark_monitored(self, batch_id: int) -> None:
        """Record that a `done` batch's drift report and alert are done, so that a later run of
        its content skips it instead of resuming its monitoring."""
        with self._transaction(f"marking batch {batch_id} monitored", write=True) as conn:
            self._require_batch(conn, batch_id)
            conn.execute(
                sa.update(batches_table)
                .where((batches_table.c.id == batch_id) & (batches_table.c.status == "done"))
                .values(monitored_at=utcnow())
            )

    def record_quarantine(
        self,
        *,
        source: str,
        content_sha256: str,
        model_name: str,
        model_version: str,
        error: str,
    ) -> int:
        """Record a batch that failed validation before it was claimed; returns its id.

        Creates the batch as `quarantined`, or marks the existing one so (unless it is `done`).
        """
        check_sha256(content_sha256)
        check_text(source=source, model_name=model_name, model_version=model_version)
        now = utcnow()
        key = (
            (batches_table.c.content_sha256 == content_sha256)
            & (batches_table.c.model_name == model_name)
            & (batches_table.c.model_version == model_version)
        )
        with self._transaction(f"quarantining batch {source}", write=True) as conn:
            batch_id = conn.scalar(
                self._insert(batches_table)
                .values(
                    source=source,
                    content_sha256=content_sha256,
                    model_name=model_name,
                    model_version=model_version,
                    status="quarantined",
                    n_records=0,
                    n_flagged=0,
                    error=error,
                    started_at=now,
                    finished_at=now,
                )
                .on_conflict_do_nothing(index_elements=["content_sha256", "model_name", "model_version"])
                .returning(batches_table.c.id)
            )
            if batch_id is not None:
                return int(batch_id)
            conn.execute(
                sa.update(batches_table)
                .where(key & (batches_table.c.status != "done"))
                .values(status="quarantined", source=source, error=error, finished_at=now)
            )
            return int(conn.execute(sa.select(batches_table.c.id).where(key)).scalar_one())

    def find_batch(self, *, content_sha256: str, model_name: str, model_version: str) -> Batch | None:
        """The batch of this content and model version, None when there is none."""
        key = (
            (batches_table.c.content_sha256 == content_sha256)
            & (batches_table.c.model_name == model_name)
            & (batches_table.c.model_version == model_version)
        )
        with self._transaction(f"reading batch {content_sha256[:12]}") as conn:
            row = conn.execute(sa.select(batches_table).where(key)).one_or_none()
        return _batch(row) if row is not None else None

    def get_batch(self, batch_id: int) -> Batch:
        """The batch `batch_id`; StoreError if there is none."""
        with self._transaction(f"reading batch {batch_id}") as conn:
            return _batch(self._require_batch(conn, batch_id))

    def list_batches(
        self, *, limit: int | None = 100, status: str | None = None, model_name: str | None = None
    ) -> list[Batch]:
        """The newest batches first; only those with `status` or of `model_name` when given."""
        t = batches_table
        stmt = sa.select(t).order_by(t.c.id.desc())
        if status is not None:
            if status not in BATCH_STATUSES:
                raise ConfigError(f"status must be one of {', '.join(BATCH_STATUSES)}, got {status!r}")
            stmt = stmt.where(t.c.status == status)
        if model_name is not None:
            stmt = stmt.where(t.c.model_name == model_name)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._transaction("listing batches") as conn:
            return [_batch(row) for row in conn.execute(stmt)]

    # -- anomalies --

    def list_anomalies(self, *, batch_id: int | None = None, limit: int | None = 100) -> list[Anomaly]:
        """Flagged records, newest batch first and highest score first within a batch."""
        t = anomalies_table
        stmt = sa.select(t).order_by(t.c.batch_id.desc(), t.c.score.desc(), t.c.id)
        if batch_id is not None:
            stmt = stmt.where(t.c.batch_id == batch_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._transaction("listing anomalies") as conn:
            return [Anomaly(**row._asdict()) for row in conn.execute(stmt)]

    def get_anomaly(self, anomaly_id: int) -> Anomaly:
        """The flagged record `anomaly_id`; StoreError if there is none."""
        t = anomalies_table
        with self._transaction(f"reading anomaly {anomaly_id}") as conn:
            row = conn.execute(sa.select(t).where(t.c.id == anomaly_id)).one_or_none()
        if row is None:
            raise StoreError(f"anomaly {anomaly_id} does not exist in {self.url}")
        return Anomaly(**row._asdict())

    # -- feedback --

    def add_feedback(self, anomaly_id: int, verdict: str, note: str | None = None) -> int:
        """Record a verdict (`true_positive` | `false_positive`) on an anomaly; returns its id.

        One verdict per anomaly: a second one replaces the first (same id, new verdict, note
        and time); `verdict_of` tells what it was before."""
        if verdict not in VERDICTS:
            raise ConfigError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
        f = feedback_table
        values = {"verdict": verdict, "note": note, "created_at": utcnow()}
        with self._transaction(f"adding feedback on anomaly {anomaly_id}", write=True) as conn:
            found = conn.scalar(sa.select(anomalies_table.c.id).where(anomalies_table.c.id == anomaly_id))
            if found is None:
                raise StoreError(f"anomaly {anomaly_id} does not exist in {self.url}")
            earlier = conn.scalar(sa.select(sa.func.min(f.c.id)).where(f.c.anomaly_id == anomaly_id))
            if earlier is not None:
                conn.execute(sa.update(f).where(f.c.id == earlier).values(**values))
                return int(earlier)
            stmt = sa.insert(f).values(anomaly_id=anomaly_id, **values).returning(f.c.id)
            return int(conn.execute(stmt).scalar_one())

    def verdict_of(self, anomaly_id: int) -> str | None:
        """The verdict recorded on an anomaly, or None."""
        f = feedback_table
        with self._transaction(f"reading feedback on anomaly {anomaly_id}") as conn:
            stmt = sa.select(f.c.verdict).where(f.c.anomaly_id == anomaly_id).order_by(f.c.id).limit(1)
            return conn.scalar(stmt)

    def list_feedback(
        self, *, model_name: str | None = None, verdict: str | None = None
    ) -> list[FeedbackRow]:
        """Verdicts, oldest first, each with its anomaly's score, threshold and model."""
        a = anomalies_table
        stmt = (
            sa.select(
                feedback_table.c.id,
                feedback_table.c.anomaly_id,
                feedback_table.c.verdict,
                feedback_table.c.note,
                feedback_table.c.created_at,
                a.c.batch_id,
                a.c.record_key,
                a.c.score,
                a.c.threshold,
                a.c.p_value,
                a.c.model_name,
                a.c.model_version,
            )
            .join(a, a.c.id == feedback_table.c.anomaly_id)
            .order_by(feedback_table.c.id)
        )
        if model_name is not None:
            stmt = stmt.where(a.c.model_name == model_name)
        if verdict is not None:
            stmt = stmt.where(feedback_table.c.verdict == verdict)
        with self._transaction("listing feedback") as conn:
            return [FeedbackRow(**row._asdict()) for row in conn.execute(stmt)]

    # -- drift --

    def record_drift_report(
        self,
        batch_id: int,
        *,
        drift_detected: bool,
        drifted_share: float,
        details: Mapping[str, Any],
        html_path: str,
        json_path: str,
    ) -> int:
        """Record the drift report of a batch (`details`: per-column results); returns its id.

        A batch has one drift report: recording another (two processes scored the batch at
        once, or monitoring ran again) replaces it and keeps its id.
        """
        if not 0.0 <= float(drifted_share) <= 1.0:  # also refuses NaN
            raise ConfigError(f"drifted_share must be in [0, 1], got {drifted_share}")
        values = {
            "batch_id": batch_id,
            "drift_detected": bool(drift_detected),
            "drifted_share": float(drifted_share),
            "details": jsonable(details, "drift details"),
            "html_path": str(html_path),
            "json_path": str(json_path),
            "created_at": utcnow(),
        }
        with self._transaction(f"recording drift of batch {batch_id}", write=True) as conn:
            self._require_batch(conn, batch_id)
            ins = self._insert(drift_reports_table).values(values)
            stmt = ins.on_conflict_do_update(
                index_elements=["batch_id"],
                set_={k: ins.excluded[k] for k in values if k != "batch_id"},
            ).returning(drift_reports_table.c.id)
            return int(conn.execute(stmt).scalar_one())

    def list_drift_reports(
        self, *, model_name: str | None = None, limit: int | None = 100
    ) -> list[DriftReportRow]:
        """Drift reports, newest first, each with its batch's model (`limit` None: all)."""
        d = drift_reports_table
        stmt = (
            sa.select(*d.c, batches_table.c.model_name, batches_table.c.model_version)
            .join(batches_table, batches_table.c.id == d.c.batch_id)
            .order_by(d.c.id.desc())
            .limit(limit)
        )
        if model_name is not None:
            stmt = stmt.where(batches_table.c.model_name == model_name)
        with self._transaction("listing drift reports") as conn:
            return [DriftReportRow(**row._asdict()) for row in conn.execute(stmt)]

    def drift_report_of(self, batch_id: int) -> DriftReportRow | None:
        """The drift report of one batch, None when it has none."""
        d = drift_reports_table
        stmt = (
            sa.select(*d.c, batches_table.c.model_name, batches_table.c.model_version)
            .join(batches_table, batches_table.c.id == d.c.batch_id)
            .where(d.c.batch_id == batch_id)
        )
        with self._transaction(f"reading the drift report of batch {batch_id}") as conn:
            row = conn.execute(stmt).one_or_none()
        return DriftReportRow(**row._asdict()) if row is not None else None

    # -- alerts --

    def record_alert(
        self,
        batch_id: int,
        target: str,
        *,
        status: str,
        error: str | None,
        payload: Mapping[str, Any],
    ) -> None:
        """Record one delivery attempt of a batch's alert to `target` (attempts += 1).

        `target` is stored as given: pass an identifier without secrets, not a full Apprise URL.
        """
        if status not in ALERT_STATUSES:
            raise ConfigError(f"alert status must be one of {', '.join(ALERT_STATUSES)}, got {status!r}")
        now = utcnow()
        with self._transaction(f"recording alert of batch {batch_id}", write=True) as conn:
            self._require_batch(conn, batch_id)
            ins = self._insert(alerts_table).values(
                batch_id=batch_id,
                target=target,
                status=status,
                attempts=1,
                last_error=error,
                payload=jsonable(payload, "alert payload"),
                created_at=now,
                updated_at=now,
            )
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["batch_id", "target"],
                    set_={
                        "status": ins.excluded.status,
                        "attempts": alerts_table.c.attempts + 1,
                        "last_error": ins.excluded.last_error,
                        "payload": ins.excluded.payload,
                        "updated_at": ins.excluded.updated_at,
                    },
                )
            )

    def alerts_to_retry(self) -> list[AlertRow]:
        """Alerts whose last attempt failed, least recently tried first."""
        stmt = (
            sa.select(alerts_table)
            .where(alerts_table.c.status == "failed")
            .order_by(alerts_table.c.updated_at, alerts_table.c.id)
        )
        with self._transaction("listing alerts to retry") as conn:
            return [AlertRow(**row._asdict()) for row in conn.execute(stmt)]

    def alert_sent(self, batch_id: int, target: str) -> bool:
        """Whether the alert of `batch_id` already reached `target`."""
        stmt = sa.select(alerts_table.c.status).where(
            (alerts_table.c.batch_id == batch_id) & (alerts_table.c.target == target)
        )
        with self._transaction(f"reading alert of batch {batch_id}") as conn:
            return conn.scalar(stmt) == "sent"

    def recent_alert_times(self, model_name: str, since: datetime) -> list[datetime]:
        """When alerts of `model_name`'s batches were sent since `since` (for rate limits)."""
        stmt = (
            sa.select(alerts_table.c.updated_at)
            .join(batches_table, batches_table.c.id == alerts_table.c.batch_id)
            .where(
                (batches_table.c.model_name == model_name)
                & (alerts_table.c.status == "sent")
                & (alerts_table.c.updated_at >= as_utc(since))
            )
            .order_by(alerts_table.c.updated_at)
        )
        with self._transaction(f"reading recent alerts of {model_name}") as conn:
            return list(conn.scalars(stmt))

    # -- plumbing --

    @contextmanager
    def _transaction(self, action: str, *, write: bool = False) -> Iterator[Connection]:
        """A connection in a transaction; SQLAlchemy errors become StoreError."""
        conn = self._connect()
        try:
            with conn:
                if write:
                    conn.execution_options(**{WRITE_OPTION: True})
                with conn.begin():
                    yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"{action} failed on {self.url}: {error_reason(exc)}") from exc

    def _connect(self) -> Connection:
        """A connection; a database server that does not answer is tried again, with backoff
        (CONNECT_RETRY_DELAYS_S), before one StoreError line."""
        delays = () if self._engine.dialect.name == "sqlite" else CONNECT_RETRY_DELAYS_S
        for attempt, delay in enumerate((*delays, None), start=1):
            try:
                return self._engine.connect()
            except sa.exc.SQLAlchemyError as exc:
                if delay is None or not isinstance(exc, sa.exc.OperationalError):
                    tries = f" ({attempt} tries in {sum(delays[: attempt - 1]):.1f} s)" if attempt > 1 else ""
                    raise StoreError(f"cannot connect to {self.url}{tries}: {error_reason(exc)}") from exc
                # INFO: the one line the user sees is the error, if the last try fails too.
                _log.info(
                    "cannot connect to %s, trying again in %.1f s: %s", self.url, delay, error_reason(exc)
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        """INSERT with the dialect's ON CONFLICT clauses."""
        if self._engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _anomaly_insert(
        self, conn: Connection, common: Mapping[str, Any]
    ) -> tuple[str, Callable[[Mapping[str, Any]], Any]]:
        """The INSERT of anomaly rows (skipping rows already stored) as the driver's SQL, and
        the function that turns one row's column values into the driver's parameters.

        The rows go to the driver in one executemany per chunk: SQLAlchemy's own executemany
        spent 3/4 of the write building and converting each row's parameters (12 s of 15 s
        for 121k rows). The conversions are the column types' own bind processors, so the
        stored values are the same; the values common to every row are converted once.
        Plain executemany, no RETURNING: psycopg pipelines it, while RETURNING would make
        SQLAlchemy build multi-row VALUES statements that psycopg parses slowly (4x slower).
        """
        dialect = conn.dialect
        stmt = self._insert(anomalies_table).on_conflict_do_nothing(index_elements=["batch_id", "record_key"])
        names = [c.key for c in anomalies_table.columns if c.key != "id"]
        compiled = stmt.compile(dialect=dialect, column_keys=names, for_executemany=True)
        order = list(compiled.positiontup) if dialect.positional and compiled.positiontup else names

        def processor(name: str) -> Callable[[Any], Any] | None:
            return anomalies_table.c[name].type.dialect_impl(dialect).bind_processor(dialect)

        procs = {k: processor(k) for k in order}
        fixed = {k: (procs[k](v) if procs[k] is not None else v) for k, v in common.items()}  # type: ignore[misc]
        convert = [(k, procs[k]) for k in order if k not in fixed]
        if dialect.positional:
            template = [fixed.get(k) for k in order]
            slots = [(i, k, procs[k]) for i, k in enumerate(order) if k not in fixed]

            def positional(values: Mapping[str, Any]) -> tuple[Any, ...]:
                row = template.copy()
                for i, k, p in slots:
                    row[i] = p(values[k]) if p is not None else values[k]
                return tuple(row)

            return compiled.string, positional

        def named(values: Mapping[str, Any]) -> dict[str, Any]:
            out = dict(fixed)
            for k, p in convert:
                out[k] = p(values[k]) if p is not None else values[k]
            return out

        return compiled.string, named

    def _require_batch(self, conn: Connection, batch_id: int) -> sa.Row[Any]:
        row = conn.execute(sa.select(batches_table).where(batches_table.c.id == batch_id)).one_or_none()
        if row is None:
            raise StoreError(f"batch {batch_id} does not exist in {self.url}")
        return row


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile. Tens of thousands of row objects (acyclic, freed
    by reference counting) otherwise set off full collections that walk every object torch,
    pandas and SQLAlchemy hold: 0.24 s of 0.58 s when writing 12.5k rows."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _batch(row: sa.Row[Any]) -> Batch:
    return Batch(**row._asdict())
