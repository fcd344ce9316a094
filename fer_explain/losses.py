"""Training losses: inverse-frequency class weights and a cross-entropy over hard or soft (vote) targets.

Class weights (the paper's imbalance correction):  w_c = N / (C * N_c)  for every class c present in the training
set, where N_c is its image count, N the number of images and C the number of present classes; a class with no
images gets weight 0 (it cannot be learned, and 1/0 is undefined). A balanced set gives w_c = 1.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def class_weights(counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """float32 (K,) weights N / (C * N_c) over the present classes, 0 for absent ones."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.dim() != 1 or (counts < 0).any():
        raise ValueError(f"class counts must be a 1-D list of non-negative numbers, got {counts.tolist()}")
    present = counts > 0
    if not present.any():
        raise ValueError("class counts are all zero: no training images")
    total, num_present = counts[present].sum(), present.sum()
    weights = torch.zeros_like(counts)
    weights[present] = total / (num_present * counts[present])
    return weights.float()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of `logits` (B, K) against class indices (B,) or probability rows (B, K).

    Both forms give the same value for one-hot rows, with or without weights and smoothing: torch normalises the
    weighted hard loss by the summed weight of the targets, so the soft loss is normalised by each row's weight
    sum_c w_c p_c too (torch itself would divide soft losses by B). Smoothing mixes eps/K into the target as torch does.
    """
    logits = logits.float()
    if not targets.is_floating_point():
        return F.cross_entropy(logits, targets, weight=weight, label_smoothing=label_smoothing)
    targets = targets.float()
    per_image = F.cross_entropy(logits, targets, weight=weight, label_smoothing=label_smoothing, reduction="none")
    if weight is None:
        return per_image.mean()
    # clamp: a batch whose votes all fall on weight-0 classes contributes nothing rather than 0/0
    return per_image.sum() / (targets @ weight.float()).sum().clamp_min(1e-12)
