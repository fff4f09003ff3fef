"""The rich tables the `aemon` command line prints (kept apart from the commands so that other
front ends, such as `aemon ui`, can reuse or mirror them). Every user string (file names, column
names, errors) is escaped for rich markup and stripped of control characters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from aemon.registry import ModelVersionInfo, RegisteredVersion
    from aemon.store import Batch, DriftReportRow


def safe_text(text: object, limit: int | None = None) -> str:
    """aemon.errors.safe_text, imported when first needed (keeps `aemon --help` light)."""
    from aemon.errors import safe_text as escape_controls

    return escape_controls(text, limit)


def key_value_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, box=box.SIMPLE, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


def where_to_look(demo_data: Path) -> Table:
    """Where quickstart left things; URLs without their passwords."""
    from aemon import config
    from aemon.errors import redact_url

    rows = [
        ("anomaly DB", redact_url(config.database_url())),
        ("MLflow UI", f"mlflow ui --backend-store-uri {redact_url(config.mlflow_tracking_uri())}"),
        ("drift reports", str(config.reports_dir())),
        ("demo data", str(demo_data)),
        ("next", "aemon anomalies | aemon reports | aemon models"),
    ]
    return key_value_table("Where to look", [(k, escape(safe_text(v))) for k, v in rows])


def version_summary(v: RegisteredVersion) -> Table:
    verdict = "[green]champion[/]" if v.promoted else "[yellow]not promoted[/]"
    target = f" (target {v.target_fpr:g})" if v.target_fpr is not None else ""
    rows = [
        ("name", escape(safe_text(v.name))),
        ("version", v.version),
        ("aliases", ", ".join(v.aliases) or "-"),
        ("quality gate", f"{verdict}: {escape(v.reason)}"),
        ("threshold", f"{v.threshold:.6g} ({v.threshold_method})"),
        ("calibration FPR", f"{v.calibration_fpr:.4f}{target}"),
    ]
    if v.false_alarms:
        rows.append(("false-alarm budget", f"at most {v.false_alarms} on normal data"))
    if v.cycles:
        rows.append(("calendar inputs", "phase of the " + " and ".join(v.cycles)))
    if v.level_free:
        rows.append(("seen without their level", escape(", ".join(safe_text(c) for c in v.level_free))))
    labels = {
        "fpr": "held-out FPR",
        "auroc": "held-out AUROC",
        "auprc": "held-out AUPRC",
        "f1": "held-out F1",
    }
    rows += [(label, f"{v.evaluation[key]:.4f}") for key, label in labels.items() if key in v.evaluation]
    rows += [("MLflow run", v.run_id), ("tracking URI", escape(v.tracking_uri))]
    return key_value_table(f"Registered {v.name}/{v.version}", rows)


def models_table(rows: list[ModelVersionInfo]) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("model", "version", "aliases", "gate", "threshold", "created (UTC)", "run"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r.name,
            r.version,
            ", ".join(r.aliases) or "-",
            r.gate or "-",
            f"{r.threshold:.6g}" if r.threshold is not None else "-",
            r.created.strftime("%Y-%m-%d %H:%M:%S"),
            r.run_id or "-",
        )
    return table


def outcomes_table(summaries: list[dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Batches", title_justify="left")
    for column in ("batch", "source", "status", "records", "flagged", "drift", "note"):
        table.add_column(column, overflow="fold")
    colors = {"done": "green", "skipped": "dim", "quarantined": "red", "deferred": "yellow"}
    for b in summaries:
        drift = {True: "[red]drift[/]", False: "no drift", None: "-"}[b.get("drift_detected")]
        note = "see below" if b["status"] in ("quarantined", "deferred") else ""
        if b.get("warnings"):
            note = "[yellow]see warning[/]"
        if b.get("flag_rate_broken"):  # the alert a user most needs: the promise is broken
            note = f"[red]{escape(b.get('flag_rate') or '')}[/]"
        table.add_row(
            str(b.get("batch_id") or "-"),
            escape(safe_text(Path(b["source"]).name)),
            f"[{colors.get(b['status'], 'white')}]{b['status']}[/]",
            str(b.get("n_records", 0)),
            str(b.get("n_flagged", 0)),
            drift,
            note,
        )
    return table


def anomalies_table(rows: list[Any], title: str = "Flagged records") -> Table:
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for column in ("id", "batch", "model", "record", "score", "threshold", "p-value"):
        table.add_column(column, overflow="fold")
    for a in rows:
        table.add_row(
            str(a.id),
            str(a.batch_id),
            f"{a.model_name}/{a.model_version}",
            escape(a.record_key),
            f"{a.score:.4g}",
            f"{a.threshold:.4g}",
            f"{a.p_value:.3g}" if a.p_value is not None else "-",
        )
    return table


def events_table(found: list[tuple[int, Any]]) -> Table:
    """(batch id, EventView) rows: one alarm per line, its top columns by share of the error."""
    table = Table(box=box.SIMPLE_HEAD, title="Alarms", title_justify="left")
    for column in ("batch", "event", "model", "start", "end", "flagged", "peak score", "columns"):
        table.add_column(column, overflow="fold")
    for batch_id, e in found:
        top = sorted(e.contributions.items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            str(batch_id),
            str(e.number),
            f"{e.peak.model_name}/{e.peak.model_version}",
            escape(str(e.start)),
            escape(str(e.end)),
            str(e.n_points),
            f"{e.peak.score:.4g}",
            escape(", ".join(f"{c} {v:.0%}" for c, v in top)),
        )
    return table


def drift_reports_table(rows: list[DriftReportRow]) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("batch", "model", "drift", "drifted share", "created (UTC)", "report"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            str(r.batch_id),
            f"{r.model_name}/{r.model_version}",
            "[red]drift[/]" if r.drift_detected else "no drift",
            f"{r.drifted_share:.0%}",
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(safe_text(r.html_path)),
        )
    return table


# The columns of `aemon batches --format csv|json`, in order (the fields of aemon.store.Batch).
BATCH_FIELDS = (
    "id",
    "source",
    "content_sha256",
    "model_name",
    "model_version",
    "status",
    "n_records",
    "n_flagged",
    "error",
    "started_at",
    "finished_at",
    "monitored_at",
)


def batches_table(rows: list[Batch]) -> Table:
    """`aemon batches`: one row per batch; the reason (a quarantine's or failure's error) in
    full, folded on a terminal and whole when piped."""
    table = Table(box=box.SIMPLE_HEAD)
    colors = {"done": "green", "running": "cyan", "failed": "yellow", "quarantined": "red"}
    for column in (
        "batch",
        "source",
        "model",
        "status",
        "records",
        "flagged",
        "started (UTC)",
        "took",
        "reason",
    ):
        table.add_column(column, overflow="fold")
    for b in rows:
        took = f"{(b.finished_at - b.started_at).total_seconds():.1f} s" if b.finished_at else "-"
        table.add_row(
            str(b.id),
            escape(safe_text(b.source)),
            escape(f"{b.model_name}/{b.model_version}"),
            f"[{colors.get(b.status, 'white')}]{b.status}[/]",
            str(b.n_records),
            str(b.n_flagged),
            b.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            took,
            escape(safe_text(b.error)) if b.error else "",
        )
    return table
