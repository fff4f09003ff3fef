"""`aemon ui`: a server-rendered review app over the anomaly database and the model registry.

Pages: batches, one batch (a series with its events shaded and each event's column shares,
or the flagged images over their error maps), one anomaly (with the true / false alarm
buttons) and models (promise against observed rates, feedback, recalibrate).

Writes (feedback, recalibrate) need the token (`AEMON_UI_TOKEN`). A browser presents it once
on the sign-in page and gets an HttpOnly, SameSite=Strict cookie holding a key derived from
it (never the token itself); every form also carries a CSRF key derived from the token, and a
write whose Origin is another site is refused. A script may instead send
`Authorization: Bearer <token>`. Without a token the app is read-only and says so.

Everything user-made (column, file and model names, notes, error texts) goes through Jinja's
autoescape, and through `review.plot_text` into chart labels. Pages make no request outside
the app: Plotly's JavaScript is served from the installed `plotly` package, and a
Content-Security-Policy keeps the browser to this origin.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.resources
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from aemon import __version__
from aemon.errors import AemonError, StoreError, safe_text
from aemon.modalities import adapter_for
from aemon.store import VERDICTS, AnomalyStore, Batch
from aemon.ui import review as rv

log = logging.getLogger(__name__)

COOKIE = "aemon_ui"
MAX_FORM_BYTES = 16_384
MAX_NOTE_CHARS = 2_000
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
# Evidently reports run inline scripts: allowed, but sandboxed (an opaque origin, so they
# never carry the session cookie) and kept from reaching anything outside the app.
_REPORT_CSP = (
    "sandbox allow-scripts allow-popups; default-src 'none'; script-src 'self' 'unsafe-inline' "
    "'unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:"
)
_REPORT_TYPES = {".html": "text/html", ".json": "application/json", ".png": "image/png", ".md": "text/plain"}

Recalibrate = Callable[[str], Any]  # model name -> aemon.registry.RegisteredVersion


def _key(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), f"aemon-ui:{purpose}".encode(), hashlib.sha256).hexdigest()


class Auth:
    """Who may write. `token` None: nobody (read-only)."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.session = _key(token, "session") if token else None
        self.csrf = _key(token, "csrf") if token else None

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def token_ok(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def signed_in(self, request: Request) -> bool:
        cookie = request.cookies.get(COOKIE, "")
        return self.session is not None and hmac.compare_digest(cookie.encode(), self.session.encode())

    def check_write(self, request: Request, form: dict[str, str]) -> None:
        """Raise 403 unless the request may write."""
        if self.token is None:
            raise HTTPException(403, "read-only: start aemon ui with AEMON_UI_TOKEN set to allow writes")
        bearer = request.headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and self.token_ok(bearer[7:].strip()):
            return  # a script with the token: no cookie, so no cross-site forgery
        if not same_origin(request):
            raise HTTPException(403, "refused: the request comes from another site")
        if not self.signed_in(request):
            raise HTTPException(403, "sign in with the token first")
        if self.csrf is None or not hmac.compare_digest(form.get("csrf", "").encode(), self.csrf.encode()):
            raise HTTPException(403, "refused: the form's CSRF key is missing or wrong (reload the page)")


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    rest = origin.split("://", 1)[-1]
    return rest.split("/", 1)[0] == host


async def read_form(request: Request) -> dict[str, str]:
    """A small urlencoded form (first value of each field)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(400, f"bad form: {exc}") from exc
    return {k: v[0] for k, v in fields.items()}


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("aemon.ui", "templates"),
        autoescape=True,  # every page is HTML; user strings are escaped wherever they land
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["num"] = _num
    env.filters["urlpart"] = lambda v: quote(str(v), safe="")
    return env


def _when(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "strftime"):
        return str(value.strftime("%Y-%m-%d %H:%M:%S"))
    return str(value)


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    try:
        return f"{float(value):.{digits}g}"
    except (TypeError, ValueError):
        return str(value)


class Pages:
    """The app's pages and actions; `create_app` routes to these methods."""

    def __init__(
        self,
        store: AnomalyStore,
        review: rv.Review,
        auth: Auth,
        list_models: Callable[[], Sequence[Any]],
        recalibrate: Recalibrate | None,
    ) -> None:
        self.store, self.review, self.auth = store, review, auth
        self.list_models, self.recalibrate = list_models, recalibrate
        self.env = _templates()
        self.flashes: dict[str, tuple[str, str]] = {}
        self.plotly_js = importlib.resources.files("plotly") / "package_data" / "plotly.min.js"
        self.static = importlib.resources.files("aemon.ui") / "static"

    def flash(self, kind: str, text: str) -> str:
        """Keep a one-time message for the page a redirect leads to; returns its key."""
        key = secrets.token_urlsafe(8)
        self.flashes[key] = (kind, text)
        while len(self.flashes) > 100:
            self.flashes.pop(next(iter(self.flashes)))
        return key

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        signed_in = self.auth.signed_in(request)
        page = self.env.get_template(name).render(
            request_path=request.url.path,
            auth_enabled=self.auth.enabled,
            signed_in=signed_in,
            csrf=self.auth.csrf if signed_in else "",
            can_recalibrate=self.recalibrate is not None,
            version=__version__,
            flash=self.flashes.pop(request.query_params.get("note", ""), None),
            **context,
        )
        return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})

    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = exc.detail if isinstance(exc, HTTPException) else safe_text(exc, 300)
        return self.render(request, "error.html", status=status, status_code=status, message=message)

    async def store_error(self, request: Request, exc: Exception) -> Response:
        return self.render(request, "error.html", status=404, status_code=404, message=safe_text(exc))

    # -- reading --

    def home(self) -> RedirectResponse:
        return RedirectResponse("/batches", status_code=303)

    def batches(self, request: Request, limit: int = 100) -> HTMLResponse:
        rows = self.review.batch_rows(max(1, min(limit, 1000)))
        return self.render(request, "batches.html", rows=rows, limit=limit)

    def batch_page(self, request: Request, batch_id: int) -> HTMLResponse:
        batch = self.store.get_batch(batch_id)
        report = self.store.drift_report_of(batch_id)
        done = batch.status == "done"
        verdicts = {k: f.verdict for k, f in self.review.verdicts(batch.model_name).items()}
        context: dict[str, Any] = {
            "batch": batch,
            "report": report,
            "report_url": self.review.report_url(report.html_path) if report else None,
            "drift_details": report.details if report else {},
            "promise": self.review.promise(batch.model_name, batch.model_version) if done else None,
            "anomalies": self.store.list_anomalies(batch_id=batch_id, limit=None) if done else [],
            "verdicts": verdicts,
            "events": [],
            "chart": None,
            "contributions": None,
            "check": None,
            "file_note": None,
            "images": [],
            "batch_path": None,
        }
        if context["promise"] is not None:
            context.update(self._scored_context(batch, context["promise"], context["anomalies"], verdicts))
        return self.render(request, "batch.html", **context)

    def _scored_context(
        self, batch: Batch, promise: rv.Promise, anomalies: list[Any], verdicts: dict[int, str]
    ) -> dict[str, Any]:
        """What a done batch's page draws: its chart and events, or its flagged images."""
        scored, note = None, None
        if batch.n_records > rv.MAX_RESCORED_RECORDS:
            note = f"{batch.n_records} records are too many to draw here: showing the flagged records only"
        else:
            try:
                scored = self.review.scored(batch)
            except AemonError as exc:
                note = f"the batch file could not be scored again: {safe_text(exc, 300)}"
        if scored is None and note is None:
            note = (
                f"the batch file is no longer at {batch.source} (nor in {rv.DONE_DIR}/ beside it) "
                "with the same content: showing the stored flagged records only"
            )
        context: dict[str, Any] = {"file_note": note, "batch_path": str(scored.path) if scored else None}
        if not adapter_for(promise.modality).has_events:  # an image batch: its flagged images
            context["check"] = rv.rate_check(promise, batch, 0, None)
            context["images"] = [
                {
                    "anomaly": a,
                    "map_url": self.review.report_url(a.details.get("error_map")),
                    "image_url": f"/batches/{batch.id}/images/{a.id}.png" if scored else None,
                    "overlay_url": f"/batches/{batch.id}/overlays/{a.id}.png" if scored else None,
                    "verdict": verdicts.get(a.id),
                }
                for a in anomalies
            ]
            return context
        events = rv.group_events(anomalies, verdicts)
        detector = self.review.detector(batch.model_name, batch.model_version)
        context["events"] = events
        context["contributions"] = rv.contributions_figure(events)
        context["check"] = rv.rate_check(
            promise, batch, len(events), self.review.series_span(batch, detector)
        )
        if scored is not None and scored.values is not None:
            res = scored.result
            x = res.timestamps if res.timestamps is not None else np.arange(res.n_records)
            context["chart"] = rv.series_figure(
                res.columns, scored.values, x, res.scores, res.threshold, events
            )
        return context

    def _image(self, batch_id: int, anomaly_id: int, overlay: bool) -> Response:
        anomaly = self.store.get_anomaly(anomaly_id)
        if anomaly.batch_id != batch_id:
            raise HTTPException(404, "no such image in this batch")
        batch = self.store.get_batch(batch_id)
        if overlay:
            png = self.review.overlay_png(batch, anomaly)
        else:
            png = self.review.image_png(batch, anomaly.record_key)
        if png is None:
            raise HTTPException(404, "the image (or its error map) is no longer where it was scored")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    def batch_image(self, batch_id: int, anomaly_id: int) -> Response:
        return self._image(batch_id, anomaly_id, overlay=False)

    def batch_overlay(self, batch_id: int, anomaly_id: int) -> Response:
        return self._image(batch_id, anomaly_id, overlay=True)

    def anomaly_page(self, request: Request, anomaly_id: int) -> HTMLResponse:
        anomaly = self.store.get_anomaly(anomaly_id)
        batch = self.store.get_batch(anomaly.batch_id)
        errors = anomaly.details.get("column_errors") or {}
        total = sum(v for v in errors.values() if v is not None)
        shares = {k: (v / total if total and v is not None else None) for k, v in errors.items()}
        return self.render(
            request,
            "anomaly.html",
            anomaly=anomaly,
            batch=batch,
            feedback=self.review.verdicts(anomaly.model_name).get(anomaly.id),
            column_errors=errors,
            shares=shares,
            map_url=self.review.report_url(anomaly.details.get("error_map")),
            image_url=f"/batches/{batch.id}/images/{anomaly.id}.png",
            overlay_url=f"/batches/{batch.id}/overlays/{anomaly.id}.png",
            verdicts=VERDICTS,
        )

    def models_page(self, request: Request) -> HTMLResponse:
        try:
            versions, problem = list(self.list_models()), None
        except AemonError as exc:
            versions, problem = [], safe_text(exc, 300)
        return self.render(request, "models.html", models=self._model_views(versions), problem=problem)

    def _model_views(self, versions: Sequence[Any]) -> list[dict[str, Any]]:
        batches = [b for b in self.store.list_batches(limit=10_000) if b.status == "done"]
        by_name: dict[str, list[Any]] = {}
        for v in versions:
            by_name.setdefault(v.name, []).append(v)
        views = []
        for name, vs in by_name.items():
            feedback = self.store.list_feedback(model_name=name)
            rows = []
            for v in vs:
                mine = [b for b in batches if b.model_name == name and b.model_version == v.version]
                promise = self.review.promise(name, v.version)
                marks = [f.verdict for f in feedback if f.model_version == v.version]
                observed, check = self._observed(promise, mine)
                rows.append(
                    {
                        "info": v,
                        "promise": promise,
                        "n_batches": len(mine),
                        "observed": observed,
                        "check": check,
                        "n_false": marks.count("false_positive"),
                        "n_true": marks.count("true_positive"),
                    }
                )
            views.append({"name": name, "versions": rows})
        return views

    def _observed(self, promise: rv.Promise | None, mine: list[Batch]) -> tuple[str, Any]:
        """A version's alarms over every batch it scored, and the check against its promise."""
        if not mine:
            return "no batches scored", None
        n_records = sum(b.n_records for b in mine)
        n_flagged = sum(b.n_flagged for b in mine)
        if promise is None or promise.budget is None:
            text = f"{n_flagged} of {n_records} records flagged ({100 * n_flagged / max(n_records, 1):.2f} %)"
            if promise is None or promise.target_fpr is None:
                return text, None
            block = adapter_for(promise.modality).block_size(promise.window)
            return text, rv.drift.flag_rate_check(n_flagged, n_records, promise.target_fpr, block_size=block)
        detector = self.review.detector(mine[0].model_name, mine[0].model_version)
        n_events, days = 0, pd.Timedelta(0)
        for b in mine:
            n_events += len(rv.group_events(self.store.list_anomalies(batch_id=b.id, limit=None)))
            span = self.review.series_span(b, detector)
            if span is None:
                return f"{n_events}+ alarms (a batch file is gone: span unknown)", None
            days += span
        check = rv.drift.event_rate_check(n_events, days, promise.budget)
        return f"{n_events} alarms in {days / pd.Timedelta(days=1):.3g} days", check

    # -- writing --

    async def give_feedback(self, request: Request, anomaly_id: int) -> RedirectResponse:
        form = await read_form(request)
        self.auth.check_write(request, form)
        verdict = form.get("verdict", "")
        if verdict not in VERDICTS:
            raise HTTPException(400, f"verdict must be one of {', '.join(VERDICTS)}")
        note = form.get("note", "").strip()[:MAX_NOTE_CHARS] or None
        earlier = await run_in_threadpool(self.store.verdict_of, anomaly_id)
        await run_in_threadpool(self.store.add_feedback, anomaly_id, verdict, note)
        words = "true alarm" if verdict == "true_positive" else "false alarm"
        text = f"Anomaly {anomaly_id} marked as a {words}."
        if earlier is not None and earlier != verdict:
            text += f" It replaces the earlier verdict ({earlier})."
        back = _local_path(form.get("next", "") or f"/anomalies/{anomaly_id}")
        return RedirectResponse(f"{back}?note={self.flash('ok', text)}", status_code=303)

    async def recalibrate_model(self, request: Request, name: str) -> RedirectResponse:
        form = await read_form(request)
        self.auth.check_write(request, form)
        if self.recalibrate is None:
            raise HTTPException(404, "recalibration is not available in this app")
        try:
            version = await run_in_threadpool(self.recalibrate, name)
        except AemonError as exc:
            key = self.flash("error", f"Recalibration of {name} failed: {safe_text(exc, 500)}")
        else:
            status = "champion" if version.promoted else "not champion"
            key = self.flash(
                "ok",
                f"Registered {version.name}/{version.version} (threshold {version.threshold:.4g}, "
                f"{status}): {version.reason}",
            )
        return RedirectResponse(f"/models?note={key}#model-{quote(name, safe='')}", status_code=303)

    # -- signing in --

    def signin_page(self, request: Request) -> HTMLResponse:
        target = _local_path(request.query_params.get("next", ""))
        return self.render(request, "signin.html", failed=False, next=target)

    async def signin(self, request: Request) -> Response:
        form = await read_form(request)
        if not self.auth.enabled:
            raise HTTPException(403, "read-only: start aemon ui with AEMON_UI_TOKEN set to allow writes")
        if not same_origin(request):
            raise HTTPException(403, "refused: the request comes from another site")
        target = _local_path(form.get("next", ""))
        if not self.auth.token_ok(form.get("token", "")) or self.auth.session is None:
            return self.render(request, "signin.html", status=403, failed=True, next=target)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, self.auth.session, httponly=True, samesite="strict", path="/")
        return response

    async def signout(self, request: Request) -> RedirectResponse:
        if not same_origin(request):
            raise HTTPException(403, "refused: the request comes from another site")
        response = RedirectResponse("/batches", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # -- files --

    def plotly(self) -> Response:
        return Response(
            self.plotly_js.read_bytes(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    def static_file(self, name: str) -> Response:
        kinds = {".css": "text/css", ".js": "text/javascript"}
        item = self.static / name
        suffix = Path(name).suffix
        if "/" in name or suffix not in kinds or not item.is_file():
            raise HTTPException(404, "not found")
        return Response(item.read_bytes(), media_type=kinds[suffix], headers={"Cache-Control": "no-cache"})

    def report_file(self, path: str) -> FileResponse:
        root = self.review.reports_root
        try:
            target = (root / path).resolve(strict=True)
            target.relative_to(root)  # no way out: '..', absolute parts and links are resolved first
        except (OSError, ValueError, RuntimeError):
            raise HTTPException(404, "no such report file") from None
        if not target.is_file() or target.suffix.lower() not in _REPORT_TYPES:
            raise HTTPException(404, "no such report file")
        return FileResponse(target, media_type=_REPORT_TYPES[target.suffix.lower()])


async def security_headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
    """A strict Content-Security-Policy (nothing outside the app, no inline script) on every
    page; the reports' own, sandboxed one on report files."""
    response: Response = await call_next(request)
    is_report = request.url.path.startswith("/reports/")
    response.headers["Content-Security-Policy"] = _REPORT_CSP if is_report else _PAGE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if not is_report:
        response.headers["X-Frame-Options"] = "DENY"
    return response


def create_app(
    *,
    database_url: str | None = None,
    reports_root: Path | None = None,
    token: str | None = None,
    recalibrate: Recalibrate | None = None,
    load_detector: Callable[[str], tuple[Any, Any]] | None = None,
    list_models: Callable[[], Sequence[Any]] | None = None,
    allowed_hosts: Sequence[str] = ("*",),
    warm_up: bool = False,
) -> FastAPI:
    """The review app. `token`: what writes need (None: read-only). `recalibrate(name)`: runs
    the gated recalibration and returns the registered version (the CLI passes the Prefect
    flow; None hides the action). `load_detector` and `list_models` default to the
    registry's; `allowed_hosts`: Host headers answered (DNS rebinding); `warm_up`: load the
    models of the newest batches in the background at start (the first page then comes fast)."""
    from aemon import config, registry

    store = AnomalyStore(database_url)
    review = rv.Review(store, reports_root or config.reports_dir(), load_detector or registry.load_detector)
    pages = Pages(store, review, Auth(token), list_models or registry.list_models, recalibrate)

    def warm() -> None:
        try:
            review.batch_rows(100)  # loads the models and reads the batch files once
        except Exception as exc:  # the pages will say what is wrong
            log.warning("warming up the batches page failed: %s", safe_text(exc, 300))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm_up:
            threading.Thread(target=warm, name="aemon-ui-warm-up", daemon=True).start()
        yield
        store.close()

    app = FastAPI(title="aemon", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.middleware("http")(security_headers)
    app.add_exception_handler(HTTPException, pages.http_error)
    app.add_exception_handler(StoreError, pages.store_error)
    routes: list[tuple[str, Callable[..., Any], str]] = [
        ("/", pages.home, "GET"),
        ("/batches", pages.batches, "GET"),
        ("/batches/{batch_id}", pages.batch_page, "GET"),
        ("/batches/{batch_id}/images/{anomaly_id}.png", pages.batch_image, "GET"),
        ("/batches/{batch_id}/overlays/{anomaly_id}.png", pages.batch_overlay, "GET"),
        ("/anomalies/{anomaly_id}", pages.anomaly_page, "GET"),
        ("/anomalies/{anomaly_id}/feedback", pages.give_feedback, "POST"),
        ("/models", pages.models_page, "GET"),
        ("/models/{name}/recalibrate", pages.recalibrate_model, "POST"),
        ("/signin", pages.signin_page, "GET"),
        ("/signin", pages.signin, "POST"),
        ("/signout", pages.signout, "POST"),
        ("/static/plotly.min.js", pages.plotly, "GET"),
        ("/static/{name}", pages.static_file, "GET"),
        ("/reports/{path:path}", pages.report_file, "GET"),
    ]
    for path, endpoint, method in routes:
        app.add_api_route(path, endpoint, methods=[method], response_model=None)
    app.state.store, app.state.review = store, review
    return app


def _local_path(value: str) -> str:
    """A redirect target inside this app (an open redirect otherwise)."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/batches"


def allowed_hosts_for(host: str) -> list[str]:
    """Host headers to answer when bound to `host`: the loopback names for a loopback
    address (a page on another site cannot rebind its name to us), any for 0.0.0.0."""
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    return sorted({*LOCAL_HOSTS, host}) if host in LOCAL_HOSTS else [host]
