"""Explanations of one prediction as 7x7 grids over the attended map (one cell per Bi-LSTM token), by name.

    spatial_attention  the model's own eq. (2) weights, from the forward pass (unsigned, [0, 1])
    token_saliency     Captum Integrated Gradients over the 49 tokens, zero baseline (signed)
    token_occlusion    Captum FeatureAblation, one token at a time set to zero (signed)
    gradcam            pytorch-grad-cam Grad-CAM on the attended map ([0, 1])
    gradcam++          pytorch-grad-cam Grad-CAM++ on the attended map ([0, 1])
"""
from __future__ import annotations

from fer_explain.explain.base import Explainer, Explanation, ExplanationUnavailable
from fer_explain.explain.gradcam import GradCAMExplainer, GradCAMPlusPlusExplainer
from fer_explain.explain.spatial_attention import SpatialAttentionExplainer
from fer_explain.explain.token_saliency import TokenIntegratedGradients, TokenOcclusion

EXPLAINERS: dict[str, type[Explainer]] = {
    cls.name: cls for cls in (SpatialAttentionExplainer, TokenIntegratedGradients, TokenOcclusion,
                              GradCAMExplainer, GradCAMPlusPlusExplainer)
}

__all__ = ["EXPLAINERS", "Explainer", "Explanation", "ExplanationUnavailable"]
