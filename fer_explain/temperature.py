"""Temperature scaling (Guo et al., "On calibration of modern neural networks", ICML 2017): softmax(z / T), one
parameter T > 0 fitted on a held-out split, so that the probabilities shown can be taken at their word.

Dividing the logits by T keeps every decision (the argmax does not move) and only sharpens (T < 1) or softens
(T > 1) the probabilities. A checkpoint records its T under `calibration` (written by `python -m fer_explain
calibrate` and by training.ship); the Predictor (app, `predict`, `explain`) and `evaluate` apply it, and a
checkpoint without one is shown as trained (T = 1). The prior correction (fer_explain.decision) then acts on these
calibrated probabilities, so that its tau = 1 is the decision for equally likely classes.
"""
from __future__ import annotations

import math

import numpy as np

from fer_explain.calibration import negative_log_likelihood
from fer_explain.errors import UserError

T_BOUNDS = (0.05, 20.0)


def temperature_scaled(probabilities, temperature: float) -> np.ndarray:
    """softmax(logits / T) over the last axis, float32, from the softmax itself: log p differs from the logits by a
    per-row constant, so this also applies to the mean of flip-TTA views (as log of that mean)."""
    from scipy.special import softmax

    p = np.asarray(probabilities, dtype=np.float32)
    if temperature == 1.0:
        return p
    return softmax(np.log(np.clip(p.astype(np.float64), 1e-12, None)) / temperature, axis=-1).astype(np.float32)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T in T_BOUNDS with the lowest mean negative log-likelihood of the true classes."""
    from scipy.optimize import minimize_scalar

    def nll(temperature: float) -> float:
        return negative_log_likelihood(temperature_scaled(probabilities, temperature), labels)

    return float(minimize_scalar(nll, bounds=T_BOUNDS, method="bounded", options={"xatol": 1e-4}).x)


def checkpoint_temperature(metadata: dict, path) -> float:
    """The T a checkpoint was calibrated with (`calibration.temperature`), or 1 (the model as trained) when it records
    none. A value that is not a positive number is a UserError: a checkpoint must not silently show other
    probabilities than it says."""
    calibration = metadata.get("calibration")
    if calibration is None:
        return 1.0
    t = calibration.get("temperature") if isinstance(calibration, dict) else None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t > 0):
        raise UserError(f"{path}: its calibration temperature must be a positive number; got {t!r}")
    return float(t)
