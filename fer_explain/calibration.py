"""How far the probabilities a model shows can be taken at their word: top-label calibration.

The expected calibration error (Guo et al., "On calibration of modern neural networks", ICML 2017) bins the images
by the probability of the predicted class (equal-width bins over [0, 1]) and averages |accuracy - confidence| over
the bins, weighted by their share of the images: 0 when "90 %" is right 90 % of the time. Also the negative
log-likelihood of the true class and the multiclass Brier score, which reward a confident right answer and punish a
confident wrong one, and a reliability diagram. `evaluate` computes them on the probabilities it decides with (after
flip TTA and the prior correction, when given).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

N_BINS = 15


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class), each probability clipped at 1e-12 so that one confident mistake stays finite."""
    rows = np.arange(len(labels))
    return float(-np.log(np.clip(np.asarray(probabilities, dtype=np.float64)[rows, labels], 1e-12, None)).mean())


def calibration_metrics(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict:
    """probabilities (N, K) rows summing to 1, labels (N,) class indices -> ECE, MCE, NLL, Brier and the bins."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    confidence, predicted = p.max(1), p.argmax(1)
    correct = (predicted == y).astype(np.float64)
    # bin b holds confidences in (b/n, (b+1)/n]; the top-1 probability of K classes is at least 1/K, never 0
    index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    bins, gaps = [], []
    for b in range(n_bins):
        members = index == b
        count = int(members.sum())
        bin_conf = float(confidence[members].mean()) if count else None
        bin_acc = float(correct[members].mean()) if count else None
        bins.append({"lower": b / n_bins, "upper": (b + 1) / n_bins, "count": count, "confidence": bin_conf,
                     "accuracy": bin_acc})
        if count:
            gaps.append((count, abs(bin_acc - bin_conf)))
    n = len(y)
    one_hot = np.eye(p.shape[1])[y]
    return {
        "ece": float(sum(c * g for c, g in gaps) / n),
        "mce": float(max(g for _, g in gaps)),
        "nll": negative_log_likelihood(p, y),
        "brier": float(((p - one_hot) ** 2).sum(1).mean()),
        "mean_confidence": float(confidence.mean()),
        "accuracy": float(correct.mean()),
        "n_bins": n_bins,
        "bins": bins,
    }


def format_calibration(c: dict) -> str:
    return (f"calibration: ECE {100 * c['ece']:.2f}% ({c['n_bins']} bins; mean confidence "
            f"{100 * c['mean_confidence']:.1f}% for accuracy {100 * c['accuracy']:.1f}%), NLL {c['nll']:.3f}, "
            f"Brier {c['brier']:.3f}")


def save_reliability_png(path: str | Path, c: dict, title: str | None = None) -> Path:
    """Accuracy against confidence per bin (bars; the diagonal is perfect calibration) and how many images each bin
    holds. Agg on a bare Figure: no pyplot state, safe without a display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    filled = [b for b in c["bins"] if b["count"]]
    width = 1 / c["n_bins"]
    fig = Figure(figsize=(6, 7), layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax_count = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    ax.bar([b["lower"] for b in filled], [b["accuracy"] for b in filled], width=width, align="edge",
           edgecolor="black", label="accuracy of the bin")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], "o", color="crimson", markersize=4,
            label="(mean confidence, accuracy)")
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"ECE {100 * c['ece']:.2f}% · mean confidence {100 * c['mean_confidence']:.1f}% · "
                 f"accuracy {100 * c['accuracy']:.1f}%")
    ax.legend(loc="upper left", fontsize=8)
    ax_count.bar([b["lower"] for b in filled], [b["count"] for b in filled], width=width, align="edge",
                 color="grey", edgecolor="black")
    ax_count.set(xlabel="confidence (probability of the predicted class)", ylabel="images")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100)
    return path
