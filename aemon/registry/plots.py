"""Plots of a training run (loss curve, calibration scores, held-out series or images),
as matplotlib figures for the registry to log; images are reconstructed with the model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aemon.data.images import load_images
from aemon.detector import Detector, Input

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # no pyplot: no global state, renders with Agg

    return Figure(figsize=(width, height), layout="constrained")


def plot_loss(detector: Detector) -> Figure:
    history = detector.training_.history
    fig = new_figure(6, 3.5)
    ax = fig.subplots()
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
    ax.axvline(detector.training_.best_epoch, color="grey", ls=":", label="best epoch")
    ax.set(xlabel="epoch", ylabel=f"{detector.loss} loss", title="Loss curve")
    ax.legend(loc="upper right")  # "best" searches the data: over 1 s on a busy machine warns
    return fig


def plot_calibration(detector: Detector) -> Figure:
    fig = new_figure(6, 3.5)
    ax = fig.subplots()
    ax.hist(detector.calibration_scores_, bins=50, color="tab:blue", alpha=0.8)
    thr = detector.threshold_info_
    ax.axvline(thr.value, color="tab:red", label=f"threshold {thr.value:.4g} ({thr.method})")
    ax.set(
        xlabel="anomaly score (higher = more anomalous)",
        ylabel="calibration records",
        title=f"Calibration scores (FPR {detector.calibration_fpr_:.3%})",
    )
    ax.legend(loc="upper right")  # "best" searches the data: over 1 s on a busy machine warns
    return fig


def plot_series(detector: Detector, frame: pd.DataFrame, res: Any, labels: Any) -> Figure:
    columns = list(detector.schema_.columns)[:6]
    fig = new_figure(10, 1.6 * (len(columns) + 1) + 0.5)
    axes = fig.subplots(len(columns) + 1, 1, sharex=True, squeeze=False)[:, 0]
    x = res.timestamps if res.timestamps is not None else np.arange(res.n_records)
    for ax, col in zip(axes, columns, strict=False):
        ax.plot(x, frame[col].to_numpy(), lw=0.8)
        ax.set_ylabel(col)
    ax = axes[-1]
    ax.plot(x, res.scores, lw=0.8, color="black", label="score")
    ax.axhline(res.threshold, color="tab:red", ls="--", label="threshold")
    flagged = res.is_anomaly
    ax.scatter(np.asarray(x)[flagged], res.scores[flagged], s=6, color="tab:red", label="flagged")
    if labels is not None:
        y = np.asarray(labels).astype(bool)
        for a in axes:
            a.fill_between(
                x,
                0,
                1,
                where=y,
                color="tab:orange",
                alpha=0.2,
                transform=a.get_xaxis_transform(),
                label="labelled anomaly",
            )
    ax.set_ylabel("score")
    ax.legend(loc="upper left", fontsize="small")
    fig.suptitle("Held-out reference series and anomaly scores")
    return fig


def plot_images(detector: Detector, data: Input, res: Any) -> Figure:
    import torch

    images = load_images(data, detector.schema_)[1].images  # type: ignore[arg-type]
    order = np.argsort(-res.scores, kind="stable")
    picks = list(dict.fromkeys([*order[:4], *order[::-1][:4]]))  # most and least anomalous
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(images[picks])).to(detector.device_)
        recon = detector.model_(x).recon.float().cpu().numpy()
    fig = new_figure(1.6 * len(picks), 5.2)
    axes = fig.subplots(3, len(picks), squeeze=False)
    rows = (("input", images[picks]), ("reconstruction", recon))
    vmax = float(res.error_maps[picks].max())  # one colour scale: maps compare at a glance
    for j, i in enumerate(picks):
        for r, (_, arr) in enumerate(rows):
            img = arr[j].transpose(1, 2, 0)
            axes[r, j].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        axes[2, j].imshow(res.error_maps[i], cmap="inferno", vmin=0, vmax=vmax)
        color = "tab:red" if res.is_anomaly[i] else "black"
        axes[0, j].set_title(f"{res.scores[i]:.3g}", color=color, fontsize="small")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for r, label in enumerate(("input", "reconstruction", "error map")):
        axes[r, 0].set_ylabel(label)
    fig.suptitle("Held-out images: most and least anomalous (score above; red = flagged)")
    return fig


def training_figures(detector: Detector, reference: Input | None, res: Any, labels: Any) -> dict[str, Figure]:
    """The figures of a training run by name: loss curve and calibration scores, and the
    held-out series or images with their scores when `reference` was scored (`res`)."""
    figures = {"loss_curve": plot_loss(detector), "calibration_scores": plot_calibration(detector)}
    if reference is not None and res is not None:
        figures.update(detector.adapter_.holdout_figures(detector, reference, res, labels))
    return figures
