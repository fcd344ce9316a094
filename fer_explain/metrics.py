"""Classification metrics for the 8 emotions (scikit-learn underneath) and their plain-text tables.

Accuracy is over all images. Macro and mean-class figures average over the classes present in `y_true`
(`evaluated_classes`): a test split without, say, contempt cannot measure contempt recall, and counting it as 0
would punish the model for the data. Predictions of an absent class still count as errors everywhere, because
recall of the true class drops. The confusion matrix always has all classes, rows = true class, columns = predicted.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from fer_explain.classes import CLASSES


def _as_labels(y, name: str, num_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D class indices, got shape {y.shape}")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} must hold integer class indices in [0, {num_classes})")
    return y.astype(np.int64)


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes=CLASSES) -> dict:
    """Summary, per-class and confusion-matrix metrics; every value is a plain Python type (JSON-ready).

    Fractions are in [0, 1]. `per_class[name]["recall"]` is that class's accuracy. For a class absent from
    `y_true`, recall and F1 are undefined (None); its precision is 0.0 when it was predicted (every such
    prediction is wrong) and None otherwise.
    """
    classes = tuple(classes)
    k = len(classes)
    y_true, y_pred = _as_labels(y_true, "y_true", k), _as_labels(y_pred, "y_pred", k)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred differ in length ({len(y_true)} vs {len(y_pred)})")
    if len(y_true) == 0:
        raise ValueError("no samples to evaluate")

    all_labels = list(range(k))
    counts = confusion_matrix(y_true, y_pred, labels=all_labels)
    support = counts.sum(1)
    present = [i for i in all_labels if support[i] > 0]
    # rows of absent classes stay 0 instead of 0/0
    normalized = np.divide(counts, support[:, None], out=np.zeros(counts.shape), where=support[:, None] > 0)

    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=all_labels, average=None, zero_division=0)
    macro = precision_recall_fscore_support(y_true, y_pred, labels=present, average="macro", zero_division=0)
    weighted = precision_recall_fscore_support(y_true, y_pred, labels=present, average="weighted", zero_division=0)

    predicted = counts.sum(0)
    per_class = {}
    for i, name in enumerate(classes):
        if support[i] > 0:
            per_class[name] = {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                               "support": int(support[i])}
        else:
            per_class[name] = {"precision": 0.0 if predicted[i] > 0 else None, "recall": None, "f1": None,
                               "support": 0}

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "mean_class_accuracy": float(np.mean(recall[present])),
        "macro_precision": float(macro[0]), "macro_recall": float(macro[1]), "macro_f1": float(macro[2]),
        "weighted_precision": float(weighted[0]), "weighted_recall": float(weighted[1]),
        "weighted_f1": float(weighted[2]),
        "per_class": per_class,
        "confusion_matrix": counts.astype(int).tolist(),
        "confusion_matrix_normalized": normalized.tolist(),
        "classes": list(classes),
        "evaluated_classes": [classes[i] for i in present],
        "missing_classes": [classes[i] for i in all_labels if support[i] == 0],
        "n": int(len(y_true)),
    }


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def format_metrics(metrics: dict) -> str:
    """Plain-text tables: summary, per-class (precision/recall/F1 in %), confusion matrix in counts and row %."""
    classes = metrics["classes"]
    width = max(8, *(len(c) for c in classes)) + 1
    lines = [f"images: {metrics['n']}"]
    if metrics["missing_classes"]:
        lines.append(f"classes absent from the data: {', '.join(metrics['missing_classes'])} "
                     f"(macro and mean-class figures are over the {len(metrics['evaluated_classes'])} present)")
    lines += ["", "summary (%)"]
    for key in ("accuracy", "mean_class_accuracy", "macro_precision", "macro_recall", "macro_f1",
                "weighted_precision", "weighted_recall", "weighted_f1"):
        lines.append(f"  {key:<20} {_pct(metrics[key]):>6}")

    lines += ["", f"{'class':<{width}} {'prec%':>6} {'recall%':>7} {'f1%':>6} {'support':>8}"]
    for name in classes:
        m = metrics["per_class"][name]
        lines.append(f"{name:<{width}} {_pct(m['precision']):>6} {_pct(m['recall']):>7} {_pct(m['f1']):>6} "
                     f"{m['support']:>8}")

    short = [c[:7] for c in classes]
    corner = "true\\pred"
    header = f"{corner:<{width}} " + " ".join(f"{s:>7}" for s in short)
    for title, matrix, fmt in (("confusion matrix (counts; rows = true class)", metrics["confusion_matrix"], "{:>7d}"),
                               ("confusion matrix (row %)", metrics["confusion_matrix_normalized"], "{:>7.1f}")):
        lines += ["", title, header]
        for name, row in zip(classes, matrix):
            cells = [fmt.format(v if fmt.endswith("d}") else 100 * v) for v in row]
            lines.append(f"{name:<{width}} " + " ".join(cells))
    return "\n".join(lines)
