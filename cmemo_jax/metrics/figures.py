"""Figures of the evaluation: row-normalised confusion matrices (paper Fig. 5) and ROC curves.

matplotlib is imported only when a figure is drawn, and drawn on an Agg canvas owned by the figure
(no pyplot, no global backend switch), so this works headless and leaves a notebook's backend alone.
"""
from __future__ import annotations

import json
import os

import numpy as np

from cmemo_jax.metrics.auc import roc_auc


def new_figure(width_in: float, height_in: float):
    """A matplotlib Figure attached to its own Agg canvas; one-line ImportError without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("cmemo_jax figures need matplotlib, which is not installed: pip install matplotlib") from err
    fig = Figure(figsize=(width_in, height_in), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str) -> str:
    """Writes the figure (format from the extension, e.g. .png) creating the folder; returns path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


def confusion_figure(confusion, class_names, path: str, title: str = "") -> str:
    """Draws a row-normalised confusion matrix (rows = true class, columns = prediction), as Fig. 5.

    Args:
      confusion: [k, k] rows summing to 1 (probe.cross_validate's 'confusion').
      class_names: k names, in the matrix order.
      path: output image file (.png, .pdf, .svg).
    Returns the path written.
    """
    c = np.asarray(confusion, np.float64)
    k = len(class_names)
    if c.shape != (k, k):
        raise ValueError(f"confusion of shape {c.shape} for {k} class names")
    fig = new_figure(1.2 + 0.75 * k, 1.0 + 0.7 * k)
    ax = fig.add_subplot()
    im = ax.imshow(c, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            # White text on the dark cells keeps every value readable.
            ax.text(j, i, f"{c[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if c[i, j] > 0.55 else "black")
    ax.set_xticks(range(k), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return save_figure(fig, path)


def save_confusion(confusion, class_names, path_stem: str, title: str = "", counts=None) -> tuple[str, str]:
    """Writes `path_stem`.json (class_names, confusion, optional raw counts) and `path_stem`.png.

    Returns (json_path, png_path).
    """
    record = {"class_names": list(class_names), "confusion": np.asarray(confusion, np.float64).tolist()}
    if counts is not None:
        record["counts"] = np.asarray(counts).tolist()
    json_path = path_stem + ".json"
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as fh:
        json.dump(record, fh, indent=1)
    return json_path, confusion_figure(confusion, class_names, path_stem + ".png", title)


def roc_curve(scores, positives) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest ROC curve: (fpr, tpr), both [m] from (0, 0) to (1, 1), one point per distinct score.

    Tied scores form one step, so the trapezoid area under the curve equals metrics.auc.roc_auc.
    """
    scores = np.asarray(scores, np.float64)
    positives = np.asarray(positives, bool)
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positives[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(p)[last_of_tie]
    fp = np.cumsum(~p)[last_of_tie]
    tpr = np.r_[0.0, tp / max(p.sum(), 1)]
    fpr = np.r_[0.0, fp / max((~p).sum(), 1)]
    return fpr, tpr


def roc_curves(scores, y, class_names) -> dict:
    """{name: (fpr, tpr, auc)} one-vs-rest for each class with both positives and negatives.

    Args:
      scores: [n, k] class scores (e.g. cross_validate's out-of-fold 'scores').
      y: [n] int true classes.
    """
    scores, y = np.asarray(scores, np.float64), np.asarray(y)
    curves = {}
    for c, name in enumerate(class_names):
        positives = y == c
        if positives.any() and not positives.all():
            fpr, tpr = roc_curve(scores[:, c], positives)
            curves[name] = (fpr, tpr, roc_auc(scores[:, c], positives))
    return curves


def roc_figure(per_class_curves: dict, path: str, title: str = "") -> str:
    """Draws one ROC curve per class, {name: (fpr [m], tpr [m], auc)}, with the chance diagonal.

    Returns the path written.
    """
    fig = new_figure(5.0, 4.5)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance (AUC 0.50)")
    for name, (fpr, tpr, auc) in per_class_curves.items():
        ax.plot(fpr, tpr, linewidth=1.5, label=f"{name} (AUC {auc:.2f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)
