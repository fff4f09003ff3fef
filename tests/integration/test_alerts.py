"""Alerts built from a real scored batch and delivered over real HTTP to a local webhook.

The receiver is an `http.server` on 127.0.0.1 (ephemeral port) behind Apprise's json://
plugin: no mock of Apprise or HTTP. A dead endpoint is a port nobody listens on.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aemon import Detector
from aemon.alerts import (
    PAYLOAD_KEY,
    Alert,
    alert_allowed,
    alert_reasons,
    build_alert,
    dispatch_alert,
    retry_failed_alerts,
    send_alert,
    target_id,
)
from aemon.config import max_alerts_per_hour
from aemon.drift import DriftResult, flag_rate_check
from aemon.errors import ConfigError
from aemon.results import ScoreResult
from aemon.store import AnomalyStore
from aemon.synthetic import make_series

PAYLOAD_FIELDS = {
    "model",
    "version",
    "batch_id",
    "source",
    "n_records",
    "n_flagged",
    "top_records",
    "events",
    "drift_detected",
    "drifted_share",
    "flag_rate",
    "report_path",
}


@pytest.fixture(scope="module")
def scored() -> ScoreResult:
    """A batch with two incidents, scored by a tiny detector trained on clean data."""
    reference, _, _ = make_series(3000, 2)
    detector = Detector(modality="timeseries", window=16, epochs=3, progress=False).fit(reference)
    batch, _, _ = make_series(3000, 2, seed=1, incidents=("spike", "level_shift"))
    result = detector.score(batch)
    assert result.n_flagged > 0 and result.events is not None and len(result.events) > 0
    return result


@pytest.fixture
def drift(tmp_path: Path) -> DriftResult:
    """A drift verdict as `drift_report` returns it (its Evidently run is tested in test_drift)."""
    columns = {
        "metric_0": {
            "drifted": True,
            "stat_test": "wasserstein",
            "score": 1.5,
            "threshold": 0.1,
            "group": "input",
        },
        "score": {
            "drifted": True,
            "stat_test": "wasserstein",
            "score": 0.7,
            "threshold": 0.1,
            "group": "score",
        },
    }
    return DriftResult(
        drift_detected=True,
        drifted_share=1.0,
        columns=columns,
        html_path=tmp_path / "report.html",
        json_path=tmp_path / "report.json",
        plot_path=tmp_path / "batch.png",
        reasons=["1 of 1 input columns drifted", "the score distribution drifted"],
    )


@pytest.fixture
def alert(scored: ScoreResult, drift: DriftResult) -> Alert:
    return build_alert(
        model_name="cpu-load",
        model_version=3,
        batch_id=42,
        source="inbox/day-2.csv",
        result=scored,
        drift=drift,
        flag_rate=flag_rate_check(scored.n_flagged, scored.n_records, 0.01, block_size=16),
    )


@dataclass
class Webhook:
    """A local HTTP receiver: POSTs to /fail get a 500, others a 200; bodies are kept."""

    port: int
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def url(self, path: str = "/hook", userinfo: str = "") -> str:
        return f"json://{userinfo}127.0.0.1:{self.port}{path}"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with _serve(0) as hook:
        yield hook


@contextmanager
def _serve(port: int) -> Iterator[Webhook]:
    hook = Webhook(port=port)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hook.received.append((self.path, json.loads(body)))
            self.send_response(500 if self.path.startswith("/fail") else 200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the message ------------------------------------------------------------------------------


def test_alert_payload_has_the_documented_fields(
    alert: Alert, scored: ScoreResult, drift: DriftResult
) -> None:
    p = alert.payload
    assert set(p) >= PAYLOAD_FIELDS
    assert (p["model"], p["version"], p["batch_id"], p["source"]) == ("cpu-load", "3", 42, "inbox/day-2.csv")
    assert (p["n_records"], p["n_flagged"]) == (scored.n_records, scored.n_flagged)
    top_scores = [r["score"] for r in p["top_records"]]
    assert top_scores == sorted(top_scores, reverse=True) and top_scores[0] == pytest.approx(
        scored.scores.max()
    )
    assert set(p["top_records"][0]) == {"key", "score", "p_value"}
    assert p["n_events"] == len(scored.events)  # type: ignore[arg-type]
    assert {"start", "end", "peak_score"} <= set(p["events"][0])
    assert datetime.fromisoformat(p["events"][0]["start"]) <= datetime.fromisoformat(p["events"][0]["end"])
    assert p["drift_detected"] is True and p["drifted_share"] == 1.0
    assert set(p["flag_rate"]) >= {"observed", "promised", "broken"}
    assert p["report_path"] == str(drift.html_path)
    assert p["reasons"][:2] == ["flagged", "drift"]
    assert json.loads(json.dumps(p)) == p  # JSON-ready as is
    assert Alert.from_payload(json.loads(json.dumps(p))) == alert  # a stored payload rebuilds it


def test_alert_text_tells_the_story(alert: Alert, scored: ScoreResult) -> None:
    assert alert.title.startswith(f"[aemon] cpu-load v3: {scored.n_flagged} flagged, drift")
    assert "batch 42" in alert.title
    for text in (
        "Source: inbox/day-2.csv",
        f"Flagged: {scored.n_flagged} of 3000 records",
        "Events:",
        "peak",
        "Top records:",
        "Drift: DETECTED",
        "the score distribution drifted",
        "Flag rate:",
        "Report: ",
    ):
        assert text in alert.body


@pytest.mark.parametrize(
    ("n_flagged", "drifted", "flag_rate_broken", "expected"),
    [
        (0, False, False, False),  # a quiet batch: no alert
        (3, False, False, True),  # flagged records
        (0, True, False, True),  # drift alone
        (0, False, True, True),  # a broken promise alone
    ],
)
def test_alert_reasons(
    drift: DriftResult, n_flagged: int, drifted: bool, flag_rate_broken: bool, expected: bool
) -> None:
    drift.drift_detected = drifted
    check = flag_rate_check(90 if flag_rate_broken else 10, 1000, 0.01)
    assert bool(alert_reasons(n_flagged, drift, check)) is expected
    assert alert_reasons(n_flagged) == (["flagged"] if n_flagged else [])


# --- delivery ---------------------------------------------------------------------------------


def test_json_webhook_receives_the_payload(alert: Alert, webhook: Webhook) -> None:
    (outcome,) = send_alert(alert, [webhook.url(userinfo="bot:s3cret@")])
    assert outcome.ok and outcome.error is None, outcome
    assert "s3cret" not in outcome.target
    ((path, body),) = webhook.received
    assert path == "/hook"
    assert body["title"] == alert.title and body["message"] == alert.body
    assert body[PAYLOAD_KEY] == alert.payload
    assert set(body[PAYLOAD_KEY]) >= PAYLOAD_FIELDS


def test_failed_deliveries_return_errors_without_raising(alert: Alert, webhook: Webhook) -> None:
    dead = f"json://127.0.0.1:{_closed_port()}/hook"
    start = time.monotonic()
    outcomes = send_alert(alert, [dead, webhook.url("/fail"), "nosuchservice://x", webhook.url()], timeout=3)
    assert time.monotonic() - start < 8
    assert [o.ok for o in outcomes] == [False, False, False, True]  # one outcome per URL, in order
    assert all(o.error for o in outcomes[:3])
    assert "connection" in outcomes[0].error.lower()  # type: ignore[union-attr]
    assert "500" in outcomes[1].error  # type: ignore[operator]
    assert [p for p, _ in webhook.received] == ["/fail", "/hook"]


def test_target_id_hides_secrets_and_tells_targets_apart() -> None:
    url = "json://bot:pa55word@hooks.example.com:8443/T0123/tok3n-abc?+X-Api-Key=hdr-secret"
    name = target_id(url)
    assert name.startswith("json://bot:") and "hooks.example.com:8443" in name
    for secret in ("pa55word", "tok3n", "hdr-secret"):
        assert secret not in name
    assert target_id(url) == name  # stable: the store keys deliveries on it
    assert target_id(url.replace("tok3n", "other")) != name
    assert "XXXXXXXX" not in target_id("slack://T000A/B000B/XXXXXXXX")
    assert target_id("not a url").startswith("invalid://?#")


# --- rate limiting ----------------------------------------------------------------------------

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("minutes_ago", "max_alerts", "allowed"),
    [
        ([], 12, True),  # nothing sent yet
        ([5] * 11, 12, True),  # one slot left
        ([5] * 12, 12, False),  # the hour is full
        ([61] * 12, 12, True),  # all of them older than the window
        ([59, 30, 1], 3, False),
        ([61, 30, 1], 3, True),  # the oldest just left the window
        ([5] * 100, 0, True),  # 0: no limit
    ],
)
def test_alert_rate_limit(minutes_ago: list[int], max_alerts: int, allowed: bool) -> None:
    recent = [NOW - timedelta(minutes=m) for m in minutes_ago]
    assert alert_allowed(recent, now=NOW, max_alerts=max_alerts) is allowed


def test_rate_limit_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    naive = [NOW.replace(tzinfo=None) - timedelta(minutes=1)] * 2  # naive times count as UTC
    assert max_alerts_per_hour() == 12
    monkeypatch.setenv("AEMON_ALERT_MAX_PER_HOUR", "2")
    assert max_alerts_per_hour() == 2
    assert alert_allowed(naive, now=NOW) is False
    monkeypatch.setenv("AEMON_ALERT_MAX_PER_HOUR", "many")
    with pytest.raises(ConfigError, match="AEMON_ALERT_MAX_PER_HOUR"):
        max_alerts_per_hour()


# --- delivery recorded in the anomaly database --------------------------------------------------


def _batch(store: AnomalyStore, n: int) -> int:
    claimed = store.claim_batch(
        source=f"inbox/{n}.csv", content_sha256=f"{n:064x}", model_name="cpu-load", model_version="3"
    )
    assert claimed is not None
    return claimed.id


def test_dispatch_sends_once_and_retries_failures_later(
    alert: Alert, webhook: Webhook, tmp_path: Path
) -> None:
    store = AnomalyStore(f"sqlite:///{tmp_path / 'a.db'}")
    batch_id = _batch(store, 1)
    live, dead = webhook.url(), f"json://127.0.0.1:{_closed_port()}/hook"
    first = dispatch_alert(store, alert, batch_id=batch_id, model_name="cpu-load", urls=[live, dead])
    assert [o.ok for o in first] == [True, False]
    assert len(webhook.received) == 1
    # a rerun of the batch re-sends nothing to the target that got it, and tries the dead one again
    again = dispatch_alert(store, alert, batch_id=batch_id, model_name="cpu-load", urls=[live, dead])
    assert [o.target for o in again] == [target_id(dead)] and len(webhook.received) == 1
    [failed] = store.alerts_to_retry()
    assert failed.attempts == 2 and failed.target == target_id(dead)
    assert retry_failed_alerts(store, [live]) == []  # a target no longer configured waits
    # the dead endpoint comes back on its port: the next run's retry delivers it
    with _serve(int(dead.split(":")[2].split("/")[0])) as revived:
        [ok] = retry_failed_alerts(store, [live, dead])
        assert ok.ok and revived.received[0][1][PAYLOAD_KEY] == alert.payload
    assert store.alerts_to_retry() == [] and store.alert_sent(batch_id, target_id(dead))


def test_dispatch_holds_the_rate_limit(
    alert: Alert, webhook: Webhook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEMON_ALERT_MAX_PER_HOUR", "2")
    store = AnomalyStore(f"sqlite:///{tmp_path / 'a.db'}")
    sent = [
        dispatch_alert(store, alert, batch_id=_batch(store, i), model_name="cpu-load", urls=[webhook.url()])
        for i in range(3)
    ]
    assert [s[0].ok for s in sent] == [True, True, False]
    assert sent[2][0].error == "rate limited" and len(webhook.received) == 2
    # an hour later the held-back alert goes out on retry
    later = datetime.now(UTC) + timedelta(hours=1, minutes=1)
    [row] = store.alerts_to_retry()
    out = dispatch_alert(
        store,
        Alert.from_payload(row.payload),
        batch_id=row.batch_id,
        model_name="cpu-load",
        urls=[webhook.url()],
        now=later,
    )
    assert out[0].ok and len(webhook.received) == 3
