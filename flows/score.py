"""Scoring flows: `score-batch` (one file or folder now) and `score-inbox` (every new batch in a
folder, on a schedule through `aemon serve` or a deployment).

Per batch: score with the model's champion (or the version asked for), write flagged records
and the batch status in one transaction, then drift report, flag-rate check and alert, after
which the batch is marked monitored (a run that stops before that is finished by the next run
of the same content). A bad batch is quarantined (recorded with its error, moved to
`<inbox>/quarantine/`) and the others go on; good batches move to `<inbox>/done/`. A file that
changes while it is read or before it is moved stays in the inbox. Nothing is deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aemon import alerts, config, drift, registry, retention
from aemon.batches import (
    DONE_DIR,
    QUARANTINE_DIR,
    BatchOutcome,
    list_new_batches,
    move_batch,
    score_batch_into_store,
)
from aemon.data.source import content_state
from aemon.detector import Detector
from aemon.errors import ConfigError, ScoringError, safe_text
from aemon.object_inbox import ObjectInbox, is_object_store
from aemon.registry import ModelRef
from aemon.store import AnomalyStore
from flows.common import announce, describe_outcome, logger, retry_on_io

# Prefect's decorators; plain calls when a one-off `aemon score` has no server (orchestration.py).
from flows.orchestration import NO_CACHE, flow, task

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner


# One task retry: MLflow's HTTP client already tries a server three times (aemon's default
# MLFLOW_HTTP_REQUEST_MAX_RETRIES=2), so an unreachable server fails the run in seconds.
@task(retries=1, retry_delay_seconds=2, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def load_model(model: str) -> tuple[Detector, ModelRef]:
    """Resolve NAME / NAME@alias / NAME/version in the registry and load its detector."""
    detector, ref = registry.load_detector(model)
    logger().info("scoring with %s", ref)
    return detector, ref


@task(retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def score_and_store(
    path: Path, detector: Detector, ref: ModelRef, store: AnomalyStore, inbox: Path | None = None
) -> BatchOutcome:
    """Score one batch and write its flagged records (exactly once per content and version).
    With `inbox`, a link that leads out of it is quarantined unread."""
    outcome = score_batch_into_store(
        store,
        detector,
        path,
        model_name=ref.name,
        model_version=ref.version,
        error_map_root=config.reports_dir(),
        inbox=inbox,
    )
    log = logger()
    if outcome.status in ("quarantined", "deferred"):
        log.warning("%s: %s", outcome.status, outcome.error)  # the error names the file
    else:
        log.info(
            "%s: %s, %d of %d records flagged", path, outcome.status, outcome.n_flagged, outcome.n_records
        )
    return outcome


@task(cache_policy=NO_CACHE)
def monitor(
    outcome: BatchOutcome, path: Path, detector: Detector, ref: ModelRef, store: AnomalyStore
) -> tuple[drift.DriftResult | None, drift.FlagRateCheck | None, str | None]:
    """Drift report against the model's reference profile, and the flag-rate check, from the
    score result (the batch is not read again).

    Monitoring never fails a batch whose records are already written: a problem (a reports
    folder that cannot be written, MLflow unreachable) comes back as the third value, a
    one-line warning that the caller shows with the batch.
    """
    if outcome.result is None or outcome.batch_id is None:
        raise ConfigError(f"{outcome.source}: only a scored batch can be monitored (status {outcome.status})")
    log = logger()
    flag_rate = drift.check_flag_rate(detector, outcome.result)
    if flag_rate is not None and flag_rate.broken:
        log.warning("%s: %s", path, flag_rate.message)
    reference = registry.load_drift_reference(ref)
    if reference is None:
        log.info("%s has no drift reference profile: no drift report", ref)
        return None, flag_rate, None
    # The content hash keeps apart batches of two databases that share one AEMON_HOME.
    out_dir = config.reports_dir() / ref.name / f"{outcome.batch_id}-{outcome.content_sha256[:12]}"
    try:
        report = drift.monitor_batch(outcome.result, reference, out_dir)
    except Exception as exc:  # the batch is written; a report problem must not undo that
        failed = f"no drift report: {type(exc).__name__}: {safe_text(exc, 300)}"
        log.warning("%s: %s", path, failed)
        return None, flag_rate, failed
    store.record_drift_report(outcome.batch_id, **report.row())
    log.info(
        "%s: drift %s (%.0f %% of columns), report %s",
        path,
        "DETECTED" if report.drift_detected else "not detected",
        100 * report.drifted_share,
        report.html_path,
    )
    return report, flag_rate, None


@task(cache_policy=NO_CACHE)
def alert(
    outcome: BatchOutcome,
    report: drift.DriftResult | None,
    flag_rate: drift.FlagRateCheck | None,
    store: AnomalyStore,
) -> list[alerts.SendOutcome]:
    """One alert per batch that deserves one, to every `AEMON_ALERT_URLS` target."""
    if outcome.result is None or outcome.batch_id is None:
        raise ConfigError(f"{outcome.source}: only a scored batch can be monitored (status {outcome.status})")
    urls = config.alert_urls()
    if not urls:
        return []
    message = alerts.build_alert(
        model_name=outcome.model_name,
        model_version=outcome.model_version,
        batch_id=outcome.batch_id,
        source=outcome.source,
        result=outcome.result,
        drift=report,
        flag_rate=flag_rate,
    )
    if not message.reasons:  # nothing flagged, no drift, no broken promise
        return []
    return alerts.dispatch_alert(
        store, message, batch_id=outcome.batch_id, model_name=outcome.model_name, urls=urls
    )


@task(cache_policy=NO_CACHE)
def housekeeping(store: AnomalyStore) -> None:
    """Before scoring: retry alerts that failed earlier, and remove report files past
    AEMON_REPORT_RETENTION (default 30 days)."""
    alerts.retry_failed_alerts(store, config.alert_urls())
    keep = retention.Retention.parse(config.report_retention())
    retention.prune_reports(store, config.reports_dir(), keep, datetime.now(UTC))


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def file_away(path: Path, inbox: Path, outcome: BatchOutcome) -> tuple[str | None, str | None]:
    """Move a processed inbox batch to done/ or quarantine/ (never deleted): (where it went,
    None), or (None, why it stays) when it changed after it was read (the new content is
    another batch, read by a later run), was deferred, or another worker moved it first."""
    if outcome.status == "deferred":
        return None, None
    if not path.exists() and not path.is_symlink():
        return None, f"{safe_text(path.name)} was filed away by another run meanwhile"
    if outcome.read_state and content_state(path) != outcome.read_state:
        return None, (
            f"{safe_text(path.name)} changed after it was read: left in the inbox, its new "
            "content is scored by a later run"
        )
    where = QUARANTINE_DIR if outcome.status == "quarantined" else DONE_DIR
    try:
        return str(move_batch(path, inbox, where)), None
    except FileNotFoundError:  # another worker moved it between the check and the move
        return None, f"{safe_text(path.name)} was filed away by another run meanwhile"


def _process(
    path: Path, detector: Detector, ref: ModelRef, store: AnomalyStore, inbox: Path | None = None
) -> BatchOutcome:
    outcome = score_and_store(path, detector, ref, store, inbox)
    if outcome.status == "done":
        report, flag_rate, note = monitor(outcome, path, detector, ref, store)
        if note is not None:
            outcome.warnings.append(note)
        sent = alert(outcome, report, flag_rate, store)
        outcome.alerts = [vars(o) for o in sent]
        if report is not None:
            outcome.drift_detected, outcome.report_path = report.drift_detected, str(report.html_path)
        if flag_rate is not None:
            outcome.flag_rate, outcome.flag_rate_broken = flag_rate.message, flag_rate.broken
        if note is None and outcome.batch_id is not None:
            # A failed report stays unmarked: running the content again retries it. Failed
            # alert deliveries are recorded and retried by housekeeping.
            store.mark_monitored(outcome.batch_id)
        config.fault_pause("after-monitoring")
    return outcome


@flow(name="score-batch")
def score_batch(data: str, model: str) -> dict[str, Any]:
    """Score one file or folder now with `model` (NAME, NAME@alias or NAME/version)."""
    detector, ref = load_model(model)
    with AnomalyStore() as store:
        housekeeping(store)
        return _process(Path(data), detector, ref, store).summary()


@task(cache_policy=NO_CACHE)
def process_batch(
    path: Path, inbox: Path, detector: Detector, ref: ModelRef, database_url: str
) -> dict[str, Any]:
    """One inbox batch from start to finish, then filed away. A task of its own so that a Dask
    cluster can take it: it opens its own connection to the database."""
    if not path.exists() and not path.is_symlink():  # another worker filed it since the listing
        gone = f"{safe_text(path.name)} was filed away by another run meanwhile"
        return BatchOutcome(str(path), "skipped", ref.name, ref.version, "", error=gone).summary()
    with AnomalyStore(database_url) as store:  # closing it releases the batch it held
        outcome = _process(path, detector, ref, store, inbox)
    outcome.moved_to, stays = file_away(path, inbox, outcome)
    if stays is not None:
        outcome.warnings.append(stays)
    return outcome.summary()


def inbox_folder(inbox: str) -> Path:
    """The inbox as a Path; ConfigError when it is empty or relative."""
    if not isinstance(inbox, str) or not inbox.strip():
        raise ConfigError(
            "score-inbox needs an inbox folder and got an empty path (is AEMON_INBOX set where "
            "the deployment was created?); refusing to take the working directory as the inbox"
        )
    folder = Path(inbox).expanduser()
    if not folder.is_absolute():
        raise ConfigError(
            f"the inbox must be an absolute path, got {inbox!r}: a relative one depends on the "
            "worker's working directory"
        )
    return folder


@contextmanager
def batch_runner(dask: str | None) -> Iterator[TaskRunner[Any]]:
    """Where score-inbox runs its batches: one after another in this process (default), or in
    parallel on the Dask cluster whose scheduler is at `dask` (e.g. tcp://scheduler:8786).
    Dask workers need the same AEMON_* and MLflow settings, and access to the inbox, the
    database and the registry."""
    if dask is None:
        from prefect.task_runners import ThreadPoolTaskRunner

        runner: TaskRunner[Any] = ThreadPoolTaskRunner(max_workers=1)
    else:
        from prefect_dask import DaskTaskRunner

        runner = DaskTaskRunner(address=dask)
    with runner:
        yield runner


@flow(name="score-inbox")
def score_inbox(inbox: str, model: str, dask: str | None = None) -> list[dict[str, Any]]:
    """Score every new batch in `inbox`, then move each to done/ or quarantine/. With `dask`,
    the batches run in parallel on that Dask cluster (see `batch_runner`).

    `inbox` must be an absolute path: an empty one (an unset `AEMON_INBOX` in a deployment)
    or a relative one would be the worker's working directory, whose files would all be moved
    to quarantine/. Or an object-store URL such as s3://bucket/prefix (aemon.object_inbox):
    its new objects are mirrored into AEMON_HOME, scored there, and filed in the store."""
    if not isinstance(model, str) or not model.strip():
        raise ConfigError("score-inbox needs a model and got an empty name (is AEMON_MODEL set?)")
    if isinstance(inbox, str) and is_object_store(inbox):
        remote = ObjectInbox(inbox, config.inbox_mirrors_dir())
        try:
            return _score_folder(remote.pull(), model, dask, remote)
        finally:
            remote.close()
    return _score_folder(inbox_folder(inbox), model, dask)


def _score_folder(
    folder: Path, model: str, dask: str | None, remote: ObjectInbox | None = None
) -> list[dict[str, Any]]:
    """score-inbox on a local folder: the inbox itself, or the mirror of an object store's."""
    batches = list_new_batches(folder)
    where = remote.url if remote is not None else folder
    announce(f"score-inbox: {len(batches)} new batch{'' if len(batches) == 1 else 'es'} in {where}")
    if not batches:
        return []
    detector, ref = load_model(model)
    database_url = config.database_url()
    with AnomalyStore(database_url) as store:
        housekeeping(store)
    summaries, failed = [], []
    with batch_runner(dask) as runner:
        futures = [
            runner.submit(
                process_batch,
                {
                    "path": path,
                    "inbox": folder,
                    "detector": detector,
                    "ref": ref,
                    "database_url": database_url,
                },
            )
            for path in batches
        ]
        for path, future in zip(batches, futures, strict=True):
            try:
                summaries.append(future.result())
                if remote is not None:  # file the object in the store as its mirror was filed
                    done = summaries[-1]
                    done["source"] = f"{remote.url}/{path.name}"
                    if done.get("moved_to"):
                        done["moved_to"] = remote.file_away(path.name, done["status"] == "quarantined")
                announce(describe_outcome(summaries[-1]))
            except Exception as exc:  # recorded as failed in the DB; left in the inbox for the next run
                logger().error("%s failed after retries, left in the inbox: %s", path, exc)
                announce(f"failed {path.name}: {exc} (left in the inbox for the next run)")
                failed.append(f"{path.name}: {exc}")
    if failed:
        raise ScoringError(f"{len(failed)} of {len(batches)} batches failed: " + "; ".join(failed))
    return summaries
