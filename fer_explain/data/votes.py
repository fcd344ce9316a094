"""FERPlus vote counts -> hard labels (the "majority" rule) and soft labels (vote distributions).

Each FER2013 image was labelled by 10 annotators; the vote columns are, in this order,
neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF (not a face).

Majority rule (Barsoum et al. 2016, as stated in shared/data/ferplus/README.md):
  1. votes of 1 are set to 0 (single-vote outliers);
  2. the label is the emotion with the most remaining votes only if it holds more than half of the
     remaining votes (unknown and NF included in the total) and is one of the 8 emotions;
  3. otherwise (no majority, or a majority for unknown / NF) the image is left out (label -1 here).
Soft labels: the same outlier removal, unknown/NF dropped, the 8 emotion votes normalised to sum 1.
"""
from __future__ import annotations

import numpy as np

from fer_explain.classes import CLASSES, canonical_class

VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
NUM_EMOTION_VOTES = 8  # the first 8 vote columns are emotions; the last two (unknown, NF) are not
LEFT_OUT = -1

# VOTE_TO_CLASS[j] = index into CLASSES of vote column j (j < 8)
VOTE_TO_CLASS = np.array([CLASSES.index(canonical_class(name)) for name in VOTE_COLUMNS[:NUM_EMOTION_VOTES]])


def _as_votes(votes) -> np.ndarray:
    votes = np.asarray(votes)
    if votes.ndim != 2 or votes.shape[1] != len(VOTE_COLUMNS):
        raise ValueError(f"votes must have shape (N, {len(VOTE_COLUMNS)}), got {votes.shape}")
    return votes.astype(np.int64)


def remove_single_votes(votes) -> np.ndarray:
    """Votes of 1 set to 0: one annotator alone is treated as noise."""
    votes = _as_votes(votes)
    return np.where(votes == 1, 0, votes)


def majority_labels(votes) -> np.ndarray:
    """int64 (N,) class indices in CLASSES order, or LEFT_OUT (-1) for images the majority rule leaves out."""
    kept = remove_single_votes(votes)
    total = kept.sum(axis=1)
    top = kept.argmax(axis=1)  # a strict majority is unique, so argmax's tie-breaking never decides a label
    top_votes = kept.max(axis=1)
    has_majority = (2 * top_votes > total) & (top < NUM_EMOTION_VOTES)
    labels = np.full(len(kept), LEFT_OUT, dtype=np.int64)
    labels[has_majority] = VOTE_TO_CLASS[top[has_majority]]
    return labels


def soft_labels_from_votes(votes, fallback_labels=None) -> np.ndarray:
    """float32 (N, 8) emotion-vote distributions in CLASSES order (rows sum to 1).

    A row with no emotion votes left after outlier removal (never the case for an image the majority rule
    keeps) becomes one-hot on `fallback_labels` when given, else uniform.
    """
    kept = remove_single_votes(votes)[:, :NUM_EMOTION_VOTES].astype(np.float64)
    soft = np.zeros((len(kept), len(CLASSES)), dtype=np.float64)
    soft[:, VOTE_TO_CLASS] = kept
    total = soft.sum(axis=1, keepdims=True)
    empty = total[:, 0] == 0
    soft = np.divide(soft, total, out=np.zeros_like(soft), where=total > 0)
    if empty.any():
        if fallback_labels is not None:
            soft[empty] = np.eye(len(CLASSES))[np.asarray(fallback_labels)[empty]]
        else:
            soft[empty] = 1.0 / len(CLASSES)
    return soft.astype(np.float32)
