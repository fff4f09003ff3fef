"""Alerts: one message per scored batch, sent through Apprise URLs (`AEMON_ALERT_URLS`).

An `Alert` has a `title`, a plain-text `body` (what Slack, Teams or e-mail show) and a
JSON-ready `payload` for machines. `build_alert` makes it from a scored batch;
`Alert.from_payload` makes the same alert again from a stored payload, so that a failed
delivery can be retried later from the anomaly database.

Payload fields (format 1):

| field | meaning |
|---|---|
| `format` | payload format version, 1 |
| `model`, `version` | registered model name and version that scored the batch |
| `batch_id`, `source` | the batch (database id) and where it came from |
| `n_records`, `n_flagged` | records (points or images) scored and flagged |
| `threshold` | the model's threshold (flagged when score > threshold) |
| `top_records` | up to 10 flagged records, highest score first: `{key, score, p_value}` |
| `n_events`, `events` | series: events (merged flagged points); up to 10, highest peak first: |
| | `{start, end, peak_score, n_points}`, start/end as ISO times or row numbers |
| `drift_detected`, `drifted_share` | the drift report's verdict (null without a report) |
| `drift_reasons` | why drift was declared |
| `flag_rate` | `{observed, promised, p_value, broken, message}` or null |
| `report_path`, `plot_path` | the HTML drift report and the batch plot (null if none) |
| `reasons` | why this alert exists: `flagged`, `drift`, `flag_rate` |

Delivery to a `json://` (or `jsons://`) webhook: Apprise's JSON plugin posts its own envelope
`{"version", "title", "message", "type", "attachments"}`; aemon adds the payload to it under
the key `"aemon"` (through the plugin's documented payload-extras argument), so a receiver
reads `body["aemon"]["n_flagged"]` and the human text in `body["message"]`. Other services
get the title and text body only.

This is the only module that imports Apprise (lazily: it comes with Prefect).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd

from aemon import config
from aemon.errors import ConfigError

if TYPE_CHECKING:
    from aemon.drift import DriftResult, FlagRateCheck
    from aemon.results import ScoreResult
    from aemon.store import AnomalyStore

log = logging.getLogger(__name__)

PAYLOAD_FORMAT = 1
PAYLOAD_KEY = "aemon"  # where the payload sits in a json:// webhook's body
TOP_K = 10
DEFAULT_TIMEOUT_S = 5.0
_WEBHOOK_SCHEMES = ("json", "jsons", "form", "forms", "xml", "xmls")


# --- the message ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One batch's alert: `title` and `body` for people, `payload` (JSON-ready) for machines."""

    title: str
    body: str
    payload: dict[str, Any]

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Alert:
        """The alert a stored payload describes (title and body are derived from it)."""
        data = dict(payload)
        return cls(title=_title(data), body=_body(data), payload=data)

    @property
    def reasons(self) -> list[str]:
        return list(self.payload.get("reasons", []))


def alert_reasons(
    n_flagged: int, drift: DriftResult | None = None, flag_rate: FlagRateCheck | None = None
) -> list[str]:
    """Why a batch deserves an alert: "flagged", "drift", "flag_rate" (empty: it does not)."""
    reasons = []
    if n_flagged > 0:
        reasons.append("flagged")
    if drift is not None and drift.drift_detected:
        reasons.append("drift")
    if flag_rate is not None and flag_rate.broken:
        reasons.append("flag_rate")
    return reasons


def build_alert(
    *,
    model_name: str,
    model_version: str | int,
    batch_id: int | str,
    source: str | Path,
    result: ScoreResult,
    drift: DriftResult | None = None,
    flag_rate: FlagRateCheck | None = None,
    report_path: str | Path | None = None,
    top_k: int = TOP_K,
) -> Alert:
    """The alert of one scored batch (see the module docstring for the payload fields).

    `report_path` defaults to the drift report's HTML. Example:
        >>> alert = build_alert(model_name="cpu", model_version=3, batch_id=42,  # doctest: +SKIP
        ...                     source="inbox/day.csv", result=res, drift=drift)
        >>> alert.payload["n_flagged"], alert.title  # doctest: +SKIP
    """
    scores = np.asarray(result.scores, dtype=np.float64)
    flagged = np.flatnonzero(result.is_anomaly)
    top = flagged[np.argsort(-scores[flagged], kind="stable")][:top_k]
    events: list[dict[str, Any]] = []
    n_events = 0
    if result.events is not None and len(result.events):
        n_events = len(result.events)
        strongest = result.events.sort_values("peak_score", ascending=False, kind="stable").head(top_k)
        events = [
            {
                "start": _jsonable_time(row["start"]),
                "end": _jsonable_time(row["end"]),
                "peak_score": float(row["peak_score"]),
                "n_points": int(row["n_points"]),
            }
            for row in strongest.to_dict("records")
        ]
    if report_path is None and drift is not None:
        report_path = drift.html_path
    payload: dict[str, Any] = {
        "format": PAYLOAD_FORMAT,
        "model": model_name,
        "version": str(model_version),
        "batch_id": batch_id,
        "source": str(source),
        "n_records": int(result.n_records),
        "n_flagged": int(result.n_flagged),
        "threshold": float(result.threshold),
        "top_records": [
            {"key": key, "score": float(s), "p_value": float(p)}
            for key, s, p in zip(result.keys_at(top), scores[top], result.p_values_at(top), strict=True)
        ],
        "n_events": n_events,
        "events": events,
        "drift_detected": drift.drift_detected if drift is not None else None,
        "drifted_share": float(drift.drifted_share) if drift is not None else None,
        "drift_reasons": list(drift.reasons) if drift is not None else [],
        "flag_rate": (
            {
                "observed": float(flag_rate.observed_rate),
                "promised": float(flag_rate.promised_rate),
                "p_value": float(flag_rate.p_value),
                "broken": bool(flag_rate.broken),
                "message": flag_rate.message,
            }
            if flag_rate is not None
            else None
        ),
        "report_path": str(report_path) if report_path is not None else None,
        "plot_path": str(drift.plot_path) if drift is not None and drift.plot_path is not None else None,
        "reasons": alert_reasons(result.n_flagged, drift, flag_rate),
    }
    return Alert.from_payload(payload)


def _jsonable_time(value: Any) -> str | int:
    if isinstance(value, pd.Timestamp | datetime | np.datetime64):
        return pd.Timestamp(value).isoformat()
    return int(value)


def _title(p: Mapping[str, Any]) -> str:
    parts = [f"{p['n_flagged']} flagged"]
    if p.get("drift_detected"):
        parts.append("drift")
    if (p.get("flag_rate") or {}).get("broken"):
        parts.append("flag rate broken")
    return f"[aemon] {p['model']} v{p['version']}: {', '.join(parts)} (batch {p['batch_id']})"


def _body(p: Mapping[str, Any]) -> str:
    lines = [
        f"Model {p['model']} version {p['version']}, batch {p['batch_id']}",
        f"Source: {p['source']}",
        f"Flagged: {p['n_flagged']} of {p['n_records']} records (threshold {p['threshold']:.4g})",
    ]
    if p.get("n_events"):
        shown = len(p["events"])
        more = f", strongest {shown} shown" if shown < p["n_events"] else ""
        lines.append(f"Events: {p['n_events']}{more}")
        lines += [
            f"  {e['start']} .. {e['end']}  peak {e['peak_score']:.4g}  ({e['n_points']} points)"
            for e in p["events"]
        ]
    if p.get("top_records"):
        lines.append("Top records:")
        lines += [
            f"  {r['key']}  score {r['score']:.4g}  p-value {r['p_value']:.2g}" for r in p["top_records"]
        ]
    if p.get("drift_detected") is None:
        lines.append("Drift: no report")
    elif p["drift_detected"]:
        why = "; ".join(p.get("drift_reasons") or [])
        lines.append(f"Drift: DETECTED ({100 * p['drifted_share']:.0f} % of columns drifted: {why})")
    else:
        lines.append(f"Drift: none ({100 * p['drifted_share']:.0f} % of columns drifted)")
    if p.get("flag_rate"):
        lines.append(f"Flag rate: {p['flag_rate']['message']}")
    if p.get("report_path"):
        lines.append(f"Report: {p['report_path']}")
    if p.get("plot_path"):
        lines.append(f"Plot: {p['plot_path']}")
    return "\n".join(lines)


# --- delivery -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendOutcome:
    """The delivery of one alert to one target.

    `target`: the URL with secrets redacted (`target_id`), what the store keys alerts on;
    `error`: why it failed (None when `ok`).
    """

    target: str
    ok: bool
    error: str | None = None


@functools.lru_cache(maxsize=256)
def target_id(url: str) -> str:
    """A stable name for an Apprise URL, safe to store and log.

    Apprise's privacy form of the URL (passwords and service tokens masked) without its
    query (headers and extra parameters may hold secrets); a generic webhook (json://,
    form://, xml://) also loses its path, which often is the secret. A fingerprint (12 hex
    digits of the URL's SHA-256) keeps targets that differ only in those parts apart.
    """
    fingerprint = hashlib.sha256(url.encode()).hexdigest()[:12]
    scheme = url.split("://", 1)[0].lower() if "://" in url else "invalid"
    try:
        _load_apprise()
        import apprise

        plugin = apprise.Apprise.instantiate(url)
    except Exception:  # an unparseable URL still needs a name
        plugin = None
    if plugin is None:
        return f"{scheme}://?#{fingerprint}"
    parts = urlsplit(plugin.url(privacy=True))
    path = "" if scheme in _WEBHOOK_SCHEMES else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")) + f"#{fingerprint}"


@functools.cache
def _load_apprise() -> None:
    """Load Apprise's plugins once. Its e-mail plugin imports `imghdr`, which warns of its
    removal on every first use: nothing we can act on, only noise (or errors) for callers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise

        apprise.NotificationManager().load_modules()


def send_alert(alert: Alert, urls: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT_S) -> list[SendOutcome]:
    """Send `alert` to each Apprise URL; one outcome per URL, in order. Never raises.

    Each target gets at most `timeout` seconds (Apprise's call deadline), so a dead endpoint
    cannot hold up a flow. json:// targets receive the payload under "aemon".
    """
    outcomes = []
    for url in urls:
        target = target_id(url)
        try:
            error = _send_one(alert, url, timeout)
        except Exception as exc:  # a delivery failure is recorded and retried, never raised
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            log.info("alert %r sent to %s", alert.title, target)
        else:
            log.warning("alert %r to %s failed: %s", alert.title, target, error)
        outcomes.append(SendOutcome(target=target, ok=error is None, error=error))
    return outcomes


def _send_one(alert: Alert, url: str, timeout: float) -> str | None:
    """Deliver to one URL: None on success, else the reason."""
    _load_apprise()
    import apprise
    from apprise.plugins.custom_json import NotifyJSON

    if url.split("://", 1)[0].lower() in ("json", "jsons"):  # the payload rides in the body
        args = NotifyJSON.parse_url(url)
        if args:
            args["payload"] = {**args.get("payload", {}), PAYLOAD_KEY: alert.payload}
        plugin = apprise.Apprise.instantiate(args) if args else None
    else:
        plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return "not a valid Apprise URL, or its service is not available"
    sender = apprise.Apprise()
    sender.add(plugin)
    result = sender.notify(
        body=alert.body,
        title=alert.title,
        notify_type=apprise.NotifyType.WARNING,
        body_format=apprise.NotifyFormat.TEXT,
        timeout=timeout,
    )
    if result:
        return None
    messages = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR", "CRITICAL")]
    return "; ".join(messages) or f"delivery failed ({result.status.name})"


# --- rate limiting --------------------------------------------------------------------------


def alert_allowed(
    recent: Iterable[datetime],
    *,
    now: datetime | None = None,
    max_alerts: int | None = None,
    window: timedelta = timedelta(hours=1),
) -> bool:
    """May one more alert of a model go out now, given the times its recent alerts went out?

    At most `max_alerts` (default: `config.max_alerts_per_hour()`; 0 = no limit) in any `window`
    ending now. Pure: the caller passes the times (from the anomaly database) and `now`.
    Naive datetimes are taken as UTC. Deduplication per (batch, target) is the store's job.
    """
    limit = config.max_alerts_per_hour() if max_alerts is None else max_alerts
    if limit < 0:
        raise ConfigError(f"max_alerts must be >= 0, got {limit}")
    if window <= timedelta(0):
        raise ConfigError(f"window must be positive, got {window}")
    if limit == 0:
        return True
    current = _utc(now or datetime.now(UTC))
    start = current - window
    n_recent = sum(1 for t in recent if start < _utc(t) <= current)
    return n_recent < limit


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


# --- delivery with the anomaly database -------------------------------------------------------


def dispatch_alert(
    store: AnomalyStore,
    alert: Alert,
    *,
    batch_id: int,
    model_name: str,
    urls: Sequence[str],
    now: datetime | None = None,
) -> list[SendOutcome]:
    """Send a batch's alert to each target it has not reached yet, and record every attempt.

    A rerun never re-sends (the store keeps one row per batch and target); past the model's
    rate limit nothing goes out and the attempt is recorded as failed ("rate limited"), to be
    retried by `retry_failed_alerts` on a later run.
    """
    pending = [u for u in urls if not store.alert_sent(batch_id, target_id(u))]
    if not pending:
        return []
    current = now or datetime.now(UTC)
    recent = store.recent_alert_times(model_name, current - timedelta(hours=1))
    if alert_allowed(recent, now=current):
        outcomes = send_alert(alert, pending)
    else:
        log.warning("alert of batch %s held back: %s is over its rate limit", batch_id, model_name)
        outcomes = [SendOutcome(target_id(u), False, "rate limited") for u in pending]
    for outcome in outcomes:
        store.record_alert(
            batch_id,
            outcome.target,
            status="sent" if outcome.ok else "failed",
            error=outcome.error,
            payload=alert.payload,
        )
    return outcomes


def retry_failed_alerts(store: AnomalyStore, urls: Sequence[str]) -> list[SendOutcome]:
    """Try again every recorded alert whose last attempt failed, to targets still configured."""
    by_target = {target_id(u): u for u in urls}
    outcomes: list[SendOutcome] = []
    for row in store.alerts_to_retry():
        url = by_target.get(row.target)
        if url is None:
            continue  # that target is no longer configured
        outcomes += dispatch_alert(
            store,
            Alert.from_payload(row.payload),
            batch_id=row.batch_id,
            model_name=str(row.payload.get("model", "")),
            urls=[url],
        )
    return outcomes
