"""The `aemon` command line (console script `aemon = flows.cli:main`).

One typer app; each command is one function below that parses options, calls a flow or an
`aemon` function, and prints with rich. torch, Prefect and MLflow are imported inside the
commands, so `aemon --help` stays fast. Exit codes: 0 success, 1 failure (an `AemonError`
prints one red line, no traceback), 2 usage error.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from enum import StrEnum
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from aemon.config import HOLDOUT_FRACTION
from flows import tables
from flows.tables import safe_text

app = typer.Typer(
    name="aemon",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs are re-wrapped, not cut at newlines
)

UNWRAPPED_WIDTH = 1_000_000  # the console width when output is not a terminal: no wrapping


def _make_console(stderr: bool = False) -> Console:
    """Rich's console as usual on a terminal. Piped or redirected, lines and tables are never
    wrapped (rich would cut them at 80 columns, splitting paths and timestamps)."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=UNWRAPPED_WIDTH, soft_wrap=True)


console = _make_console()
err_console = _make_console(stderr=True)
_verbose = False  # --verbose, for commands that say more with it

P = ParamSpec("P")
R = TypeVar("R")


def _hide_flag_types() -> None:
    """Typer's rich help shows `<bool>` after on/off flags such as --promote and --help, as if
    they took a value: show no type for a flag."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_hide_flag_types()


class Modality(StrEnum):
    timeseries = "timeseries"
    image = "image"


class Arch(StrEnum):
    dense = "dense"
    conv = "conv"


class Objective(StrEnum):
    undercomplete = "undercomplete"
    denoising = "denoising"
    sparse = "sparse"
    contractive = "contractive"
    vae = "vae"


class ThresholdMethod(StrEnum):
    quantile = "quantile"
    mad = "mad"
    pot = "pot"
    f1 = "f1"


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


# --- shared helpers -------------------------------------------------------------------------


class _SafeFormatter(logging.Formatter):
    """Log lines with control characters escaped: a file name or a quoted bad file can hold
    terminal escape sequences. Tracebacks keep their line breaks."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return safe_text(super().formatMessage(record))


def _configure_output(verbose: bool) -> None:
    """Quiet defaults for the libraries below (the user's environment wins); set before
    they are imported, since Prefect and MLflow read them at import time."""
    from aemon.config import apply_output_defaults

    apply_output_defaults(verbose)
    level = "INFO" if verbose else "WARNING"
    # aemon's own logs: one console line each (not again through Prefect's console), while
    # Prefect's API handler, attached to this logger as an extra logger, still gets INFO.
    logger = logging.getLogger("aemon")
    for old in [h for h in logger.handlers if h.get_name() == "aemon-cli"]:
        logger.removeHandler(old)  # called again in the same process (tests)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name("aemon-cli")
    handler.setFormatter(_SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # A flow run without Prefect logs to `aemon.flows`: as quiet as Prefect's console would be
    # (the command prints what happened itself).
    logging.getLogger("aemon.flows").setLevel(logging.INFO if verbose else logging.CRITICAL)
    if not verbose and not sys.warnoptions:
        warnings.simplefilter("ignore")


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Report an AemonError as one red line and exit 1; other errors keep their traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from aemon.errors import AemonError

        try:
            return func(*args, **kwargs)
        except AemonError as exc:
            # safe_text: a message may quote a bad file, whose escape sequences must not reach
            # the terminal raw.
            err_console.print(f"[bold red]error:[/] [red]{escape(safe_text(exc))}[/]", soft_wrap=True)
            raise typer.Exit(1) from None
        except RuntimeError as exc:
            # Prefect's own message when its temporary server misses the start-up timeout
            # (seen on a busy 2-core machine): say what to do instead of a traceback.
            if "ephemeral Prefect API server" not in str(exc):
                raise
            err_console.print(
                "[bold red]error:[/] [red]Prefect's temporary server did not start in time (a busy "
                "machine?): raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or run a Prefect "
                "server (`aemon serve`, or `prefect server start` and PREFECT_API_URL) and try again[/]",
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def _one_off_run(flow_name: str) -> str:
    """Run a one-off command's flow on the Prefect server that is configured (PREFECT_API_URL or
    the profile) or running (`aemon serve`'s), or else directly without Prefect: a temporary
    Prefect server would take longer than the work (see flows/orchestration.py). Says which."""
    from aemon import config
    from flows.server import prefect_server

    api_url = prefect_server()
    if api_url is None:
        from flows.orchestration import run_without_prefect

        run_without_prefect()
        return "directly, without Prefect (no Prefect server configured or running)"
    config.set_environment(PREFECT_API_URL=api_url)
    _guard_children()
    return f"as a {flow_name} flow run on the Prefect server at {api_url}"


def _guard_children() -> None:
    """Servers and processes this command starts stop when it ends, also after a kill -9
    (see flows/reaper.py)."""
    from flows.server import stop_children_on_exit

    stop_children_on_exit()


def _require_exists(path: Path, what: str) -> None:
    if not path.exists():
        from aemon.errors import DataError

        raise DataError(f"{what} not found", source=path)


# --- commands -------------------------------------------------------------------------------


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"aemon {package_version('aemon')}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show library logs and warnings.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Autoencoder anomaly detection: train, register, score and monitor.

    State lives under AEMON_HOME (default ./.aemon): MLflow store, Prefect state, database.
    """
    global _verbose
    _verbose = verbose
    _configure_output(verbose)


def _budget(false_alarms: str | None, target_fpr: float | None) -> str | None:
    """The Detector's false_alarms: 'auto' unless a pointwise threshold was asked for."""
    if false_alarms is None:
        return "auto" if target_fpr is None else None
    return None if false_alarms.strip().lower() in ("off", "none") else false_alarms


@app.command()
@friendly_errors
def train(
    data: Annotated[
        Path,
        typer.Argument(
            help="Reference data: a CSV/Parquet series, or an image folder / .npy / .npz / IDX file.",
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Registered model name.", show_default=False)],
    modality: Annotated[
        Modality | None, typer.Option(help="Default: from the data (file suffix or folder).")
    ] = None,
    model: Annotated[
        Arch | None, typer.Option("--model", help="Architecture. Default: dense for series, conv for images.")
    ] = None,
    objective: Annotated[Objective, typer.Option(help="Training objective.")] = (Objective.undercomplete),
    threshold: Annotated[
        ThresholdMethod, typer.Option(help="Threshold calibration; f1 needs --labels with anomalies.")
    ] = (ThresholdMethod.quantile),
    target_fpr: Annotated[
        float | None,
        typer.Option(
            help="Promised pointwise false-positive rate (default 0.01: p-values and the floor "
            "under events). Given without --false-alarms, the threshold is pointwise.",
            show_default=False,
        ),
    ] = None,
    false_alarms: Annotated[
        str | None,
        typer.Option(
            help="Time series: false-alarm budget in events per time, e.g. 1/day; it decides "
            "the threshold. Default: 1/week when the series has a time column; 'off' for a "
            "pointwise threshold.",
            show_default=False,
        ),
    ] = None,
    window: Annotated[int, typer.Option(help="Time series: points per window.")] = 64,
    latent_dim: Annotated[
        int | None, typer.Option(help="Bottleneck size. Default: sized from the input.", show_default=False)
    ] = None,
    epochs: Annotated[int, typer.Option(help="Maximum training epochs.")] = 60,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="CSV with a 0/1 column 'label' (1 = anomaly): one row per row of DATA (time "
            "series) or per image in sorted path order; for images an optional 'key' "
            "column (path relative to DATA) matches rows by name instead. Labelled "
            "anomalies stay out of training and give held-out AUROC/AUPRC/F1.",
            show_default=False,
        ),
    ] = None,
    promote: Annotated[
        bool, typer.Option("--promote", help="Make the new version champion whatever the quality gate says.")
    ] = (False),
    holdout: Annotated[
        float,
        typer.Option(
            help="Share of DATA held out from training to evaluate the new version and the "
            "champion (series: the last rows; 0 disables)."
        ),
    ] = HOLDOUT_FRACTION,
    device: Annotated[Device, typer.Option(help="Training device.")] = Device.auto,
    seed: Annotated[int, typer.Option(help="Seed for splits, weights and noise.")] = 0,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Training progress bar. Default: on a terminal.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train a detector on reference DATA and register it in MLflow as NAME.

    The new version gets alias 'challenger', and 'champion' when it passes the quality gate
    (no champion yet; or on the same held-out data its false-positive rate keeps the target
    and its AUROC is not worse than the champion's) or with --promote.
    """
    from aemon.config import check_model_name

    check_model_name(name)  # a name for folders under AEMON_HOME: refused before any work
    _require_exists(data, "data")
    if labels is not None:
        _require_exists(labels, "labels file")
    how = _one_off_run("train")
    err_console.print(f"Training [bold]{escape(safe_text(name))}[/] on {escape(safe_text(data))} ...")
    if _verbose:
        err_console.print(f"Training {how}.")
    from flows.train import train as train_flow

    result = train_flow(
        data=str(data.resolve()),
        name=name,
        modality=modality.value if modality else None,
        model=model.value if model else "auto",
        objective=objective.value,
        threshold=threshold.value,
        target_fpr=0.01 if target_fpr is None else target_fpr,
        false_alarms=_budget(false_alarms, target_fpr),
        window=window,
        latent_dim=latent_dim,
        epochs=epochs,
        labels=str(labels.resolve()) if labels else None,
        promote=promote,
        device=device.value,
        seed=seed,
        holdout_fraction=holdout,
        progress=sys.stderr.isatty() if progress is None else progress,
    )
    console.print(tables.version_summary(result))


@app.command()
@friendly_errors
def models(
    name: Annotated[
        str | None, typer.Argument(help="Only this registered model.", show_default=False)
    ] = None,
) -> None:
    """List registered models, their versions and aliases (champion, challenger)."""
    from aemon.config import mlflow_tracking_uri
    from aemon.errors import redact_url
    from aemon.registry import list_models

    rows = list_models(name)
    if not rows:
        console.print(f"No registered models in {escape(redact_url(mlflow_tracking_uri()))}.")
        return
    console.print(tables.models_table(rows))


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class Verdict(StrEnum):
    true_positive = "true_positive"
    false_positive = "false_positive"


@app.command()
@friendly_errors
def score(
    data: Annotated[
        Path, typer.Argument(help="A batch: a CSV/Parquet series or images.", show_default=False)
    ],
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="NAME (its champion), NAME@alias or NAME/version.", show_default=False
        ),
    ],
) -> None:
    """Score one batch now with the score-batch flow and write flagged records to the DB.

    With a Prefect server configured (PREFECT_API_URL, or in the Prefect profile) or running
    (`aemon serve`'s), the batch is a flow run on it. Without one, the flow's code runs directly,
    without Prefect: a temporary Prefect server would take longer than the batch. --verbose
    says which. Scoring the same content again with the same model version changes nothing;
    content that was quarantined before is reported quarantined again, with its first error
    (exit 1). A file that changes while it is read (still being written) is not recorded (exit 1).
    """
    _require_exists(data, "batch")
    how = _one_off_run("score-batch")
    if _verbose:
        err_console.print(f"Scoring {escape(safe_text(data))} {how}.")
    from flows.score import score_batch

    summary = score_batch(os.path.abspath(data), model)  # a link keeps its own name
    console.print(tables.outcomes_table([summary]))
    if summary["status"] in ("quarantined", "skipped", "deferred"):  # the reason, in full
        from flows.common import describe_outcome

        color = {"quarantined": "red", "deferred": "yellow"}.get(summary["status"], "dim")
        console.print(f"[{color}]{escape(describe_outcome(summary))}[/]")
    for note in summary.get("warnings") or []:  # the batch is written, monitoring is not
        err_console.print(f"[yellow]warning:[/] {escape(safe_text(note))}", soft_wrap=True)
    if summary["status"] == "done" and summary.get("batch_id") is not None:
        from aemon.store import AnomalyStore

        with AnomalyStore() as store:
            top = store.list_anomalies(batch_id=summary["batch_id"], limit=10)
        if top:
            console.print(tables.anomalies_table(top, "Top flagged records"))
        if summary.get("report_path"):
            console.print(f"Drift report: {summary['report_path']}")
    if summary["status"] in ("quarantined", "deferred"):
        raise typer.Exit(1)


@app.command()
@friendly_errors
def serve(
    inbox: Annotated[
        str,
        typer.Option(
            help="Folder that receives new batches, or an object store's URL (s3://bucket/prefix).",
            show_default=False,
        ),
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="NAME, NAME@alias or NAME/version.", show_default=False)
    ],
    cron: Annotated[
        str | None, typer.Option(help="Cron schedule, e.g. '*/5 * * * *'.", show_default=False)
    ] = None,
    every: Annotated[
        int | None, typer.Option(help="Interval schedule in seconds.", show_default=False)
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            help="Run each run's batches in parallel on the Dask cluster whose scheduler is at this "
            "address, e.g. tcp://scheduler:8786.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve score-inbox on a schedule on this machine until Ctrl-C.

    Prints a line when a run starts scoring the inbox (how many new batches) and one per batch
    (done, quarantined or skipped; flagged count, drift verdict or reason) on stdout; Prefect's
    own logs stay quiet unless --verbose.

    Without PREFECT_API_URL a local Prefect server is started on 127.0.0.1 (state under
    AEMON_HOME) and stopped on exit: Prefect's temporary API runs no schedules. With --dask,
    the batches of a run are scored in parallel on Dask workers, which need the same AEMON_*
    and MLflow settings and access to the inbox, the database and the registry.
    """
    if (cron is None) == (every is None):
        raise typer.BadParameter("give exactly one of --cron and --every")
    if every is not None and every < 1:
        raise typer.BadParameter("--every must be at least 1 second")
    from aemon.object_inbox import is_object_store

    if not is_object_store(inbox):  # a folder: checked here, and passed on absolute
        _require_exists(Path(inbox), "inbox folder")
        inbox = str(Path(inbox).resolve())
    _guard_children()
    from flows.server import prefect_api

    # SIGTERM (service managers) stops as Ctrl-C does, at any moment. A KeyboardInterrupt that a
    # signal handler raises is lost when it lands in a finalizer (__del__), and so is the
    # sys.exit of Prefect's own SIGTERM handler while its runner starts (seen in CI: serve ran
    # on after SIGTERM). So SIGTERM stays serve's, and a watchdog repeats the interrupt every
    # 5 s until serve is on its way out.
    stopped_while_starting = False
    leaving = threading.Event()

    def insist() -> None:
        while not leaving.wait(5):
            os.kill(os.getpid(), signal.SIGINT)

    def interrupt(signum: int, frame: object) -> None:
        nonlocal stopped_while_starting
        if not stopped_while_starting:
            stopped_while_starting = True
            threading.Thread(target=insist, name="aemon-stop", daemon=True).start()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    _keep_sigterm_from_prefect()
    from aemon import config

    # Flow runs (child processes) print a line per run and batch.
    config.set_environment(**{config.ANNOUNCE_ENV: "1"})
    with contextlib.suppress(KeyboardInterrupt), prefect_api() as api_url:
        from flows.score import score_inbox

        name = f"score-inbox-{model.replace('/', '-').replace('@', '-')}"
        schedule = f"cron '{cron}'" if cron else f"every {every} s"
        where = escape(safe_text(inbox))
        err_console.print(f"Serving [bold]{name}[/] ({schedule}) on {api_url}, inbox {where}. Ctrl-C stops.")
        try:
            score_inbox.serve(
                name=name,
                cron=cron,
                interval=every,
                parameters={"inbox": inbox, "model": model, "dask": dask},
                print_starting_message=False,
                # One run at a time: runs of one inbox would race for the same files, and a short
                # interval would otherwise start a new process every tick.
                limit=1,
            )
        finally:
            leaving.set()  # the interrupt arrived: no more repeats while the server stops
    err_console.print("Stopped.")
    if stopped_while_starting:
        # Prefect's client threads may still be mid-call in native code, and letting the
        # interpreter finalize around them can abort ("FATAL: exception not rethrown").
        # Nothing is left to clean up: the local Prefect server is already stopped.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _keep_sigterm_from_prefect() -> None:
    """Let Prefect's runner install its signal handlers, but not SIGTERM's: serve's own stays
    (see `serve`). Prefect's runner calls `signal.signal` through its module's `signal`."""
    import prefect.runner.runner as prefect_runner

    class KeepSigterm:
        def __getattr__(self, name: str) -> Any:
            return getattr(signal, name)

        def signal(self, signum: int, handler: Any) -> Any:
            if signum == signal.SIGTERM:
                return signal.getsignal(signum)
            return signal.signal(signum, handler)

    prefect_runner.signal = KeepSigterm()  # type: ignore[assignment]


def _finite_or_null(value: Any) -> Any:
    """`value` with every infinite or NaN float replaced by None (strict JSON has neither)."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(v) for v in value]
    return value


def _write_records(records: list[dict[str, Any]], format: OutputFormat, *, first: str, nested: str) -> None:
    """Records to stdout as strict JSON (infinite or NaN floats as null) or CSV (the `nested`
    dict column as JSON text; an empty list still writes the `first` column's header)."""
    import json

    if format is OutputFormat.json:
        sys.stdout.write(json.dumps(_finite_or_null(records), indent=1, allow_nan=False) + "\n")
        return
    import pandas as pd

    frame = pd.DataFrame(records, columns=list(records[0]) if records else [first])
    if nested in frame:
        frame[nested] = frame[nested].map(json.dumps)
    frame.to_csv(sys.stdout, index=False)


@app.command()
@friendly_errors
def anomalies(
    batch: Annotated[int | None, typer.Option(help="Only this batch id.", show_default=False)] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows (0: all).")] = 50,
    format: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = (
        OutputFormat.table
    ),
) -> None:
    """List flagged records from the anomaly database, newest batch first, highest score first.

    JSON output is strict JSON: a score, threshold or p-value that is infinite or NaN (an
    extreme input value) is written as null. CSV writes such values as inf / nan.
    """

    from aemon.store import AnomalyStore

    with AnomalyStore() as store:
        rows = store.list_anomalies(batch_id=batch, limit=limit or None)
    if format is OutputFormat.table:
        console.print(tables.anomalies_table(rows) if rows else "No flagged records.")
        return
    records = [
        {
            **vars(r),
            "timestamp": r.timestamp.isoformat() if r.timestamp else None,
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]
    _write_records(records, format, first="id", nested="details")


@app.command()
@friendly_errors
def events(
    batch: Annotated[int | None, typer.Option(help="Only this batch id.", show_default=False)] = None,
    format: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = (
        OutputFormat.table
    ),
) -> None:
    """List the alarms (events) of series batches, newest batch first: start, end, flagged
    points, peak score and the columns that drove each."""

    from aemon.store import AnomalyStore
    from aemon.ui.review import group_events

    with AnomalyStore() as store:
        rows = store.list_anomalies(batch_id=batch, limit=None)
    by_batch: dict[int, list[Any]] = {}
    for a in rows:
        by_batch.setdefault(a.batch_id, []).append(a)
    found = [(b, e) for b in sorted(by_batch, reverse=True) for e in group_events(by_batch[b])]
    if format is OutputFormat.table:
        console.print(tables.events_table(found) if found else "No alarms.")
        return
    records = [
        {
            "batch": b,
            "event": e.number,
            "start": str(e.start),
            "end": str(e.end),
            "points": e.n_points,
            "peak_score": e.peak.score,
            "threshold": e.peak.threshold,
            "model": f"{e.peak.model_name}/{e.peak.model_version}",
            "contributions": {c: round(v, 4) for c, v in e.contributions.items()},
        }
        for b, e in found
    ]
    _write_records(records, format, first="batch", nested="contributions")


@app.command()
@friendly_errors
def feedback(
    anomaly_id: Annotated[int, typer.Argument(help="Id from `aemon anomalies`.", show_default=False)],
    verdict: Annotated[Verdict, typer.Option(help="Was the flag right?", show_default=False)],
    note: Annotated[str | None, typer.Option(help="Free text.", show_default=False)] = None,
) -> None:
    """Record whether a flagged record was a true or a false positive (used by recalibrate)."""
    from aemon.store import AnomalyStore

    with AnomalyStore() as store:
        earlier = store.verdict_of(anomaly_id)
        feedback_id = store.add_feedback(anomaly_id, verdict.value, note)
    replaced = f" (replaces the earlier verdict {earlier})" if earlier is not None else ""
    console.print(f"Feedback {feedback_id}: anomaly {anomaly_id} is a {verdict.value}{replaced}.")


@app.command()
@friendly_errors
def recalibrate(
    name: Annotated[str, typer.Argument(help="Registered model name.", show_default=False)],
    promote: Annotated[bool, typer.Option("--promote", help="Champion whatever the gate says.")] = False,
) -> None:
    """New version of NAME with its threshold raised above the false positives marked with
    `aemon feedback` (confirmed true positives stay flagged); gated like a training run."""
    _guard_children()
    from flows.recalibrate import recalibrate as recalibrate_flow

    console.print(tables.version_summary(recalibrate_flow(name, promote)))


class BatchStatus(StrEnum):
    running = "running"
    done = "done"
    failed = "failed"
    quarantined = "quarantined"


@app.command()
@friendly_errors
def batches(
    status: Annotated[
        BatchStatus | None, typer.Option(help="Only batches in this state.", show_default=False)
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only this model's batches.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows (0: all).")] = 50,
    format: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = (
        OutputFormat.table
    ),
) -> None:
    """List scored batches, newest first: status, counts, model, times, and why a batch was
    quarantined or failed, in full.

    A batch is one content scored by one model version. Scoring the same content again is
    skipped and adds no row: `aemon score` says so when it happens.
    """
    from aemon.store import AnomalyStore

    with AnomalyStore() as store:
        rows = store.list_batches(
            limit=limit or None, status=status.value if status else None, model_name=model
        )
    if format is OutputFormat.table:
        console.print(tables.batches_table(rows) if rows else "No batches.")
        return
    records = [
        {
            **vars(b),
            "started_at": b.started_at.isoformat(),
            "finished_at": b.finished_at.isoformat() if b.finished_at else None,
            "monitored_at": b.monitored_at.isoformat() if b.monitored_at else None,
        }
        for b in rows
    ]
    if format is OutputFormat.json:
        import json

        sys.stdout.write(json.dumps(records, indent=1) + "\n")
    else:
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=list(tables.BATCH_FIELDS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


@app.command()
@friendly_errors
def reports(
    model: Annotated[str | None, typer.Option(help="Only this model.", show_default=False)] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 20,
    open_: Annotated[bool, typer.Option("--open", help="Open the newest report in a browser.")] = False,
) -> None:
    """List drift reports (newest first)."""
    from aemon.store import AnomalyStore

    with AnomalyStore() as store:
        rows = store.list_drift_reports(model_name=model, limit=limit)
    if not rows:
        console.print("No drift reports yet.")
        return
    console.print(tables.drift_reports_table(rows))
    if open_:
        _open_in_browser(Path(rows[0].html_path))


def _open_in_browser(path: Path) -> None:
    """Open `path` in the user's browser; where there is none (a headless machine, an SSH
    session), say so and print the path to open elsewhere."""
    import webbrowser

    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        browser = None
    if browser is None or not browser.open(path.resolve().as_uri()):
        err_console.print("No web browser found on this machine (headless?); open the report from here:")
        console.print(escape(safe_text(path.resolve())))
        return
    err_console.print(f"Opened {escape(safe_text(path.resolve()))} in the browser.")


@app.command()
@friendly_errors
def ui(
    host: Annotated[
        str, typer.Option(help="Address to listen on; 127.0.0.1 keeps it to this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
) -> None:
    """Review in the browser: batches, a batch's events or flagged images, anomalies with
    true / false alarm buttons, models with their promise and a recalibrate action.

    Feedback and recalibration need the token in AEMON_UI_TOKEN (the browser signs in with
    it once); without it the UI is read-only.
    """
    _guard_children()
    import uvicorn

    from aemon import config
    from aemon.ui.app import LOCAL_HOSTS, allowed_hosts_for, create_app

    def recalibrate_champion(name: str) -> Any:
        from flows.recalibrate import recalibrate as recalibrate_flow

        return recalibrate_flow(name)

    token = config.ui_token()
    web = create_app(
        token=token, recalibrate=recalibrate_champion, allowed_hosts=allowed_hosts_for(host), warm_up=True
    )
    mode = "writes need AEMON_UI_TOKEN" if token else "read-only: AEMON_UI_TOKEN is not set"
    err_console.print(f"aemon ui on http://{escape(host)}:{port}/ ({mode}). Ctrl-C stops.")
    if host not in LOCAL_HOSTS:
        err_console.print(
            "[yellow]warning:[/] listening beyond this machine over plain HTTP: anyone who can "
            "reach it sees the data, and the token crosses the network unencrypted"
        )
    uvicorn.run(web, host=host, port=port, log_level="warning")


class Suite(StrEnum):
    quality = "quality"
    speed = "speed"
    mnist = "mnist"
    nab = "nab"
    multivariate = "multivariate"
    smd = "smd"
    realistic = "realistic"
    disk = "disk"


@app.command()
@friendly_errors
def benchmark(
    suite: Annotated[
        Suite, typer.Argument(help="quality = mnist + nab + multivariate + smd + realistic; or speed, disk.")
    ] = (Suite.quality),
    quick: Annotated[
        bool, typer.Option("--quick", help="A small subset (minutes, for smoke tests).")
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Benchmark data (default $AEMON_BENCH_DATA or ../shared/data).", show_default=False
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Report folder (default AEMON_HOME/benchmarks/SUITE-TIME).", show_default=False),
    ] = None,
) -> None:
    """Measure detection quality (MNIST one-class, NAB, generated multivariate incidents, SMD,
    unseen realistic series) or
    speed, with baselines run in the same process; writes Markdown, JSON and plots."""
    _guard_children()
    from aemon.benchmarks import run_benchmark
    from flows.benchmark import measure_flow_overhead

    report = run_benchmark(
        suite.value,
        data_dir=data_dir,
        quick=quick,
        out_dir=out,
        progress=True,
        flow_overhead=measure_flow_overhead,
    )
    console.print(report.markdown, markup=False, highlight=False)
    console.print(f"Report: {report.json_path}")


db_app = typer.Typer(help="Anomaly database administration.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
@friendly_errors
def db_upgrade() -> None:
    """Apply the database migrations (also done automatically on first use)."""
    from aemon.store import AnomalyStore

    with AnomalyStore() as store:
        revision = store.upgrade()
        console.print(f"{store.url} is at revision {revision}.")


@app.command()
@friendly_errors
def quickstart(
    modality: Annotated[Modality, typer.Option(help="Demo data kind.")] = Modality.timeseries,
    replace_champion: Annotated[
        bool,
        typer.Option(
            "--replace-champion",
            help="Train a new version even when the demo model's champion is one quickstart did "
            "not train (e.g. recalibrated); the quality gate decides as usual.",
        ),
    ] = False,
) -> None:
    """Run the whole pipeline on generated data with embedded defaults (no configuration).

    Trains and registers a detector, scores three batches through score-inbox (clean, with
    incidents and drift, malformed), sends the alerts to a local webhook, and prints what
    happened and where to look. When the demo model's champion is a version quickstart did
    not train (you recalibrated it, say), it is kept and used: quickstart says so and trains
    nothing, unless --replace-champion.
    """
    from aemon import config

    _guard_children()
    from flows.quickstart import run_quickstart

    err_console.print(f"Quickstart ({modality.value}) in {config.aemon_home()} ...")
    run = run_quickstart(modality.value, replace_champion=replace_champion)
    if run.kept is not None:
        k = run.kept
        console.print(
            f"[yellow]Kept the champion {escape(k.name)}/{k.version}[/]: quickstart did not train it "
            f"({escape(safe_text(k.data_source or 'no training data recorded'))}), so it trained "
            "nothing and scored with it. `aemon quickstart --replace-champion` trains a new version "
            "(the quality gate decides)."
        )
        console.print(tables.models_table([k]))
    else:
        console.print(tables.version_summary(run.version))
    console.print(tables.outcomes_table(run.batches))
    from aemon.store import AnomalyStore

    with AnomalyStore() as store:
        for b in run.batches:
            if b["status"] == "done" and b["n_flagged"]:
                top = store.list_anomalies(batch_id=b["batch_id"], limit=5)
                console.print(tables.anomalies_table(top, f"Top flagged records of {Path(b['source']).name}"))
    for b in run.batches:
        if b["status"] == "quarantined":
            console.print(
                f"[red]Quarantined[/] {escape(safe_text(Path(b['source']).name))} -> "
                f"{escape(safe_text(b.get('moved_to')))}: {escape(safe_text(b.get('error')))}"
            )
    console.print(f"Alerts received by the local webhook: {len(run.alerts)}")
    for a in run.alerts:
        console.print(
            f"  - batch {a.get('batch_id')} ({escape(Path(str(a.get('source'))).name)}): "
            f"{a.get('n_flagged')} flagged, drift {a.get('drift_detected')}, "
            f"reasons {', '.join(a.get('reasons', []))}"
        )
    console.print(tables.where_to_look(run.folder))


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    # Runs last at exit: without it the interpreter's final garbage collections walk every
    # object torch, Prefect and MLflow created, which adds 3-4 s to each command.
    atexit.register(gc.freeze)
    return app(args=argv, prog_name="aemon")


if __name__ == "__main__":
    main()
