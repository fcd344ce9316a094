"""Explanations of one prediction as 7x7 grids over the attended map (one cell per Bi-LSTM token), by name.

    spatial_attention  the model's own eq. (2) weights, from the forward pass (unsigned, [0, 1])
    token_saliency     Captum Integrated Gradients over the 49 tokens, zero baseline (signed)
    token_occlusion    Captum FeatureAblation, one token at a time set to zero (signed)
    gradcam            pytorch-grad-cam Grad-CAM on the attended map ([0, 1])
    gradcam++          pytorch-grad-cam Grad-CAM++ on the attended map ([0, 1])
"""
from __future__ import annotations

from collections.abc import Iterable

from fer_explain.errors import UserError
from fer_explain.explain.base import Explainer, Explanation, ExplanationUnavailable
from fer_explain.explain.gradcam import GradCAMExplainer, GradCAMPlusPlusExplainer
from fer_explain.explain.spatial_attention import SpatialAttentionExplainer
from fer_explain.explain.token_saliency import TokenIntegratedGradients, TokenOcclusion

EXPLAINERS: dict[str, type[Explainer]] = {
    cls.name: cls for cls in (SpatialAttentionExplainer, TokenIntegratedGradients, TokenOcclusion,
                              GradCAMExplainer, GradCAMPlusPlusExplainer)
}



def check_methods(methods: str | Iterable[str]) -> list[str]:
    """The method names as a list (one name may be given as a string); UserError naming the unknown ones."""
    methods = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in methods if m not in EXPLAINERS]
    if unknown:
        raise UserError(f"unknown explanation method(s) {', '.join(unknown)}; "
                        f"expected some of: {', '.join(EXPLAINERS)}")
    return methods


__all__ = ["EXPLAINERS", "Explainer", "Explanation", "ExplanationUnavailable", "check_methods"]
