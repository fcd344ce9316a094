"""The decision rule: which class a model's probabilities name.

As trained, argmax_y p(y|x). With post-hoc logit adjustment (Menon et al., "Long-tail learning via logit
adjustment", ICLR 2021), argmax_y log p(y|x) - tau log pi_y, pi being the class frequencies of the data the model was
trained on (recorded in its checkpoint), and p the probabilities the model shows (calibrated by its temperature,
fer_explain.temperature, when it records one): tau = 0 is the model as trained, tau = 1 the decision for classes
equally likely a priori. A model trained on FER+ (contempt and disgust under 0.5 % of the faces) rarely names its rare
classes; tau > 0 trades overall accuracy for mean class accuracy (measured in results/prior_correction.md, where tau
is chosen on val).

The adjustment adds a constant to each class's logit, so the gradient of any class's score, and with it every
explanation of that class, is the same at any tau: only which class is predicted, and the renormalised
probabilities p(y|x) pi_y^-tau / Z, change. A class the training data did not have (RAF-DB has no contempt) is
left as the model scores it: nothing was learnt about it that a boost could bring out.
"""
from __future__ import annotations

import math

import numpy as np

from fer_explain.classes import CLASSES
from fer_explain.errors import UserError

MAX_PRIOR_CORRECTION = 2.0  # tau = 1 already treats the classes as equally likely; beyond 2 only the rarest win


def training_prior(metadata: dict, path, classes=CLASSES) -> np.ndarray:
    """The class frequencies of the data the model was trained on, in `classes` order, from its checkpoint (0 for a
    class it had no image of)."""
    counts = metadata.get("data", {}).get("train", {}).get("class_counts")
    if (not isinstance(counts, dict) or not all(isinstance(counts.get(c), int) and counts[c] >= 0 for c in classes)
            or not any(counts[c] for c in classes)):
        raise UserError(f"{path}: the checkpoint does not record its training class counts (data.train."
                        "class_counts), so its prior is unknown; checkpoints written by training.train have them")
    counts = np.array([counts[c] for c in classes], dtype=np.float64)
    return counts / counts.sum()


def check_prior_correction(tau) -> float:
    """tau as a float in [0, MAX_PRIOR_CORRECTION]; anything else is a UserError."""
    try:
        value = float(tau)
    except (TypeError, ValueError):
        raise UserError(f"the prior correction must be a number; got {tau!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= MAX_PRIOR_CORRECTION):
        raise UserError(f"the prior correction must be between 0 and {MAX_PRIOR_CORRECTION:g}; got {tau!r}")
    return value


def adjusted_scores(probabilities: np.ndarray, prior: np.ndarray, tau: float) -> np.ndarray:
    """log p - tau log pi (float64), over the last axis: their argmax is the adjusted decision. A class with
    pi = 0 (never seen in training) keeps its score: an unbounded boost would make the model name what it never
    learnt."""
    log_prior = np.log(np.where(prior > 0, prior, 1.0))
    return np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), 1e-12)) - tau * log_prior


def adjust_probabilities(probabilities: np.ndarray, prior: np.ndarray, tau: float) -> np.ndarray:
    """softmax(log p - tau log pi), float32: the probabilities whose argmax is the adjusted decision."""
    from scipy.special import softmax

    if tau == 0:
        return np.asarray(probabilities, dtype=np.float32)
    return softmax(adjusted_scores(probabilities, prior, tau), axis=-1).astype(np.float32)


def add_prior_correction_argument(parser) -> None:
    """--prior-correction TAU, shared by the predict, explain and evaluate commands."""
    parser.add_argument("--prior-correction", type=float, default=0.0, metavar="TAU",
                        help="decision rule: predict argmax log p(y|x) - TAU log(training frequency of y), favouring "
                             "classes rare in training; 0 (default) = the model as trained, 1 = classes equally likely "
                             f"(0-{MAX_PRIOR_CORRECTION:g}; chosen on val: results/prior_correction.md)")
