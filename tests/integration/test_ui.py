"""`aemon ui` end to end: the real `aemon ui` command in a subprocess, driven by a real headless
Chromium (the system's, through Playwright), over a database and a registry filled by the
real flows: a series model and an image model trained small, their batches scored through
score-inbox. Column and file names carry HTML, to show that they come out as text.

Outside CI a missing browser skips these tests; under CI (`AEMON_TEST_REQUIRE_BROWSER=1`,
set by .ci/run) it fails them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aemon import Detector, drift, registry
from aemon.store import AnomalyStore
from aemon.synthetic import make_images, make_series

CHROMIUM = os.environ.get("AEMON_TEST_CHROMIUM", "/usr/bin/chromium")
TOKEN = "s3cret-token"
HTML_COLUMN = "<b>cpu</b>"
HTML_FILE = "<i>spiky.csv"  # no "/" in a file name: an unclosed tag, italic if it ever ran
HTML_IMAGE = "<img src=x onerror=window.pwned=1>.png"  # a canary, should it ever run
WEEK = 7 * 288


def _no_browser(reason: str) -> None:
    if os.environ.get("AEMON_TEST_REQUIRE_BROWSER"):
        pytest.fail(f"{reason} (AEMON_TEST_REQUIRE_BROWSER is set: CI must run the browser tests)")
    pytest.skip(reason)


@dataclass
class Site:
    url: str
    db_url: str
    mlflow_uri: str
    reports: Path
    series_batch: int  # the batch with incidents (and HTML in its file name)
    image_batch: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(
    url: str, proc: subprocess.Popen[bytes] | None, log: Path | None, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    output = ""
    while time.monotonic() < deadline:
        output = log.read_text()[-2000:] if log is not None else ""
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"aemon ui exited with {proc.returncode}: {output}")
        try:
            with urllib.request.urlopen(url + "/static/style.css", timeout=5):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise RuntimeError(f"aemon ui did not answer within {timeout} s: {output}")


def _fill(home: Path) -> tuple[int, int]:
    """Train two small models and score their inboxes through score-inbox."""
    from flows.score import score_inbox

    frame = make_series(3 * WEEK, 2, seed=1)[0].rename(columns={"metric_1": HTML_COLUMN})
    reference = frame.iloc[: 2 * WEEK]
    det = Detector(window=24, epochs=3, samples_per_epoch=2048, progress=False).fit(reference)
    registry.log_training(
        det, name="metrics", data_source="test", drift_reference=drift.reference_profile(det, reference)
    )
    inbox = home / "inbox"
    inbox.mkdir()
    frame.iloc[2 * WEEK :].to_csv(inbox / "a_clean.csv", index=False)
    spiky = make_series(WEEK, 2, seed=5, incidents=("spike", "level_shift", "flatline"))[0]
    spiky.rename(columns={"metric_1": HTML_COLUMN}).to_csv(inbox / HTML_FILE, index=False)
    (inbox / "c_bad.csv").write_text("timestamp,metric_0\n2026-01-01,oops\n")
    series = {Path(s["source"]).name: s for s in score_inbox(str(inbox), "metrics")}

    from PIL import Image

    images, _ = make_images(120, size=16, seed=1)
    folder = home / "reference_images"
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    idet = Detector(modality="image", epochs=2, samples_per_epoch=256, progress=False).fit(folder)
    registry.log_training(idet, name="parts", data_source="test")
    image_inbox = home / "image_inbox"
    batch = image_inbox / "defects"
    batch.mkdir(parents=True)
    defects, _ = make_images(30, size=16, seed=3, anomaly_fraction=0.2)
    defects[0] = 255  # certainly flagged, under the HTML name
    for i, img in enumerate(defects):
        Image.fromarray(img).save(batch / (HTML_IMAGE if i == 0 else f"{i:03d}.png"))
    [image] = score_inbox(str(image_inbox), "parts")
    assert series[HTML_FILE]["n_flagged"] > 0 and image["n_flagged"] > 0
    return series[HTML_FILE]["batch_id"], image["batch_id"]


@pytest.fixture(scope="module")
def site(
    prefect_harness: str, _mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """The filled database and registry, and `aemon ui` serving them on a free port."""
    home = tmp_path_factory.mktemp("ui_home")
    shutil.copyfile(_mlflow_template, home / "mlflow.db")
    settings = {
        "AEMON_HOME": str(home),
        "AEMON_DATABASE_URL": f"sqlite:///{home / 'aemon.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in settings.items():
            mp.setenv(key, value)
        mp.delenv("AEMON_ALERT_URLS", raising=False)
        series_batch, image_batch = _fill(home)
    port = _free_port()
    env = {**os.environ, **settings, "AEMON_UI_TOKEN": TOKEN, "PREFECT_API_URL": prefect_harness}
    log = home / "ui.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "ui", "--port", str(port)], env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, log)
        yield Site(
            url,
            settings["AEMON_DATABASE_URL"],
            settings["MLFLOW_TRACKING_URI"],
            home / "reports",
            series_batch,
            image_batch,
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        _no_browser(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Any]:
    """A fresh browser context (no cookies) that records every request it makes."""
    context = browser.new_context(base_url=site.url)
    context.requests = []
    context.on("request", lambda r: context.requests.append(r.url))
    opened = context.new_page()
    yield opened
    outside = [u for u in context.requests if not u.startswith((site.url, "data:"))]
    assert outside == [], "pages must not reach outside the app"
    context.close()


def sign_in(page: Any) -> None:
    page.goto("/signin")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url("**/batches")


def test_batches_page_shows_every_batch_with_its_counts(page: Any, site: Site) -> None:
    page.goto("/batches")
    batches = AnomalyStore(site.db_url).list_batches()
    assert len(batches) == 4
    n_done = sum(b.status == "done" for b in batches)
    assert page.inner_text("#batch-summary").startswith(f"4 batches: {n_done} done, 1 quarantined")
    for b in batches:
        row = page.locator(f"tr[data-batch='{b.id}']")
        cells = row.locator("td").all_inner_texts()
        assert cells[3] == b.status and cells[4] == str(b.n_records)
        assert cells[5].split()[0] == str(b.n_flagged)
        if b.status == "quarantined":
            assert f"value columns ['{HTML_COLUMN}'] not found" in cells[6]  # the reason, as text
    # the report link serves the batch's drift report
    link = page.locator(f"tr[data-batch='{site.series_batch}'] a", has_text="report")
    response = page.request.get(link.get_attribute("href"))
    assert response.status == 200 and "sandbox" in response.headers["content-security-policy"]


def test_series_batch_page_draws_the_series_with_its_events(page: Any, site: Site) -> None:
    store = AnomalyStore(site.db_url)
    batch = store.get_batch(site.series_batch)
    rows = store.list_anomalies(batch_id=batch.id, limit=None)
    page.goto(f"/batches/{batch.id}")
    assert page.inner_text("#n-flagged").startswith(str(batch.n_flagged))
    n_events = len({a.details["event_id"] for a in rows})
    assert page.locator("#events tbody tr").count() == n_events
    # Plotly drew a panel per column plus the score, with the events shaded
    page.wait_for_selector("#series-chart .main-svg")
    titles = page.eval_on_selector_all(
        "#series-chart text",
        "ts => ts.filter(t => /^y[0-9]*title$/.test(t.getAttribute('class'))).map(t => t.textContent)",
    )
    assert titles == ["metric_0", HTML_COLUMN, "score"]
    assert page.locator("#series-chart .shapelayer path").count() >= n_events
    assert page.locator("#contrib-chart .main-svg").count() >= 1


def test_image_batch_page_shows_flagged_images_over_their_error_maps(page: Any, site: Site) -> None:
    batch = AnomalyStore(site.db_url).get_batch(site.image_batch)
    page.goto(f"/batches/{batch.id}")
    cards = page.locator("figure.image-card")
    assert cards.count() == batch.n_flagged > 0
    page.wait_for_load_state("networkidle")
    widths = page.eval_on_selector_all("#images img", "imgs => imgs.map(i => i.naturalWidth)")
    assert len(widths) == batch.n_flagged and all(w > 0 for w in widths)  # image and map, composed


def test_user_names_are_shown_as_text_never_as_html(page: Any, site: Site) -> None:
    page.goto("/batches")
    assert HTML_FILE in page.inner_text("#batches")
    assert page.locator("#batches i").count() == 0
    page.goto(f"/batches/{site.image_batch}")
    assert HTML_IMAGE in page.inner_text("#images")
    assert page.evaluate("window.pwned") is None
    assert page.locator("img[src='x']").count() == 0
    store = AnomalyStore(site.db_url)
    peak = max(store.list_anomalies(batch_id=site.series_batch, limit=None), key=lambda a: a.score)
    page.goto(f"/anomalies/{peak.id}")
    assert HTML_COLUMN in page.inner_text("#column-errors")
    assert page.locator("#column-errors b").count() == 0
    assert "&lt;b&gt;cpu&lt;/b&gt;" in page.content()


def test_clicking_false_alarm_writes_one_feedback_row(page: Any, site: Site) -> None:
    store = AnomalyStore(site.db_url)
    target = max(store.list_anomalies(batch_id=site.series_batch, limit=None), key=lambda a: a.score)
    sign_in(page)
    page.goto(f"/anomalies/{target.id}")
    page.fill("#note", "planned <maintenance>")
    page.click("#feedback button[value=false_positive]")
    page.wait_for_selector(".flash.ok")
    rows = [f for f in store.list_feedback() if f.anomaly_id == target.id]
    assert [(f.verdict, f.note) for f in rows] == [("false_positive", "planned <maintenance>")]
    assert "planned <maintenance>" in page.inner_text("#current-verdict")
    # a second click replaces the verdict: still one row
    page.click("#feedback button[value=false_positive]")
    page.wait_for_selector(".flash.ok")
    assert len([f for f in store.list_feedback() if f.anomaly_id == target.id]) == 1


def test_recalibrate_creates_a_new_version(page: Any, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", site.mlflow_uri)
    store = AnomalyStore(site.db_url)
    if not store.list_feedback(model_name="metrics", verdict="false_positive"):
        peak = max(store.list_anomalies(batch_id=site.series_batch, limit=None), key=lambda a: a.score)
        store.add_feedback(peak.id, "false_positive")
    before = {v.version for v in registry.list_models("metrics")}
    sign_in(page)
    page.goto("/models")
    page.click("#model-metrics form.recalibrate button")
    page.wait_for_selector(".flash", timeout=240_000)
    after = {v.version for v in registry.list_models("metrics")}
    [new] = after - before
    assert f"Registered metrics/{new}" in page.inner_text(".flash.ok")
    assert page.locator(f"#model-metrics tr[data-version='{new}']").count() == 1


def test_writes_without_the_token_are_refused(page: Any, site: Site) -> None:
    store = AnomalyStore(site.db_url)
    target = min(store.list_anomalies(batch_id=site.series_batch, limit=None), key=lambda a: a.score)
    page.goto(f"/anomalies/{target.id}")
    assert page.locator("#feedback").count() == 0  # not signed in: no buttons
    data = {"verdict": "false_positive", "csrf": "guess"}
    refused = page.request.post(f"/anomalies/{target.id}/feedback", form=data, max_redirects=0)
    assert refused.status == 403
    assert page.request.post("/models/metrics/recalibrate", form=data, max_redirects=0).status == 403
    wrong = page.request.post("/signin", form={"token": "wrong"}, max_redirects=0)
    assert wrong.status == 403
    # signed in, a form without the CSRF key, or one sent from another site, is refused too
    sign_in(page)
    assert page.request.post(f"/anomalies/{target.id}/feedback", form=data, max_redirects=0).status == 403
    forged = page.request.post(
        f"/anomalies/{target.id}/feedback",
        form={"verdict": "false_positive"},
        headers={"Origin": "http://evil.example"},
        max_redirects=0,
    )
    assert forged.status == 403
    assert store.verdict_of(target.id) is None


def test_report_files_cannot_escape_the_reports_folder(page: Any, site: Site) -> None:
    for path in ("/reports/../aemon.db", "/reports/%2e%2e/aemon.db", "/reports/..%2faemon.db"):
        assert page.request.get(path).status == 404, path
    assert page.request.get("/batches", headers={"Host": "evil.example"}).status == 400


def test_without_a_token_the_app_is_read_only(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import uvicorn

    from aemon.ui import create_app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", site.mlflow_uri)
    app = create_app(database_url=site.db_url, reports_root=site.reports, token=None)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    store = AnomalyStore(site.db_url)
    anomaly = store.list_anomalies(batch_id=site.series_batch, limit=1)[0]
    n_feedback = len(store.list_feedback())
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, None, None)
        request = urllib.request.Request(
            f"{url}/anomalies/{anomaly.id}/feedback",
            data=b"verdict=true_positive",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 403 and "read-only" in refused.value.read().decode()
        with urllib.request.urlopen(f"{url}/anomalies/{anomaly.id}", timeout=30) as page:
            assert "Read-only" in page.read().decode()
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    assert len(store.list_feedback()) == n_feedback
