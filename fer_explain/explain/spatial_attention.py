"""The model's own spatial-attention weights, eq. (2): SA(F) = sigmoid(Conv7x7([mean_c(F); max_c(F)])), a (7, 7) map
in [0, 1] that multiplies every channel of the channel-attended map.

They cannot be recomputed from the attended map A = F' * SA(F') (the gate has already been multiplied in), so they
are taken from the same forward pass that produced A (`ModelOutput.spatial_attention`, kept by
`FacePrediction.spatial_attention`). They do not depend on the target class. A model built without spatial
attention has no such map: asking for it raises `ExplanationUnavailable` instead of showing a made-up one.
"""
from __future__ import annotations

import numpy as np
import torch

from fer_explain.explain.base import Explainer, ExplanationUnavailable


def has_spatial_attention(model) -> bool:
    return getattr(model, "spatial_attention", None) is not None


class SpatialAttentionExplainer(Explainer):
    name = "spatial_attention"
    signed = False

    def attribute(self, attended, target, spatial_attention=None):
        if not has_spatial_attention(self.model):
            raise ExplanationUnavailable("spatial attention is not available: this model was built without it "
                                         "(spatial_attention='none')")
        if spatial_attention is None:
            raise ValueError("spatial attention weights come from the forward pass: pass "
                             "spatial_attention=ModelOutput.spatial_attention (B, 7, 7)")
        if isinstance(spatial_attention, torch.Tensor):
            spatial_attention = spatial_attention.detach().float().cpu().numpy()
        weights = np.asarray(spatial_attention, dtype=np.float32)
        if weights.ndim == 2:
            weights = weights[None]
        batch = attended.shape[0] if attended.dim() == 4 else 1
        if weights.shape != (batch, *attended.shape[-2:]):
            raise ValueError(f"spatial attention of shape {weights.shape} does not match the attended map "
                             f"{tuple(attended.shape)}")
        return weights.copy(), [{"source": "forward pass (eq. 2 sigmoid gate)", "target_independent": True}
                                for _ in range(batch)]
