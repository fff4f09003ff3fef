"""`aemon quickstart`: the whole pipeline on generated data, with embedded defaults.

Generates reference data with a known normal behaviour, trains and registers a detector,
drops three batches in an inbox (one clean, one with incidents and a shift, one malformed),
scores them through the `score-inbox` flow with alerts going to a webhook receiver started on
127.0.0.1, and returns what happened for the CLI to print.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from aemon import config
from aemon.synthetic import INCIDENT_KINDS, make_images, make_series


@dataclass
class QuickstartRun:
    modality: str
    model_name: str
    folder: Path
    version: Any = None  # registry.RegisteredVersion (None when a champion was kept)
    kept: Any = None  # registry.ModelVersionInfo: a champion quickstart did not make, kept
    batches: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)


def write_series_demo(folder: Path) -> tuple[Path, Path]:
    """reference.csv (three weeks of 5-minute metrics) and an inbox of three one-week batches."""
    inbox = folder / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    week = 7 * 288
    history, _, _ = make_series(4 * week, 3, seed=1, start="2026-01-01")
    reference_path = folder / "reference.csv"
    history.iloc[: 3 * week].to_csv(reference_path, index=False)
    clean = history.iloc[3 * week :]
    clean.to_csv(inbox / "2026-01-22_clean.csv", index=False)
    incidents, _, _ = make_series(week, 3, seed=3, start="2026-01-29", incidents=INCIDENT_KINDS)
    # The last three days drift upwards: enough for the calibrated drift verdict (1 % false
    # drift) on a week's batch; one day at +1.5 stays within what reference weeks show.
    incidents.loc[incidents.index >= week - 3 * 288, "metric_2"] += 3.0
    incidents.to_csv(inbox / "2026-01-29_incidents.csv", index=False)
    malformed = clean.drop(columns=["metric_1"]).head(100)
    malformed.to_csv(inbox / "2026-02-05_malformed.csv", index=False)
    return reference_path, inbox


def write_image_demo(folder: Path) -> tuple[Path, Path]:
    """reference/ (500 PNG images of rings) and an inbox of three image folders."""
    from PIL import Image

    def save(images: np.ndarray, where: Path) -> None:
        where.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            Image.fromarray(img).save(where / f"{i:04d}.png")

    reference, _ = make_images(500, size=28, seed=1)
    save(reference, folder / "reference")
    inbox = folder / "inbox"
    save(make_images(100, size=28, seed=2)[0], inbox / "clean")
    defects, _ = make_images(100, size=28, seed=3, anomaly_fraction=0.1)
    defects[50:] = (defects[50:] * 0.6).astype(np.uint8)  # half the batch comes out darker
    save(defects, inbox / "defects")
    broken = inbox / "malformed"
    save(make_images(5, size=28, seed=4)[0], broken)
    (broken / "0003.png").write_bytes(b"\x89PNG truncated upload")
    return folder / "reference", inbox


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A JSON webhook on 127.0.0.1 that keeps what it receives: (apprise URL, received)."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(json.loads(body or b"{}"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"json://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()
        server.server_close()


def foreign_champion(name: str, reference: Path) -> Any:
    """The champion of `name` when quickstart did not train it (a recalibrated version, or one
    trained on other data): a `registry.ModelVersionInfo`, else None."""
    from aemon import registry
    from aemon.errors import ModelNotFoundError

    try:
        versions = registry.list_models(name)
    except ModelNotFoundError:
        return None
    champion = next((v for v in versions if registry.CHAMPION in v.aliases), None)
    if champion is None or champion.data_source == str(reference):
        return None
    return champion


def run_quickstart(
    modality: str = "timeseries", *, epochs: int | None = None, replace_champion: bool = False
) -> QuickstartRun:
    """Generate data, train + register, score the inbox; see the module docstring.

    A champion of the quickstart model that quickstart did not train (the user recalibrated
    it, or trained it on other data) is kept and used, not trained over, unless
    `replace_champion` (then the new version goes through the quality gate as usual).
    """
    from flows.score import score_inbox
    from flows.train import train

    folder = config.aemon_home() / "quickstart" / modality
    run = QuickstartRun(modality, f"quickstart-{'ts' if modality == 'timeseries' else 'img'}", folder)
    if modality == "timeseries":
        reference, inbox = write_series_demo(folder)
        # Alerts, not points: at most about one false event a week on normal data.
        options: dict[str, Any] = {"window": 48, "epochs": epochs or 25, "false_alarms": "1/week"}
    else:
        reference, inbox = write_image_demo(folder)
        options = {"epochs": epochs or 10, "options": {"samples_per_epoch": 2048}}
    run.kept = None if replace_champion else foreign_champion(run.model_name, reference)
    if run.kept is None:
        run.version = train(
            str(reference), run.model_name, modality=modality, progress=sys.stderr.isatty(), **options
        )
    with webhook_receiver() as (url, received):
        with config.environment(AEMON_ALERT_URLS=" ".join([*config.alert_urls(), url])):
            run.batches = score_inbox(str(inbox), run.model_name)
        run.alerts = [body.get("aemon", body) for body in received]
    return run
