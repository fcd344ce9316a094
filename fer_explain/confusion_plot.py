"""The confusion-matrix figure: counts and row-normalised percentages side by side, rows = true class.

Drawn with scikit-learn's ConfusionMatrixDisplay on axes of a matplotlib `Figure` rendered by Agg, so no pyplot
figure state is created (safe in threads, in the app, and on machines without a display).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def confusion_figure(counts, classes, title: str | None = None):
    """A matplotlib Figure: left the counts, right each true-class row as % of that class (absent rows stay 0)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    counts = np.asarray(counts, dtype=np.int64)
    support = counts.sum(1, keepdims=True)
    percent = np.divide(100.0 * counts, support, out=np.zeros(counts.shape), where=support > 0)

    fig = Figure(figsize=(17, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_counts, ax_percent = fig.subplots(1, 2)
    labels = list(classes)
    ConfusionMatrixDisplay(counts, display_labels=labels).plot(
        ax=ax_counts, cmap="Blues", values_format="d", xticks_rotation=45)
    ConfusionMatrixDisplay(percent, display_labels=labels).plot(
        ax=ax_percent, cmap="Blues", values_format=".1f", xticks_rotation=45)
    ax_counts.set_title("counts")
    ax_percent.set_title("% of each true class (row-normalised)")
    if title:
        fig.suptitle(title)
    return fig


def save_confusion_png(path: str | Path, counts, classes, title: str | None = None, dpi: int = 110) -> Path:
    """Write the confusion figure as a PNG and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    confusion_figure(counts, classes, title).savefig(path, dpi=dpi)
    return path
